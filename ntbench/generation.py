"""Greedy decoding by repeated full forward passes (no KV cache).

Used as the reference that cached ``generate`` must match, and as the decoder for adapters
whose ``generate`` path is unreliable (PEFT prefix tuning on transformers >= 5.24 silently
drops the prefix in ``generate``; see shared/notes/environment.md).
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def greedy_decode(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int,
                  eos_token_id: int | None = None) -> torch.Tensor:
    """Append up to ``max_new_tokens`` argmax tokens to ``input_ids`` ([batch, seq]).

    Sequences that produced ``eos_token_id`` keep producing it (so the batch stays rectangular).
    """
    ids = input_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        nxt = logits[:, -1].argmax(-1)
        if eos_token_id is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
            done |= nxt == eos_token_id
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        if eos_token_id is not None and bool(done.all()):
            break
    return ids
