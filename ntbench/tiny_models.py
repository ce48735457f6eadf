"""Tiny Hugging Face causal LMs built from configs (no download), for tests and benchmarks.

Families: ``llama``, ``mistral`` (grouped-query attention), ``qwen2`` (q/k/v with bias),
``phi3`` (fused contiguous qkv_proj) and ``gpt_neox`` (fused, per-head interleaved).
"""
from __future__ import annotations

import torch
from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
                          MistralConfig, MistralForCausalLM, Phi3Config, Phi3ForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

from ntbench.registry import Registry

FAMILIES: Registry = Registry("model family")


def _common(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                max_position_embeddings=512, tie_word_embeddings=False)


FAMILIES.register("llama", lambda h, l, a, kv, v: LlamaForCausalLM(LlamaConfig(**_common(h, l, a, a, v))),
                  description="LlamaForCausalLM, separate q/k/v")
FAMILIES.register("mistral", lambda h, l, a, kv, v: MistralForCausalLM(MistralConfig(**_common(h, l, a, kv, v))),
                  description="MistralForCausalLM, grouped-query attention (k/v narrower than q)")
FAMILIES.register("qwen2", lambda h, l, a, kv, v: Qwen2ForCausalLM(Qwen2Config(**_common(h, l, a, kv, v))),
                  description="Qwen2ForCausalLM, q/k/v with bias")
FAMILIES.register("phi3", lambda h, l, a, kv, v: Phi3ForCausalLM(Phi3Config(**_common(h, l, a, kv, v), pad_token_id=0)),
                  description="Phi3ForCausalLM, fused contiguous qkv_proj")
FAMILIES.register("gpt_neox", lambda h, l, a, kv, v: GPTNeoXForCausalLM(GPTNeoXConfig(
    vocab_size=v, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=l, num_attention_heads=a,
    max_position_embeddings=512, tie_word_embeddings=False)),
                  description="GPTNeoXForCausalLM, fused per-head interleaved query_key_value")


def tiny_causal_lm(family: str = "llama", hidden: int = 64, layers: int = 2, heads: int = 4,
                   kv_heads: int = 2, vocab: int = 128, seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A randomly initialised causal LM of ``family`` (deterministic by ``seed``), in eval mode."""
    torch.manual_seed(seed)
    model = FAMILIES.get(family)(hidden, layers, heads, kv_heads, vocab).to(dtype)
    model.config._attn_implementation = "sdpa"
    return model.eval()
