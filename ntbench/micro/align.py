"""The micro backbone's alignment stage: the LLM learns to read image tokens (LLaVA-style).

After its text-only pretraining, the whole micro LLM and a vision->LLM projection train together on
text *about* an image, with the image's patch tokens in front: its caption, the answer to its
question (without task tags) and, for each referring expression, a description of the object it
names ("Describe the cross above the diamond." -> "The large yellow cross, top right.").

Why: a text-only LLM has never attended to image tokens. Tuning then first had to teach it to read
the image before any segmentation could leave the trivial-mask level, and when that happened
varied from run to run by hundreds of steps: the main source of seed noise in the micro ablations
(results/micro/resolution.md). Real backbones for this kind of work (LLaVA and its kin) ship an
LLM that already reads images and the projection that feeds it; so does the micro backbone now.
The LLM never sees a task token (<OBJ-i>, <GEN>) or a mask: grounding a mask is still the tuning's job.
"""
from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ntbench.model.allintoken import init_projector_as_bos

if TYPE_CHECKING:
    from ntbench.micro.recipe import MicroSizes, PrepareReport

DESCRIBE = "Describe {ref}."


def where(center: tuple[float, float], width: int, height: int) -> str:
    """', top left' / ', right' / '' (centre): the object's third of the image, in words the world uses."""
    x, y = center
    horizontal = "left" if x < width / 3 else ("right" if x > 2 * width / 3 else "")
    vertical = "top" if y < height / 3 else ("bottom" if y > 2 * height / 3 else "")
    words = " ".join(w for w in (vertical, horizontal) if w)
    return f", {words}" if words else ""


def alignment_pairs(sample) -> list[tuple[str, str]]:
    """(prompt, answer) pairs about one sample's image."""
    pairs = [("Describe the image.", sample.caption)]
    if sample.question:
        pairs.append((sample.question, re.sub(r"\s*<OBJ-\d+>", "", sample.answer)))
    for obj in sample.objects:
        a = obj.attributes
        if not {"size", "colour", "shape", "center"} <= set(a):
            continue  # data not made by the micro-world generator: captions and answers only
        answer = f"The {a['size']} {a['colour']} {a['shape']}{where(a['center'], sample.width, sample.height)}."
        pairs += [(DESCRIBE.format(ref=ref), answer) for ref in obj.refs]
    return pairs


def _batch(tokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[bos] prompt answer [eos], right padded; labels on the answer (and eos) only."""
    rows = []
    for prompt, answer in pairs:
        p = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False).input_ids
        a = tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        rows.append((p + a, len(p)))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for r, (row, n_prompt) in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
        labels[r, n_prompt:len(row)] = ids[r, n_prompt:len(row)]
    return ids, mask, labels


def align_llm(llm, vision, tokenizer, samples: list, patches: torch.Tensor, sizes: "MicroSizes",
              rng: np.random.Generator, report: "PrepareReport",
              train_steps: Callable, tick: Callable) -> nn.Linear:
    """Train ``llm`` (all of it, in place) and a new projection on image-conditioned text.

    Args:
        samples: the train samples whose images are ``patches`` (same order).
        patches: the frozen vision encoder's last-layer patch features of those images [N, P, D].
        train_steps: the recipe's optimiser loop (AdamW, warmup-cosine), as ``_train_steps``.

    Returns:
        The projection (vision width -> LLM width), to ship with the backbone.
    """
    start = time.perf_counter()
    projector = nn.Linear(patches.shape[-1], llm.config.hidden_size)
    embed = llm.get_input_embeddings()
    init_projector_as_bos(projector, embed, tokenizer.bos_token_id, float(embed.weight.float().std()))
    pairs = [alignment_pairs(s) for s in samples]
    llm.train()

    def loss_of(step: int) -> torch.Tensor:
        idx = rng.choice(len(samples), size=sizes.align_batch, replace=False)
        chosen = [pairs[int(i)][int(rng.integers(len(pairs[int(i)])))] for i in idx]
        ids, mask, labels = _batch(tokenizer, chosen)
        img = projector(patches[idx])
        inputs = torch.cat([img, llm.get_input_embeddings()(ids)], dim=1)
        attention = torch.cat([torch.ones(len(idx), img.shape[1], dtype=torch.long), mask], dim=1)
        logits = llm(inputs_embeds=inputs, attention_mask=attention).logits[:, img.shape[1]:-1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)

    losses = train_steps("alignment (LLM reads images)", list(llm.parameters()) + list(projector.parameters()),
                         sizes, sizes.align_steps, loss_of, tick)
    llm.eval()
    report.losses["align_first"], report.losses["align_last50"] = losses[0], float(np.mean(losses[-50:]))
    report.params["projector"] = sum(p.numel() for p in projector.parameters())
    report.seconds["align"] = time.perf_counter() - start
    return projector
