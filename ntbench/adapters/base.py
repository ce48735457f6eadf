"""The adapter interface, its registry, and :func:`apply_adapter`.

An adapter attaches to a model and names its own trainable parameters explicitly; the trainer
only talks to the :class:`AdapterHandle` left on the model, never to a concrete adapter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ntbench.adapters.options import NoOptions, validate_options
from ntbench.adapters.sites import AdapterError
from ntbench.registry import Registry

HANDLE_ATTR = "ntbench_adapter"


class Adapter:
    """Base class: subclasses set ``options_model`` and implement :meth:`attach`."""

    options_model: type = NoOptions
    # False where the adapter breaks under activation checkpointing; the trainer then trains
    # without it (and says so in its result) instead of failing
    supports_gradient_checkpointing: bool = True
    # False where decoding with a key/value cache would not see what the adapter adds (PEFT prefix
    # tuning's virtual tokens on transformers >= 5.24); decoding then re-runs the whole sequence
    supports_kv_cache: bool = True

    def attach(self, model: nn.Module, opts: Any) -> tuple[nn.Module, list[nn.Parameter]]:
        """Attach to ``model`` (all of whose parameters are frozen on entry).

        Returns:
            The model to use from now on (the same object, or a wrapper) and the adapter's
            parameters, which :func:`apply_adapter` then marks trainable.
        """
        raise NotImplementedError


ADAPTERS: Registry[type[Adapter]] = Registry("adapter", Adapter)


@dataclass
class AdapterHandle:
    """What an adapted model carries about its adapter (read by the trainer, cost and I/O code)."""

    name: str
    options: dict[str, Any]
    parameters: list[nn.Parameter] = field(repr=False)
    base_model: nn.Module = field(repr=False)

    @property
    def supports_gradient_checkpointing(self) -> bool:
        return ADAPTERS.get(self.name).supports_gradient_checkpointing

    @property
    def supports_kv_cache(self) -> bool:
        return ADAPTERS.get(self.name).supports_kv_cache

    def named_parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        ids = {id(p) for p in self.parameters}
        return {n: p for n, p in model.named_parameters() if id(p) in ids}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters)


def apply_adapter(model: nn.Module, name: str, **options: Any) -> nn.Module:
    """Attach adapter ``name`` to ``model`` and make exactly its parameters trainable.

    Args:
        model: a Hugging Face causal LM (any family with q/k/v or fused qkv projections).
        name: ``neural``, ``lora``, ``prefix``, ``ia3``, ``frozen`` or ``full``.
        **options: the adapter's options; see ``ntbench list --adapters`` or the option
            models in :mod:`ntbench.adapters.options`.

    Returns:
        The adapted model (the same object, or a PEFT wrapper for prefix tuning), carrying an
        :class:`AdapterHandle` as ``model.ntbench_adapter``.

    Raises:
        UnknownNameError: unknown adapter name (with a "did you mean").
        AdapterError: bad options, or the model lacks what the adapter needs.
    """
    cls = ADAPTERS.get(name)
    canonical = ADAPTERS.canonical(name)
    if getattr(model, HANDLE_ATTR, None) is not None:
        raise AdapterError(f"model already carries adapter {getattr(model, HANDLE_ATTR).name!r}; "
                           "apply adapters to a fresh model")
    opts = validate_options(cls.options_model, canonical, options)
    for p in model.parameters():
        p.requires_grad_(False)
    adapted, params = cls().attach(model, opts)
    for p in adapted.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    handle = AdapterHandle(canonical, opts.model_dump(), params, model)
    setattr(adapted, HANDLE_ATTR, handle)
    return adapted


def adapter_handle(model: nn.Module) -> AdapterHandle:
    handle = getattr(model, HANDLE_ATTR, None)
    if handle is None:
        raise AdapterError("this model carries no ntbench adapter; call apply_adapter first")
    return handle


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter's parameters, as the adapter itself listed them."""
    return list(adapter_handle(model).parameters)
