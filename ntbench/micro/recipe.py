"""The micro backbone's recipe: how ntbench pretrains its own backbone on the micro world.

:func:`build` writes, deterministically by seed, into a folder:

- ``llm/``: a word-level tokenizer (HF ``tokenizers``) and a small LLaMA, first trained on the world's
  text only (captions, questions, answers without tags, referring expressions);
- ``vision/``: a CLIP-style ViT trained contrastively with a small text encoder on image-caption
  pairs, plus a dense auxiliary objective: each patch token predicts which shape and which colour
  cover its pixels (labels the micro world renders for free). Why: with the contrastive loss
  alone the patch features did not say *which* shape sits where, and no mask decoder could then
  segment an object named by its shape (results/micro/diagnosis/diagnosis.md);
- alignment (:mod:`ntbench.micro.align`): the LLM, all of it, and a vision->LLM projection
  (``projector/``) then learn together to read image tokens on text about the image (captions,
  untagged answers, object descriptions), as LLaVA-style backbones do; still no task tokens, no masks;
- ``image_decoder/``: embedding -> image, trained on the frozen encoder's embeddings;
- ``mask_decoder/`` (:mod:`ntbench.micro.seg_prior`): a mask decoder pretrained to segment the
  object a prompt code (shape and colour) names, as SAM is pretrained on prompts; the all-in-token
  model's decoder starts from it, for every adapter alike.

Caching, the manifest and the ``micro`` preset are in :mod:`ntbench.micro.cache`.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import save_file
from torch.nn import functional as F
from transformers import CLIPConfig, CLIPModel, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

from ntbench.data.io import SampleDataset
from ntbench.data.render import COLOURS, SHAPES
from ntbench.data.schema import decode_mask
from ntbench.micro.align import align_llm, alignment_pairs
from ntbench.micro.seg_prior import pretrain_mask_decoder
from ntbench.model.backbone import CLIP_MEAN, CLIP_STD, ImageDecoder, word_tokenizer

MICRO_VERSION = 5  # v4: the alignment stage; v5: the segmentation prior. Bump when build() changes what it makes: stale caches are then rebuilt

Progress = Callable[[str, int, int, float], None]  # (stage, step, total, loss)


@dataclass(frozen=True)
class MicroSizes:
    """Sizes and budgets of the micro backbone (defaults: prepare fits in minutes on 2 cores)."""

    image_size: int = 64
    patch: int = 8
    vision_hidden: int = 96
    vision_layers: int = 4
    text_hidden: int = 64
    text_layers: int = 2
    clip_dim: int = 64
    llm_hidden: int = 128
    llm_layers: int = 4
    llm_heads: int = 4
    clip_steps: int = 1200
    dense_weight: float = 4.0  # per-patch shape/colour loss vs contrastive (1.0: patch shape probe 0.33, 4.0: 0.76)
    lm_steps: int = 1000
    decoder_steps: int = 400
    align_steps: int = 600   # LLM + projection on image-conditioned text (ntbench.micro.align)
    align_batch: int = 24
    seg_prior_steps: int = 600  # mask decoder on prompt codes (ntbench.micro.seg_prior)
    seg_prior_batch: int = 32
    batch: int = 64
    lr: float = 2e-3
    image_pool: int = 8000    # training images decoded once and kept in memory

    @classmethod
    def tiny(cls) -> "MicroSizes":
        """Micro-shaped but seconds to prepare: tests and smoke runs."""
        return cls(vision_hidden=32, vision_layers=3, text_hidden=32, clip_dim=16, llm_hidden=32, llm_layers=2,
                   clip_steps=3, lm_steps=3, decoder_steps=3, align_steps=3, align_batch=4,
                   seg_prior_steps=3, seg_prior_batch=4, batch=8, image_pool=40)


@dataclass
class PrepareReport:
    seed: int
    sizes: dict
    params: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


def _texts(sample) -> list[str]:
    untagged = re.sub(r"\s*<OBJ-\d+>", "", sample.answer)
    return [sample.caption, f"{sample.question} {untagged}", sample.t2i_prompt] + \
        [r for o in sample.objects for r in o.refs] + [g["text"] for g in sample.groups]


def _image_pool(ds: SampleDataset, n: int) -> torch.Tensor:
    return torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))])


def _pixels(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255.0
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def _patch_labels(ds: SampleDataset, n: int, side: int, patch: int) -> torch.Tensor | None:
    """Per patch, the fraction of its pixels that are background or each shape, and background or each
    colour: [n, P, 1 + len(SHAPES) + 1 + len(COLOURS)]. None when the data has no shape/colour attributes
    (data not made by the micro-world generator)."""
    shape_id = {s: k + 1 for k, s in enumerate(SHAPES)}
    colour_id = {c: k + 1 for k, c in enumerate(COLOURS)}
    g = side // patch
    out = np.zeros((n, g * g, 2 + len(SHAPES) + len(COLOURS)), np.float32)
    for i in range(n):
        sample = ds.samples[i]
        if (sample.height, sample.width) != (side, side):
            return None
        shape_map = np.zeros((side, side), np.int64)
        colour_map = np.zeros((side, side), np.int64)
        for obj in sample.objects:
            attrs = obj.attributes
            if attrs.get("shape") not in shape_id or attrs.get("colour") not in colour_id:
                return None
            m = decode_mask(obj.mask).astype(bool)
            shape_map[m], colour_map[m] = shape_id[attrs["shape"]], colour_id[attrs["colour"]]
        onehot = np.concatenate([np.eye(1 + len(SHAPES), dtype=np.float32)[shape_map],
                                 np.eye(1 + len(COLOURS), dtype=np.float32)[colour_map]], -1)
        out[i] = onehot.reshape(g, patch, g, patch, -1).mean((1, 3)).reshape(g * g, -1)
    return torch.from_numpy(out)


def _soft_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against soft labels, averaged over patches (optionally weighted per patch)."""
    ce = -(target * F.log_softmax(logits, -1)).sum(-1)
    return (ce * weight).sum() / weight.sum() if weight is not None else ce.mean()


