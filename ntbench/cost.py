"""Cost accounting: trainable parameters and FLOPs of a forward pass and of a training step.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (2·m·n·k per matmul; elementwise
ops, norms and softmax count 0; causal attention is counted as full attention). On the meta
device nothing is allocated, so a LLaMA-2-7B-shaped model is counted on a laptop.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from ntbench.adapters import apply_adapter


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable (the adapter's own list when adapted) and total parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    handle = getattr(model, "ntbench_adapter", None)
    trainable = handle.num_parameters() if handle is not None else \
        sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_params": trainable, "total_params": total}


def _first_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    # PyTorch's counter has no formula for the CPU flash-attention kernel that SDPA picks on a
    # CPU, so attention would count 0 here but not on a GPU; use the generic SDPA formula.
    return sdpa_flop_count(query, key, value)


def _cpu_flash_attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


FLOP_FORMULAS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_attention_flops
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward] = \
        _cpu_flash_attention_backward_flops


def _forward_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    if ids.device.type != "meta":
        return model(input_ids=ids, use_cache=False).logits
    # On meta tensors transformers' mask helpers call .item(); a ready 4-D causal mask skips
    # them. PEFT's prompt-learning wrappers build their own 2-D mask and need none.
    try:
        return model(input_ids=ids, use_cache=False).logits
    except RuntimeError:
        b, s = ids.shape
        mask = torch.ones(s, s, dtype=torch.bool, device=ids.device).tril().expand(b, 1, -1, -1)
        return model(input_ids=ids, attention_mask=mask, use_cache=False).logits


def measure_flops(model: nn.Module, batch: int, seq_len: int, train: bool = False) -> int:
    """FLOPs of one forward (``train=False``) or one forward+backward on a dummy token batch."""
    device = _first_device(model)
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
    was_training = model.training
    model.train(train)
    try:
        with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
            with torch.set_grad_enabled(train):
                logits = _forward_logits(model, ids)
                if train:
                    logits.float().mean().backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def build_meta_model(config: PretrainedConfig | str) -> nn.Module:
    """A causal LM from a config object, a local config path or a model id already cached,
    with weights on the meta device (nothing allocated)."""
    if isinstance(config, str):
        config = AutoConfig.from_pretrained(config, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model


def adapter_cost(model: nn.Module, adapter: str, batch: int, seq_len: int,
                 **options: Any) -> dict[str, Any]:
    """Apply ``adapter`` to ``model`` (consumed) and count its parameters and FLOPs.

    Returns:
        ``adapter``, ``trainable_params``, ``total_params``, ``forward_flops``,
        ``train_step_flops`` (forward + backward; optimizer arithmetic is elementwise, so 0).
    """
    adapted = apply_adapter(model, adapter, **options)
    row: dict[str, Any] = {"adapter": adapter, **count_parameters(adapted)}
    row["forward_flops"] = measure_flops(adapted, batch, seq_len, train=False)
    row["train_step_flops"] = measure_flops(adapted, batch, seq_len, train=True) if row["trainable_params"] else \
        row["forward_flops"]
    return row
