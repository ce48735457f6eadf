"""Saving and loading adapters.

Neural tuning, ``full`` and ``frozen`` write ntbench's own pair, ``adapter.safetensors`` +
``adapter_config.json``. LoRA, IA3 and prefix tuning are PEFT tuners, so they are written in
PEFT's own format (``adapter_model.safetensors`` + PEFT's ``adapter_config.json``) that
``peft.PeftModel.from_pretrained(base_model, directory)`` loads, with ntbench's record of the
adapter (name, options) beside it in ``ntbench_adapter.json``. Every record names its base model.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ntbench.adapters.base import adapter_handle, apply_adapter
from ntbench.adapters.sites import AdapterError

WEIGHTS = "adapter.safetensors"
CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
NTBENCH_RECORD = "ntbench_adapter.json"  # PEFT owns adapter_config.json for its tuners
PEFT_ADAPTERS = ("lora", "ia3", "prefix")
# A PeftModel saves its tuner's keys under its own two wrapper levels; LoRA and IA3 are injected
# into the bare model (no wrapper), so their keys get the prefix PeftModel.from_pretrained expects
# (without it, PEFT loads with strict=False and would silently keep the fresh initialisation).
PEFT_PREFIX = "base_model.model."


def base_model_name(model: nn.Module) -> str:
    """What a saved adapter names as its base: the model's HF name or path, else its class."""
    base = adapter_handle(model).base_model
    return getattr(getattr(base, "config", None), "name_or_path", "") or type(base).__name__


def save_adapter(model: nn.Module, directory: str | Path, base_model: str | None = None) -> Path:
    """Write the adapter's parameters, options and base model to ``directory``.

    Args:
        model: a model returned by :func:`apply_adapter` (trained or not).
        directory: created if missing.
        base_model: the name or path the base model is loaded from (default: its HF
            ``name_or_path``, else its class name).

    Returns:
        The directory.
    """
    from ntbench import __version__

    handle = adapter_handle(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"adapter": handle.name, "options": handle.options, "base_model": base_model or base_model_name(model),
              "ntbench_version": __version__}
    if handle.name in PEFT_ADAPTERS:
        state = _peft_state(model)
        save_file(state, str(directory / PEFT_WEIGHTS), metadata={"format": "pt"})
        config = copy.deepcopy(model.peft_config["default"])  # the live one stays as training left it
        config.base_model_name_or_path = record["base_model"]
        config.inference_mode = True  # as PeftModel.save_pretrained writes it: loads frozen unless asked
        config.save_pretrained(str(directory))
        record["parameters"] = sorted(state)
        (directory / NTBENCH_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
        return directory
    state = {n: p.detach().to("cpu").contiguous() for n, p in handle.named_parameters(model).items()}
    save_file(state, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(json.dumps({**record, "parameters": sorted(state)}, indent=2, sort_keys=True))
    return directory


def read_adapter_record(directory: str | Path) -> dict[str, Any]:
    """ntbench's record of a saved adapter: ``adapter``, ``options``, ``base_model``, ``parameters``.

    Raises:
        FileNotFoundError: the directory holds no saved adapter.
    """
    directory = Path(directory)
    for name in (NTBENCH_RECORD, CONFIG):
        if (directory / name).is_file():
            record = json.loads((directory / name).read_text())
            if "adapter" in record:  # a PEFT adapter_config.json alone is not ntbench's record
                return record
    raise FileNotFoundError(f"{directory / CONFIG} not found (expected {CONFIG} and {WEIGHTS}, or PEFT's "
                            f"{PEFT_WEIGHTS} with {NTBENCH_RECORD})")


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """Apply the saved adapter to a fresh ``model`` and load its weights exactly.

    Raises:
        FileNotFoundError: the directory lacks one of the files.
        AdapterError: the saved weights do not fit this model.
    """
    record = read_adapter_record(directory)
    adapted = apply_adapter(model, record["adapter"], **record["options"])
    return load_adapter_weights(adapted, directory)


def load_adapter_weights(model: nn.Module, directory: str | Path) -> nn.Module:
    """Load saved adapter weights into ``model``, which already carries the same adapter.

    Raises:
        FileNotFoundError: the directory lacks one of the files.
        AdapterError: a different adapter, or weights that do not fit this model.
    """
    directory = Path(directory)
    record, handle = read_adapter_record(directory), adapter_handle(model)
    if record["adapter"] != handle.name:
        raise AdapterError(f"{directory} holds a {record['adapter']!r} adapter; the model carries {handle.name!r}")
    if handle.name in PEFT_ADAPTERS:
        _load_peft_state(model, directory / PEFT_WEIGHTS)
        return model
    if not (directory / WEIGHTS).is_file():
        raise FileNotFoundError(f"{directory / WEIGHTS} not found (expected {CONFIG} and {WEIGHTS})")
    params = handle.named_parameters(model)
    state = load_file(str(directory / WEIGHTS))
    _check_keys(directory / WEIGHTS, set(params), set(state))
    with torch.no_grad():
        for name, p in params.items():
            _check_shape(directory / WEIGHTS, name, state[name], p)
            p.copy_(state[name])
    return model


def _peft_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tuner's weights keyed as ``PeftModel.save_pretrained`` keys them."""
    from peft import PeftModel, get_peft_model_state_dict

    prefix = "" if isinstance(model, PeftModel) else PEFT_PREFIX
    return {prefix + k: v.detach().to("cpu").contiguous() for k, v in
            get_peft_model_state_dict(model, save_embedding_layers=False).items()}


def _load_peft_state(model: nn.Module, path: Path) -> None:
    from peft import PeftModel, set_peft_model_state_dict

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (a PEFT adapter folder holds {PEFT_WEIGHTS})")
    state, expected = load_file(str(path)), _peft_state(model)
    _check_keys(path, set(expected), set(state))
    for name, tensor in state.items():
        _check_shape(path, name, tensor, expected[name])
    prefix = "" if isinstance(model, PeftModel) else PEFT_PREFIX
    set_peft_model_state_dict(model, {k[len(prefix):]: v for k, v in state.items()})
    # set_peft_model_state_dict loads with strict=False: confirm every tensor arrived
    loaded = _peft_state(model)
    if any(not torch.equal(loaded[k], state[k].to(loaded[k].dtype)) for k in state):
        raise AdapterError(f"{path}: PEFT did not load every tensor into this model")


def _check_keys(path: Path, expected: set[str], found: set[str]) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise AdapterError(f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _check_shape(path: Path, name: str, saved: torch.Tensor, current: torch.Tensor) -> None:
    if saved.shape != current.shape:
        raise AdapterError(f"{path}: {name} has shape {tuple(saved.shape)}, the model expects {tuple(current.shape)}")