def _encode_batch(tokenizer, texts: list[str], max_len: int) -> dict[str, torch.Tensor]:
    enc = tokenizer([f"{tokenizer.bos_token} {t} {tokenizer.eos_token}" for t in texts], padding=True,
                    truncation=True, max_length=max_len, return_tensors="pt", add_special_tokens=False)
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}


def _cosine_lr(opt, step: int, total: int, lr: float, warmup: int = 50) -> None:
    """Linear warmup, then cosine decay: the shape of ntbench.train.trainer.lr_factor, kept apart
    on purpose. Its float operations run in another order ((pi * s) / n there pi * (s / n)), which
    moves the factor by one ulp at about one step in ten; the recorded v3 weights were made with
    this one (results/micro/prepare.json), so sharing the function would change them."""
    f = (step + 1) / warmup if step < warmup else 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr * f


def _train_steps(stage: str, model_params, sizes: "MicroSizes", total: int, loss_of: Callable[[int], torch.Tensor],
                 tick: Progress, weight_decay: float = 0.01) -> list[float]:
    """AdamW with the warmup-cosine schedule over ``total`` steps of ``loss_of(step)``; the losses."""
    opt = torch.optim.AdamW(model_params, lr=sizes.lr, weight_decay=weight_decay)
    losses = []
    for step in range(total):
        _cosine_lr(opt, step, total, sizes.lr)  # before the forward pass: its order in v3's loops
        loss = loss_of(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        tick(stage, step + 1, total, losses[-1])
    return losses


def _summary(report: "PrepareReport", name: str, losses: list[float]) -> None:
    report.losses[f"{name}_first"], report.losses[f"{name}_last50"] = losses[0], float(np.mean(losses[-50:]))


def _clip_model(sizes: "MicroSizes", tokenizer) -> CLIPModel:
    return CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=sizes.text_hidden, intermediate_size=2 * sizes.text_hidden,
                         num_hidden_layers=sizes.text_layers, num_attention_heads=4, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(image_size=sizes.image_size, patch_size=sizes.patch, hidden_size=sizes.vision_hidden,
                           intermediate_size=2 * sizes.vision_hidden, num_hidden_layers=sizes.vision_layers,
                           num_attention_heads=4),
        projection_dim=sizes.clip_dim))


