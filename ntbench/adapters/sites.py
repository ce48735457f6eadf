"""Find the attention projections of any Hugging Face causal LM by module name, not by class.

A *site* is one attention module with its query/key/value projections, either separate
(``q_proj``/``k_proj``/``v_proj``: LLaMA, Mistral, Qwen2, ...) or fused into one Linear
(``qkv_proj``: Phi-3, contiguous q|k|v; ``query_key_value``: GPT-NeoX, interleaved per head).
Adapters use the sites to know where to attach; they never look at the model's class.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

SEPARATE = {"q": "q_proj", "k": "k_proj", "v": "v_proj"}
FUSED = ("qkv_proj", "query_key_value")
ALL_TARGETS = "qkv"


class AdapterError(ValueError):
    """A bad adapter option or a model the adapter cannot be attached to."""


@dataclass
class AttentionSite:
    """One attention module and how its q/k/v outputs are laid out."""

    path: str                      # dotted module path of the attention module
    module: nn.Module
    in_features: int               # Dh, width of the attention input H
    widths: dict[str, int]         # output width of q, k and v
    separate: dict[str, str] = field(default_factory=dict)  # "q" -> child name, when separate
    fused: str | None = None       # child name of the fused projection
    fused_columns: dict[str, torch.Tensor] = field(default_factory=dict)  # "q" -> output columns

    def projection_paths(self, targets: str) -> list[str]:
        """Full module paths of the Linear layers that compute the given targets."""
        if self.fused:
            return [f"{self.path}.{self.fused}"]
        return [f"{self.path}.{self.separate[t]}" for t in targets]


def _linear_like(module: nn.Module | None) -> bool:
    return module is not None and hasattr(module, "in_features") and hasattr(module, "out_features")


def _fused_columns(path: str, attn: nn.Module, child: str, out: int) -> dict[str, torch.Tensor]:
    if child == "query_key_value":  # GPT-NeoX: per head [q_h | k_h | v_h], each head_size wide
        head = getattr(attn, "head_size", None)
        if not head or out % (3 * head):
            raise AdapterError(f"{path}.{child}: cannot infer the per-head q/k/v layout")
        base = torch.arange(out).view(-1, 3, head)
        return {t: base[:, i].reshape(-1) for i, t in enumerate(ALL_TARGETS)}
    # Phi-3 style: [q | k | v] contiguous, q is num_attention_heads * head_dim wide
    config = getattr(attn, "config", None)
    head_dim = getattr(attn, "head_dim", None)
    heads = getattr(config, "num_attention_heads", None)
    if not head_dim or not heads or (out - heads * head_dim) % 2:
        raise AdapterError(f"{path}.{child}: cannot infer the q/k/v widths of the fused projection")
    q = heads * head_dim
    kv = (out - q) // 2
    return {"q": torch.arange(0, q), "k": torch.arange(q, q + kv), "v": torch.arange(q + kv, out)}


def find_attention_sites(model: nn.Module, module_filter: str | None = None) -> list[AttentionSite]:
    """All attention sites in module order (i.e. layer order).

    Args:
        model: any torch module; typically a Hugging Face causal LM.
        module_filter: optional regex searched in the attention module's path, to keep e.g. a
            vision tower's attention out of a multimodal model.

    Raises:
        AdapterError: when no attention projections are found.
    """
    pattern = re.compile(module_filter) if module_filter else None
    sites: list[AttentionSite] = []
    for path, module in model.named_modules():
        children = dict(module.named_children())
        if pattern is not None and not pattern.search(path):
            continue
        if all(_linear_like(children.get(c)) for c in SEPARATE.values()):
            projs = {t: children[c] for t, c in SEPARATE.items()}
            widths = {t: _base(p).out_features for t, p in projs.items()}
            sites.append(AttentionSite(path, module, _base(projs["q"]).in_features, widths,
                                       separate=dict(SEPARATE)))
            continue
        for child in FUSED:
            proj = children.get(child)
            if _linear_like(proj):
                base = _base(proj)
                cols = _fused_columns(path, module, child, base.out_features)
                sites.append(AttentionSite(path, module, base.in_features,
                                           {t: len(c) for t, c in cols.items()},
                                           fused=child, fused_columns=cols))
                break
    if not sites:
        where = f" matching module_filter={module_filter!r}" if module_filter else ""
        raise AdapterError(
            f"no attention projections found in {type(model).__name__}{where}: looked for "
            f"children named {', '.join(SEPARATE.values())} (together) or one of {', '.join(FUSED)}")
    return sites


def _base(module: nn.Module) -> nn.Module:
    """The plain Linear under an adapter wrapper (so finding sites twice still works)."""
    return getattr(module, "base_layer", module)


def parse_targets(targets: str, option: str = "targets") -> str:
    """Validate a q/k/v subset written like "qv"; returns it in q, k, v order."""
    if not isinstance(targets, str) or not targets or set(targets) - set(ALL_TARGETS) \
            or len(set(targets)) != len(targets):
        raise AdapterError(f"option {option!r}: {targets!r} is not a non-empty subset of q/k/v "
                           f"without repeats; allowed values: any of q, k, v, e.g. 'qv', 'kv', 'qkv'")
    return "".join(t for t in ALL_TARGETS if t in targets)


def select_sites(sites: list[AttentionSite], first_layer: int) -> list[AttentionSite]:
    if not 0 <= first_layer < len(sites):
        raise AdapterError(f"option 'first_layer': {first_layer} is out of range; allowed values: "
                           f"0..{len(sites) - 1} (the model has {len(sites)} attention layers)")
    return sites[first_layer:]
