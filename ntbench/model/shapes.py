"""Named model shapes with random weights: paper-scale benchmarks and smoke runs with no download.

``llama-2-7b`` and ``clip-vit-l-14`` are the shapes of the paper's backbone (LLaMA-2-7B reading
CLIP ViT-L/14 patch tokens); the small shapes let the same code run on a laptop CPU in tests.
Weights are drawn on the target device (a 7B model initialised on a CPU takes minutes, on a GPU
a second), so the numbers a model computes are meaningless but its cost is the real one.
"""
from __future__ import annotations

import contextlib

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

# hidden, intermediate, layers, heads, vocab: LLaMA-2-7B's config.json and smaller stand-ins
LLM_SHAPES: dict[str, dict] = {
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                       max_position_embeddings=4096),
    "llama-1b-8l": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,  # the earlier H200 bench
                        num_attention_heads=16, num_key_value_heads=16, vocab_size=32000,
                        max_position_embeddings=2048),
    "tiny": dict(hidden_size=128, intermediate_size=344, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=32000, max_position_embeddings=1024),
}
# CLIP ViT-L/14 at 224 px (openai/clip-vit-large-patch14) and a stand-in for CPU tests
VISION_SHAPES: dict[str, dict] = {
    "clip-vit-l-14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                          num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768),
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                 image_size=64, patch_size=8),
}


def _shape(table: dict[str, dict], name: str, what: str) -> dict:
    if name not in table:
        raise ValueError(f"unknown {what} shape {name!r}; allowed: {', '.join(table)}")
    return dict(table[name])


def llm_config(shape: str, **overrides) -> LlamaConfig:
    return LlamaConfig(**{**_shape(LLM_SHAPES, shape, "LLM"), **overrides})


def vision_config(shape: str, **overrides) -> CLIPVisionConfig:
    return CLIPVisionConfig(**{**_shape(VISION_SHAPES, shape, "vision"), **overrides})


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def random_llm(shape: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A LLaMA of ``shape`` with random weights, built directly on ``device`` in ``dtype``."""
    torch.manual_seed(seed)
    with torch.device(device), _default_dtype(dtype):
        return LlamaForCausalLM(llm_config(shape, **overrides))


def random_vision(shape: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                  seed: int = 0) -> CLIPVisionModel:
    """A CLIP vision encoder of ``shape`` with random weights, built on ``device`` in ``dtype``."""
    torch.manual_seed(seed + 1)
    with torch.device(device), _default_dtype(dtype):
        return CLIPVisionModel(vision_config(shape))