def train_vision(train: SampleDataset, pool: torch.Tensor, tokenizer, sizes: "MicroSizes", rng: np.random.Generator,
                 report: "PrepareReport", tick: Progress) -> CLIPVisionModel:
    """Stage 2: CLIP's vision and text encoders, contrastive on image-caption pairs, plus the dense
    per-patch shape/colour objective; returns the vision encoder alone."""
    n = len(pool)
    clip = _clip_model(sizes, tokenizer)
    labels = _patch_labels(train, n, sizes.image_size, sizes.patch) if sizes.dense_weight > 0 else None
    n_shape = 1 + len(SHAPES)  # label columns: background + shapes, then background + colours
    dense_head = torch.nn.Linear(sizes.vision_hidden, labels.shape[-1]) if labels is not None else None
    params = list(clip.parameters()) + (list(dense_head.parameters()) if dense_head is not None else [])
    contrastive, dense_losses = [], []

    def loss_of(step: int) -> torch.Tensor:
        idx = rng.choice(n, size=sizes.batch, replace=False)
        enc = _encode_batch(tokenizer, [train.samples[int(i)].caption for i in idx], 64)
        # CLIP's symmetric contrastive loss, written out (CLIPModel's own loss is the same function, but
        # its float rounding differs and would change the recorded v3 weights; see results/micro/prepare.json)
        vis = clip.vision_model(pixel_values=_pixels(pool[idx]))
        img = F.normalize(clip.visual_projection(vis.pooler_output), dim=-1)
        txt = F.normalize(clip.text_projection(clip.text_model(**enc).pooler_output), dim=-1)
        sim = clip.logit_scale.exp() * img @ txt.T
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
        contrastive.append(float(loss.detach()))
        if dense_head is None:
            return loss
        pred, lab = dense_head(vis.last_hidden_state[:, 1:]), labels[idx]
        # patches are mostly background: weighting object patches 5x keeps the shape term from
        # being drowned (unweighted, a linear probe read shapes from the patches at chance level)
        weight = 1 + 4 * (1 - lab[..., 0])
        dense = _soft_ce(pred[..., :n_shape], lab[..., :n_shape], weight) + \
            _soft_ce(pred[..., n_shape:], lab[..., n_shape:])
        dense_losses.append(float(dense.detach()))
        return loss + sizes.dense_weight * dense

    start = time.perf_counter()
    _train_steps("vision encoder (CLIP + dense)", params, sizes, sizes.clip_steps, loss_of, tick)
    vision = CLIPVisionModel(clip.config.vision_config)
    vision.load_state_dict(clip.vision_model.state_dict())
    _summary(report, "clip", contrastive)
    if dense_losses:
        _summary(report, "dense", dense_losses)
    report.params["vision"] = sum(p.numel() for p in vision.parameters())
    report.params["text_encoder"] = sum(p.numel() for p in clip.text_model.parameters())
    report.seconds["clip"] = time.perf_counter() - start
    return vision


