"""Saving and loading adapter weights: ``adapter.safetensors`` + ``adapter_config.json``."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ntbench.adapters.base import adapter_handle, apply_adapter
from ntbench.adapters.sites import AdapterError

WEIGHTS = "adapter.safetensors"
CONFIG = "adapter_config.json"


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Write the adapter's parameters and options to ``directory``; returns the directory."""
    from ntbench import __version__

    handle = adapter_handle(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {n: p.detach().to("cpu").contiguous() for n, p in handle.named_parameters(model).items()}
    save_file(state, str(directory / WEIGHTS))
    config = {"adapter": handle.name, "options": handle.options, "parameters": sorted(state),
              "ntbench_version": __version__}
    (directory / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    return directory


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """Apply the saved adapter to a fresh ``model`` and load its weights exactly.

    Raises:
        FileNotFoundError: the directory lacks one of the two files.
        AdapterError: the saved weights do not fit this model.
    """
    directory = Path(directory)
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found (expected {CONFIG} and {WEIGHTS})")
    config = json.loads((directory / CONFIG).read_text())
    adapted = apply_adapter(model, config["adapter"], **config["options"])
    params = adapter_handle(adapted).named_parameters(adapted)
    state = load_file(str(directory / WEIGHTS))
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise AdapterError(f"{directory / WEIGHTS} does not fit this model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != state[name].shape:
                raise AdapterError(f"{directory / WEIGHTS}: {name} has shape {tuple(state[name].shape)}, "
                                   f"the model expects {tuple(p.shape)}")
            p.copy_(state[name])
    return adapted
