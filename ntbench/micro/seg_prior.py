"""The micro backbone's segmentation prior: a mask decoder pretrained on prompt codes (SAM-style).

The paper's segmentation head is SAM's mask decoder, pretrained on a billion masks with point and
box prompts; tuning only teaches the LLM's <OBJ-i> state to prompt it. The micro backbone had no
such decoder: every trial started from a random one, and teacher-forced reasoning oIoU left the
all-objects level only after ~525 steps (median of 10 seeds, results/micro/takeoff), the decoder
learning what an object is at the same time as the LLM learned which one was asked for.

This stage trains a :class:`~ntbench.model.heads.MaskDecoder` of the shape the all-in-token model
builds, on the frozen vision encoder, to segment one object of a training image given a *prompt
code*: a fixed random embedding of the object's shape and colour in the LLM's width. The code is
not an LLM state: the LLM, its states and the task tokens are never seen here, so the tuning still
has to ground the referring expression or the reasoning answer in the image and map it onto what
the decoder reads. Every adapter (frozen, LoRA, neural, ...) starts from this same decoder. The
state whitening is bypassed here and ships empty: its statistics are those of the tuned LLM.

On v4, seed 0, the default configuration, take-off moved from step 550 to 250 with this prior
(results/micro/resolution.md, section 0).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ntbench.data.render import COLOURS, SHAPES
from ntbench.data.schema import decode_mask
from ntbench.model.backbone import DEFAULT_SEG_LAYERS
from ntbench.model.heads import MaskDecoder, dice_loss

if TYPE_CHECKING:
    from ntbench.micro.recipe import MicroSizes, PrepareReport


def prompt_codes(llm_width: int, rng: np.random.Generator) -> torch.Tensor:
    """[len(SHAPES) + len(COLOURS), llm_width]: fixed random rows; an object's code is its shape row
    plus its colour row (unit variance per dimension, like a whitened state)."""
    rows = rng.standard_normal((len(SHAPES) + len(COLOURS), llm_width)) / np.sqrt(2.0)
    return torch.from_numpy(rows.astype(np.float32))


def _prompt_items(samples: list) -> list[tuple[int, int, int, int]]:
    """(image index, object index, shape row, colour row) of every object with micro-world attributes."""
    shapes, colours = {s: k for k, s in enumerate(SHAPES)}, {c: k for k, c in enumerate(COLOURS)}
    items = []
    for i, sample in enumerate(samples):
        for j, obj in enumerate(sample.objects):
            a = obj.attributes
            if a.get("shape") in shapes and a.get("colour") in colours:
                items.append((i, j, shapes[a["shape"]], len(SHAPES) + colours[a["colour"]]))
    return items


def pretrain_mask_decoder(vision: nn.Module, samples: list, pool: torch.Tensor, pixels: Callable,
                          llm_width: int, sizes: "MicroSizes", rng: np.random.Generator, report: "PrepareReport",
                          train_steps: Callable, tick: Callable) -> MaskDecoder | None:
    """Train a mask decoder to segment the object a prompt code names.

    Args:
        samples: the train samples whose images are ``pool`` (same order).
        pool: their uint8 images [N, 3, H, W].
        pixels: the recipe's image normalisation (uint8 -> CLIP-normalised floats).
        train_steps: the recipe's optimiser loop (AdamW, warmup-cosine), as ``_train_steps``.

    Returns:
        The decoder (its whitening untouched), or None when the data has no shape/colour attributes.
    """
    items = _prompt_items(samples)
    if not items:
        return None
    start = time.perf_counter()
    vision.eval()
    codes = prompt_codes(llm_width, rng)
    # the shape the all-in-token model builds by default (its layers and decoder_width)
    decoder = MaskDecoder(llm_width, int(vision.config.hidden_size), len(DEFAULT_SEG_LAYERS))
    whiten, decoder.whiten = decoder.whiten, nn.Identity()  # codes are already unit-variance

    def loss_of(step: int) -> torch.Tensor:
        chosen = [items[int(k)] for k in rng.choice(len(items), size=sizes.seg_prior_batch, replace=False)]
        images = pool[[c[0] for c in chosen]]
        with torch.no_grad():
            x = pixels(images).float()
            out = vision(pixel_values=x, output_hidden_states=True)
            seg = [out.hidden_states[layer][:, 1:] for layer in DEFAULT_SEG_LAYERS]
        state = codes[[c[2] for c in chosen]] + codes[[c[3] for c in chosen]]
        target = torch.from_numpy(np.stack([decode_mask(samples[i].objects[j].mask) for i, j, _, _ in chosen]))
        logits = decoder(state, seg, tuple(target.shape[-2:]), x)
        return dice_loss(logits, target) + F.binary_cross_entropy_with_logits(logits, target.float())

    losses = train_steps("segmentation prior (mask decoder)", decoder.parameters(), sizes, sizes.seg_prior_steps,
                         loss_of, tick)
    decoder.whiten = whiten
    report.losses["seg_prior_first"], report.losses["seg_prior_last50"] = losses[0], float(np.mean(losses[-50:]))
    report.params["mask_decoder"] = sum(p.numel() for p in decoder.parameters())
    report.seconds["seg_prior"] = time.perf_counter() - start
    return decoder