def train_lm(texts: list[str], tokenizer, sizes: "MicroSizes", rng: np.random.Generator, report: "PrepareReport",
             tick: Progress) -> LlamaForCausalLM:
    """Stage 3: the causal LM, on the world's text only."""
    start = time.perf_counter()
    llm = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.llm_hidden, intermediate_size=2 * sizes.llm_hidden,
        num_hidden_layers=sizes.llm_layers, num_attention_heads=sizes.llm_heads, num_key_value_heads=sizes.llm_heads,
        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False))

    def loss_of(step: int) -> torch.Tensor:
        enc = _encode_batch(tokenizer, [texts[int(i)] for i in rng.choice(len(texts), size=sizes.batch, replace=False)], 64)
        return llm(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss

    _summary(report, "lm", _train_steps("language model", llm.parameters(), sizes, sizes.lm_steps, loss_of, tick))
    report.params["llm"] = sum(p.numel() for p in llm.parameters())
    report.seconds["lm"] = time.perf_counter() - start
    return llm


def train_image_decoder(vision: CLIPVisionModel, pool: torch.Tensor, sizes: "MicroSizes", rng: np.random.Generator,
                        report: "PrepareReport", tick: Progress) -> ImageDecoder:
    """Stage 4: the image decoder, on the frozen vision encoder's pooled embeddings."""
    start = time.perf_counter()
    vision.eval()
    decoder = ImageDecoder(sizes.vision_hidden, sizes.image_size)

    def loss_of(step: int) -> torch.Tensor:
        images = pool[rng.choice(len(pool), size=sizes.batch, replace=False)]
        with torch.no_grad():
            emb = vision(pixel_values=_pixels(images)).pooler_output
        return F.mse_loss(decoder(emb), images.float() / 255.0)

    _summary(report, "decoder", _train_steps("image decoder", decoder.parameters(), sizes, sizes.decoder_steps,
                                             loss_of, tick))
    report.params["image_decoder"] = sum(p.numel() for p in decoder.parameters())
    report.seconds["decoder"] = time.perf_counter() - start
    return decoder


def build(data: Path, work: Path, seed: int = 0, sizes: MicroSizes = MicroSizes(),
          progress: Progress | None = None) -> PrepareReport:
    """Pretrain the micro backbone from the dataset at ``data``, writing its parts into ``work``.

    Args:
        data: a micro-world dataset folder (its train split is used).
        work: an existing, empty folder.
        seed: seeds every draw: the same seed, data and sizes give byte-identical weights.
        sizes: model sizes and step budgets.
        progress: called after every step with (stage, step, total, loss).

    Returns:
        Sizes, parameter counts, losses and seconds per stage (the manifest adds file hashes).
    """
    report = PrepareReport(seed, asdict(sizes))
    tick = progress or (lambda *a: None)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = SampleDataset(data, "train")
    pool = _image_pool(train, sizes.image_pool)

    # 1. tokenizer over the world's words and the task prompts' own words (the tasks' token rows
    # are added later, by the tuning)
    texts = [t for s in train.samples for t in _texts(s)]
    described = [f"{q} {a}" for s in train.samples[:len(pool)] for q, a in alignment_pairs(s)]
    tokenizer = word_tokenizer(texts + described + ["Describe the image.", "Segment the object."])
    tokenizer.save_pretrained(work / "llm")
    vision = train_vision(train, pool, tokenizer, sizes, rng, report, tick)
    vision.save_pretrained(work / "vision")
    llm = train_lm(texts, tokenizer, sizes, rng, report, tick)
    with torch.no_grad():  # the frozen encoder's patch features of the pool, computed once
        vision.eval()
        patches = torch.cat([vision(pixel_values=_pixels(pool[i:i + 256])).last_hidden_state[:, 1:]
                             for i in range(0, len(pool), 256)])
    projector = align_llm(llm, vision, tokenizer, train.samples[:len(pool)], patches, sizes, rng, report,
                          _train_steps, tick)
    llm.save_pretrained(work / "llm")
    (work / "projector").mkdir()
    save_file(projector.state_dict(), str(work / "projector" / "model.safetensors"))
    (work / "projector" / "config.json").write_text(json.dumps(
        {"in_features": projector.in_features, "out_features": projector.out_features}))
    decoder = train_image_decoder(vision, pool, sizes, rng, report, tick)
    (work / "image_decoder").mkdir()
    save_file(decoder.state_dict(), str(work / "image_decoder" / "model.safetensors"))
    (work / "image_decoder" / "config.json").write_text(json.dumps(
        {"embed_dim": sizes.vision_hidden, "image_size": sizes.image_size}))
    # last, so that every part above is byte-identical to v4's (same seed, same draws)
    prior = pretrain_mask_decoder(vision, train.samples[:len(pool)], pool, _pixels, sizes.llm_hidden, sizes, rng,
                                  report, _train_steps, tick)
    if prior is not None:
        (work / "mask_decoder").mkdir()
        save_file(prior.prior_state(), str(work / "mask_decoder" / "model.safetensors"))
    report.params["tokenizer_vocab"] = len(tokenizer)
    return report
