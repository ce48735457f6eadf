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


# ---- The paper's inference setting (Table 2b / A.8): LLaMA-2-7B reading CLIP ViT-L/14 tokens, batch 1 ----

# The shapes of ntbench.model.shapes' "llama-2-7b" and "clip-vit-l-14" (cost sits beside the model
# package in the import layers, so it states them itself): LLaMA-2-7B's and openai/clip-vit-large-patch14's
# config.json.
LLAMA_2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)
CLIP_VIT_L_14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     image_size=224, patch_size=14)
# §5.1: images resized to 224 px for ViT-L/14 -> (224/14)^2 = 256 patches + CLS; the reference code
# feeds all 257 to the LLM (../shared/notes/reference-code.md, item 9)
IMAGE_TOKENS = (224 // 14) ** 2 + 1
# the paper gives no text length for Table 2b; 32 covers the referring prompt, the expression (RefCOCO's
# average is under 10 words) and the answer "<OBJ-1>" with room to spare. The CSV states it.
TEXT_TOKENS = 32
PAPER_TFLOPS = {"neural": 2.47, "lora": 2.38, "prefix": 3.32}  # Table 2b and Table A.8, the 7B rows
PAPER_ADAPTERS = ("frozen", "neural", "lora", "prefix", "ia3")


def vision_flops(batch: int = 1, **shape: Any) -> int:
    """FLOPs of one CLIP ViT forward on ``batch`` images (meta device; default ViT-L/14 at 224 px)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(**{**CLIP_VIT_L_14, **shape})
    with torch.device("meta"):
        model = CLIPVisionModel(cfg).eval()
        pixels = torch.zeros(batch, 3, cfg.image_size, cfg.image_size)
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter, torch.no_grad():
        model(pixel_values=pixels)
    return int(counter.get_total_flops())


def paper_inference_costs(adapters: tuple[str, ...] = PAPER_ADAPTERS, text_tokens: int = TEXT_TOKENS,
                          image_tokens: int = IMAGE_TOKENS, batch: int = 1,
                          llm: dict | None = None) -> list[dict[str, Any]]:
    """One forward at the paper's inference setting per adapter: vision tower + the frozen image
    projection + the LLM over [image tokens; text tokens], with the paper's TFLOPs beside ours.

    FLOPs are 2·m·n·k per matmul; ``tmacs`` (multiply-accumulates, half of that) is given too, since
    many FLOP counters report MACs under the name FLOPs. Adapters use their default options (neural:
    the paper's Dz 128, targets qv).

    Returns:
        Rows with ``adapter``, token counts, ``vision_tflops``, ``projection_tflops``, ``llm_tflops``,
        ``total_tflops``, ``total_tmacs``, ``paper_tflops`` (None where the paper gives none),
        ``trainable_params``.
    """
    from transformers import LlamaConfig

    shape = {**LLAMA_2_7B, **(llm or {})}
    seq = image_tokens + text_tokens
    vision = vision_flops(batch)
    projection = 2 * batch * image_tokens * CLIP_VIT_L_14["hidden_size"] * shape["hidden_size"]
    rows = []
    for name in adapters:
        row = adapter_cost(build_meta_model(LlamaConfig(**shape)), name, batch, seq)
        total = vision + projection + row["forward_flops"]
        rows.append({"adapter": name, "batch": batch, "image_tokens": image_tokens, "text_tokens": text_tokens,
                     "vision_tflops": vision / 1e12, "projection_tflops": projection / 1e12,
                     "llm_tflops": row["forward_flops"] / 1e12, "total_tflops": total / 1e12,
                     "total_tmacs": total / 2e12, "paper_tflops": PAPER_TFLOPS.get(name),
                     "trainable_params": row["trainable_params"]})
    return rows


def write_paper_table(path: str, text_tokens: int = TEXT_TOKENS) -> list[dict[str, Any]]:
    """:func:`paper_inference_costs` as a CSV at ``path`` (folders made); returns the rows."""
    import csv
    from pathlib import Path

    rows = paper_inference_costs(text_tokens=text_tokens)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return rows


if __name__ == "__main__":  # python -m ntbench.cost [PATH] [TEXT_TOKENS]
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "results/cost/tflops.csv"
    for r in write_paper_table(target, int(sys.argv[2]) if len(sys.argv) > 2 else TEXT_TOKENS):
        print(f"{r['adapter']:>7}: {r['total_tflops']:.3f} TFLOPs ({r['total_tmacs']:.3f} TMACs), paper "
              f"{r['paper_tflops'] if r['paper_tflops'] is not None else '-'}")
    print(f"wrote {target}")
