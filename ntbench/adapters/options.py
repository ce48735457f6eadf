"""Typed, documented options of every adapter (pydantic: unknown keys are errors).

The same models validate keyword arguments of :func:`ntbench.adapters.apply_adapter`, the
``adapter_options`` block of a suite and the CLI flags, so all three report errors alike.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ntbench.adapters.sites import AdapterError, parse_targets


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _targets(value: str) -> str:
    try:
        return parse_targets(value)
    except AdapterError as exc:
        raise ValueError(str(exc)) from None


class NeuralOptions(_Options):
    """Neural tuning (paper §3.2, Eq. 1-5) and the reference code's variants as switches."""

    dz: int = Field(128, ge=1, description="Dz, width of the sparse vector")
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="α of the cross-layer EMA (weights the previous layer)")
    beta: float = Field(0.4, gt=0.0, le=1.0, strict=True, description="β, target activation rate in (0, 1]")
    targets: str = Field("qv", description="projections that receive W_b Z^a: any subset of q/k/v")
    strategy: str = Field("gaussian", description="activation strategy name or plugin file.py[:name]")
    strategy_options: dict[str, Any] = Field(default_factory=dict, description="extra strategy parameters, e.g. std_ratio, m")
    first_layer: int = Field(0, ge=0, description="index of the first adapted layer (reference: ts_start_layer)")
    ema: bool = Field(True, description="sparse-vector updating across layers (Eq. 2); off: Z^u = Z")
    threshold: Literal["hard", "soft"] = Field("hard", description="hard: Eq. 3 mask; soft: relu(z - kth) as in the reference code")
    norm: bool = Field(False, description="RMSNorm on Z^u before sparsifying (reference code)")
    sparsify_at_inference: bool = Field(True, description="keep the mask in eval mode (paper) or go dense (reference flag)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on W_b's output (reference: 0.1)")
    chunking: Literal["paper", "reference"] = Field(
        "paper", description="how W_b's output is split over the targets: paper, one chunk per target in "
                             "q, k, v order; reference, as the released code: with targets qkv, K and V "
                             "both add chunk 1 and chunk 2 is never used (other target sets: the same)")
    init_wb: Literal["zero", "default"] = Field("zero", description="zero: start exactly at the frozen model; default: nn.Linear init")
    module_filter: str | None = Field(None, description="regex the attention module path must match")
    seed: int | None = Field(None, description="seed of the activation-strategy generator (None: 0, or in a "
                                               "trial the training seed, so paired cells share mask noise)")

    _check_targets = field_validator("targets")(classmethod(lambda cls, v: _targets(v)))


class LoraOptions(_Options):
    """LoRA through PEFT."""

    r: int = Field(8, ge=1, description="rank")
    alpha: float = Field(16.0, gt=0.0, description="lora_alpha (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="lora_dropout")
    targets: str = Field("qv", description="projections to adapt: any subset of q/k/v")
    module_filter: str | None = Field(None, description="regex the attention module path must match")

    _check_targets = field_validator("targets")(classmethod(lambda cls, v: _targets(v)))


class PrefixOptions(_Options):
    """Prefix tuning through PEFT (virtual key/value tokens in every layer)."""

    num_virtual_tokens: int = Field(16, ge=1, description="number of virtual tokens")


class IA3Options(_Options):
    """IA3 through PEFT (learned rescaling of k, v and the feed-forward down projection)."""

    targets: str = Field("kv", description="attention projections to rescale: any subset of q/k/v")
    feedforward: str | None = Field("down_proj", description="name of the feed-forward module to rescale; null for none")
    module_filter: str | None = Field(None, description="regex the attention module path must match")

    _check_targets = field_validator("targets")(classmethod(lambda cls, v: _targets(v)))


class NoOptions(_Options):
    """No options (frozen, full)."""


def validate_options(model_cls: type[_Options], adapter: str, options: dict[str, Any]) -> _Options:
    """Validate into ``model_cls``; raise AdapterError naming every bad option and its allowed values."""
    try:
        return model_cls(**options)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            field = model_cls.model_fields.get(str(err["loc"][0])) if err["loc"] else None
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(model_cls.model_fields)
                lines.append(f"unknown option {key!r}; allowed options: {allowed}")
            else:
                desc = f" ({field.description})" if field is not None and field.description else ""
                lines.append(f"option {key!r} = {err.get('input')!r}: {err['msg']}{desc}")
        raise AdapterError(f"adapter {adapter!r}: " + "; ".join(lines)) from None
