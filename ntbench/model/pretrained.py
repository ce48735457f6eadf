"""Saving and reloading an all-in-token model: ``AllInTokenModel.save_pretrained`` / ``from_pretrained``.

A saved model is a folder:

    model_config.json     how to rebuild it: the backbone's load arguments and fingerprint, the
                          adapter with its validated options, the heads' sizes and loss weights
    tokenizer/            the tokenizer with its added task tokens (<GEN>, <OBJ-i>)
    heads.safetensors     projector, mask decoder (with the state-whitening statistics), generation
                          head, the task tokens' rows, and the LLM's embeddings if they were trained
    adapter/              the adapter (PEFT's own format for LoRA, IA3 and prefix tuning)

The frozen backbone is not copied: a checkpoint of a 7B model would be 13 GB per trial, and the
presets rebuild deterministically from their seed. It is loaded again from the recorded name or
path, and its fingerprint must match the one recorded at training time.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ntbench.adapters import adapter_handle, load_adapter_weights, save_adapter
from ntbench.model.backbone import Backbone, BackboneError, load_backbone
from ntbench.model.tasks import GEN_TOKEN, obj_token

if TYPE_CHECKING:
    from ntbench.model.allintoken import AllInTokenModel

CONFIG = "model_config.json"
HEADS = "heads.safetensors"
FORMAT = "ntbench.allintoken"
FORMAT_VERSION = 1


def _trained_parts(model: "AllInTokenModel") -> dict[str, nn.Module]:
    parts = {"projector": model.projector, "mask_decoder": model.mask_decoder, "gen_head": model.gen_head}
    if model.train_embeddings:
        parts["llm_input_embeddings"] = embed = model.llm.get_input_embeddings()
        head = model.llm.get_output_embeddings()
        if head.weight is not embed.weight:  # tied: the input rows are the output rows
            parts["llm_output_embeddings"] = head
    return parts


def save_model(model: "AllInTokenModel", directory: str | Path) -> Path:
    """Write ``model`` to ``directory`` (created if missing); see the module docstring for the layout."""
    from ntbench import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = model.backbone_source or {}
    base = source.get("llm") or source.get("name") or model.backbone_name  # PEFT's base_model_name_or_path
    save_adapter(model.llm, directory / "adapter", base_model=base)
    heads = {f"{name}.{k}": v.detach().cpu().contiguous()
             for name, part in _trained_parts(model).items() for k, v in part.state_dict().items()}
    heads["new_embed"], heads["new_out"] = model.new_embed.detach().cpu(), model.new_out.detach().cpu()
    save_file(heads, str(directory / HEADS))
    model.tokenizer.save_pretrained(str(directory / "tokenizer"))
    handle = adapter_handle(model.llm)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "backbone": model.backbone_source,
              "backbone_name": model.backbone_name, "backbone_fingerprint": model.backbone_fingerprint,
              "adapter": handle.name, "adapter_options": handle.options, **model.init_options,
              "ntbench_version": __version__}
    (directory / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    return directory


def read_model_config(directory: str | Path) -> dict:
    """The saved model's config.

    Raises:
        FileNotFoundError: ``directory`` is missing or holds no saved all-in-token model.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder")
    if not (directory / CONFIG).is_file():
        raise FileNotFoundError(f"{directory} holds no saved model ({CONFIG} not found)")
    config = json.loads((directory / CONFIG).read_text())
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise FileNotFoundError(f"{directory / CONFIG}: not an ntbench all-in-token model of format version "
                                f"{FORMAT_VERSION}")
    return config


def load_model(cls: type["AllInTokenModel"], directory: str | Path,
               backbone: Backbone | None = None) -> "AllInTokenModel":
    """Rebuild the model saved in ``directory`` (see ``AllInTokenModel.from_pretrained``)."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    config = read_model_config(directory)
    if backbone is None:
        if not config["backbone"]:
            raise BackboneError(f"{directory} was saved from a backbone built in code, not by load_backbone: "
                                "pass that backbone to from_pretrained")
        backbone = load_backbone(**config["backbone"])
    fingerprint = backbone.fingerprint()
    if config["backbone_fingerprint"] and fingerprint and fingerprint != config["backbone_fingerprint"]:
        raise BackboneError(f"the backbone loaded for {directory} ({backbone.name}) differs from the one the model "
                            f"was trained on ({config['backbone_name']}): its weights' fingerprint is {fingerprint}, "
                            f"saved {config['backbone_fingerprint']} (prepared again, or another checkpoint?)")
    tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"), local_files_only=True)
    _check_tokenizer(tokenizer, backbone.tokenizer, config["max_objects"], directory)
    backbone.tokenizer = tokenizer
    options = {k: config[k] for k in ("max_objects", "train_embeddings", "decoder_width", "lambda_seg",
                                      "lambda_gen", "lambda_bce", "pixel_refiner", "whiten_state", "seed")}
    model = cls(backbone, config["adapter"], config["adapter_options"], **options)
    load_adapter_weights(model.llm, directory / "adapter")
    _load_heads(model, directory / HEADS)
    return model.eval()


def _check_tokenizer(saved, fresh, max_objects: int, directory: Path) -> None:
    """The saved tokenizer must be the backbone's plus the task tokens, with the same ids."""
    task = {GEN_TOKEN} | {obj_token(i) for i in range(1, max_objects + 1)}
    base = {t: i for t, i in saved.get_vocab().items() if t not in task}
    if base != fresh.get_vocab():
        raise BackboneError(f"{directory / 'tokenizer'} does not extend the backbone's tokenizer: the backbone "
                            "loaded again is not the one the model was trained on")


def _load_heads(model: "AllInTokenModel", path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    state = load_file(str(path))
    with torch.no_grad():
        for name in ("new_embed", "new_out"):
            param = getattr(model, name)
            if name not in state or state[name].shape != param.shape:
                raise ValueError(f"{path}: {name} is missing or has another shape than {tuple(param.shape)}")
            param.copy_(state.pop(name))
    for name, part in _trained_parts(model).items():
        sub = {k[len(name) + 1:]: state.pop(k) for k in list(state) if k.startswith(name + ".")}
        try:
            part.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path}: {name} does not fit this model ({str(exc).splitlines()[0]})") from None
    if state:
        raise ValueError(f"{path}: tensors this model has no place for: {sorted(state)[:5]}")
