"""The embedded default backbone: pretrained by ntbench on the micro world, once, and cached.

``ntbench prepare`` builds, deterministically by seed, under ``$NTBENCH_HOME/backbones/``:

- ``llm/``: a word-level tokenizer (HF ``tokenizers``) and a small LLaMA trained on the world's
  text only (captions, questions, answers without tags, referring expressions): it never sees
  images or task tokens, so grounding must be learned by the tuning;
- ``vision/``: a CLIP-style ViT trained contrastively with a small text encoder on image-caption
  pairs, plus a dense auxiliary objective: each patch token predicts which shape and which colour
  cover its pixels (labels the micro world renders for free). Why: with the contrastive loss
  alone the patch features did not say *which* shape sits where, and no mask decoder could then
  segment an object named by its shape (results/micro/diagnosis/diagnosis.md);
- ``image_decoder/``: embedding -> image, trained on the frozen encoder's embeddings;
- ``prepare.json``: sizes, parameter counts, losses, and a SHA-256 of every file. It is written
  last: a folder without it, or whose files do not match it, is rebuilt, never loaded.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from transformers import (CLIPConfig, CLIPModel, CLIPVisionModel, LlamaConfig, LlamaForCausalLM)

from ntbench.data.io import SampleDataset
from ntbench.data.render import COLOURS, SHAPES
from ntbench.data.schema import decode_mask
from ntbench.model.backbone import BACKBONES, Backbone, ImageDecoder, load_backbone, word_tokenizer

MICRO_VERSION = 3  # bump when prepare() changes what it builds: stale caches are then rebuilt
MANIFEST = "prepare.json"


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
    batch: int = 64
    lr: float = 2e-3
    image_pool: int = 8000    # training images decoded once and kept in memory

    @classmethod
    def tiny(cls) -> "MicroSizes":
        """Micro-shaped but seconds to prepare: tests and smoke runs."""
        return cls(vision_hidden=32, vision_layers=3, text_hidden=32, clip_dim=16, llm_hidden=32, llm_layers=2,
                   clip_steps=3, lm_steps=3, decoder_steps=3, batch=8, image_pool=40)


@dataclass
class PrepareReport:
    seed: int
    sizes: dict
    params: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


def cache_dir(seed: int = 0, home: Path | None = None) -> Path:
    from ntbench.train.trial import ntbench_home
    return (home or ntbench_home()) / "backbones" / f"micro-v{MICRO_VERSION}-seed{seed}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_is_complete(folder: Path) -> bool:
    """True only if the manifest exists and every file it lists is there with the same hash."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return False
    return bool(files) and all((folder / f).is_file() and _sha(folder / f) == h for f, h in files.items())


def _texts(sample) -> list[str]:
    untagged = re.sub(r"\s*<OBJ-\d+>", "", sample.answer)
    return [sample.caption, f"{sample.question} {untagged}", sample.t2i_prompt] + \
        [r for o in sample.objects for r in o.refs] + [g["text"] for g in sample.groups]


def _image_pool(ds: SampleDataset, n: int) -> torch.Tensor:
    return torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))])


def _pixels(images: torch.Tensor) -> torch.Tensor:
    from ntbench.model.backbone import CLIP_MEAN, CLIP_STD
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
    f = (step + 1) / warmup if step < warmup else 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr * f


def prepare(data: Path, out: Path, seed: int = 0, sizes: MicroSizes = MicroSizes(),
            progress: Callable[[str, int, int, float], None] | None = None) -> PrepareReport:
    """Pretrain the micro backbone from the dataset at ``data`` into ``out`` (made anew)."""
    report = PrepareReport(seed, asdict(sizes))
    tick = progress or (lambda *a: None)
    if out.exists():
        shutil.rmtree(out)
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = SampleDataset(data, "train")
    pool = _image_pool(train, sizes.image_pool)
    n = len(pool)

    # 1. tokenizer over the world's words (task tokens are added later by the tuning)
    texts = [t for s in train.samples for t in _texts(s)]
    # the task prompts' own words (the tasks' token rows are added later, by the tuning)
    tokenizer = word_tokenizer(texts + ["Describe the image.", "Segment the object."])
    tokenizer.save_pretrained(work / "llm")

    # 2. CLIP: vision + text encoders, contrastive on image-caption pairs
    start = time.perf_counter()
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=sizes.text_hidden, intermediate_size=2 * sizes.text_hidden,
                         num_hidden_layers=sizes.text_layers, num_attention_heads=4, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(image_size=sizes.image_size, patch_size=sizes.patch, hidden_size=sizes.vision_hidden,
                           intermediate_size=2 * sizes.vision_hidden, num_hidden_layers=sizes.vision_layers,
                           num_attention_heads=4),
        projection_dim=sizes.clip_dim))
    labels = _patch_labels(train, n, sizes.image_size, sizes.patch) if sizes.dense_weight > 0 else None
    n_shape = 1 + len(SHAPES)  # label columns: background + shapes, then background + colours
    dense_head = torch.nn.Linear(sizes.vision_hidden, labels.shape[-1]) if labels is not None else None
    params = list(clip.parameters()) + (list(dense_head.parameters()) if dense_head is not None else [])
    opt = torch.optim.AdamW(params, lr=sizes.lr, weight_decay=0.01)
    losses, dense_losses = [], []
    for step in range(sizes.clip_steps):
        idx = rng.choice(n, size=sizes.batch, replace=False)
        enc = _encode_batch(tokenizer, [train.samples[int(i)].caption for i in idx], 64)
        _cosine_lr(opt, step, sizes.clip_steps, sizes.lr)
        # CLIP's symmetric contrastive loss, written out (CLIPModel's own loss is the same function, but
        # its float rounding differs and would change the recorded v3 weights; see results/micro/prepare.json)
        vis = clip.vision_model(pixel_values=_pixels(pool[idx]))
        img = F.normalize(clip.visual_projection(vis.pooler_output), dim=-1)
        txt = F.normalize(clip.text_projection(clip.text_model(**enc).pooler_output), dim=-1)
        sim = clip.logit_scale.exp() * img @ txt.T
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
        losses.append(float(loss.detach()))
        if dense_head is not None:
            pred, lab = dense_head(vis.last_hidden_state[:, 1:]), labels[idx]
            # patches are mostly background: weighting object patches 5x keeps the shape term from
            # being drowned (unweighted, a linear probe read shapes from the patches at chance level)
            weight = 1 + 4 * (1 - lab[..., 0])
            dense = _soft_ce(pred[..., :n_shape], lab[..., :n_shape], weight) + \
                _soft_ce(pred[..., n_shape:], lab[..., n_shape:])
            loss = loss + sizes.dense_weight * dense
            dense_losses.append(float(dense.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        tick("vision encoder (CLIP + dense)", step + 1, sizes.clip_steps, float(loss.detach()))
    vision = CLIPVisionModel(clip.config.vision_config)
    vision.load_state_dict(clip.vision_model.state_dict())
    vision.save_pretrained(work / "vision")
    report.losses["clip_first"], report.losses["clip_last50"] = losses[0], float(np.mean(losses[-50:]))
    if dense_losses:
        report.losses["dense_first"], report.losses["dense_last50"] = dense_losses[0], float(np.mean(dense_losses[-50:]))
    report.params["vision"] = sum(p.numel() for p in vision.parameters())
    report.params["text_encoder"] = sum(p.numel() for p in clip.text_model.parameters())
    report.seconds["clip"] = time.perf_counter() - start

    # 3. the causal LM on text only
    start = time.perf_counter()
    llm = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.llm_hidden, intermediate_size=2 * sizes.llm_hidden,
        num_hidden_layers=sizes.llm_layers, num_attention_heads=sizes.llm_heads, num_key_value_heads=sizes.llm_heads,
        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False))
    opt = torch.optim.AdamW(llm.parameters(), lr=sizes.lr, weight_decay=0.01)
    losses = []
    for step in range(sizes.lm_steps):
        batch = [texts[int(i)] for i in rng.choice(len(texts), size=sizes.batch, replace=False)]
        enc = _encode_batch(tokenizer, batch, 64)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        _cosine_lr(opt, step, sizes.lm_steps, sizes.lr)
        loss = llm(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        tick("language model", step + 1, sizes.lm_steps, losses[-1])
    llm.save_pretrained(work / "llm")
    report.losses["lm_first"], report.losses["lm_last50"] = losses[0], float(np.mean(losses[-50:]))
    report.params["llm"] = sum(p.numel() for p in llm.parameters())
    report.seconds["lm"] = time.perf_counter() - start

    # 4. the image decoder on the frozen encoder's pooled embeddings
    start = time.perf_counter()
    vision.eval()
    decoder = ImageDecoder(sizes.vision_hidden, sizes.image_size)
    opt = torch.optim.AdamW(decoder.parameters(), lr=sizes.lr)
    losses = []
    for step in range(sizes.decoder_steps):
        idx = rng.choice(n, size=sizes.batch, replace=False)
        images = pool[idx]
        with torch.no_grad():
            emb = vision(pixel_values=_pixels(images)).pooler_output
        _cosine_lr(opt, step, sizes.decoder_steps, sizes.lr)
        loss = F.mse_loss(decoder(emb), images.float() / 255.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        tick("image decoder", step + 1, sizes.decoder_steps, losses[-1])
    (work / "image_decoder").mkdir()
    save_file(decoder.state_dict(), str(work / "image_decoder" / "model.safetensors"))
    (work / "image_decoder" / "config.json").write_text(json.dumps(
        {"embed_dim": sizes.vision_hidden, "image_size": sizes.image_size}))
    report.losses["decoder_first"], report.losses["decoder_last50"] = losses[0], float(np.mean(losses[-50:]))
    report.params["image_decoder"] = sum(p.numel() for p in decoder.parameters())
    report.seconds["decoder"] = time.perf_counter() - start
    report.params["tokenizer_vocab"] = len(tokenizer)

    report.files = {str(p.relative_to(work)): _sha(p) for p in sorted(work.rglob("*")) if p.is_file()}
    (work / MANIFEST).write_text(json.dumps(asdict(report), indent=2, sort_keys=True) + "\n")
    work.rename(out)  # the finished folder appears at once
    return report


def load_micro(folder: Path) -> Backbone:
    """Load a prepared micro backbone through the normal from_pretrained code path."""
    if not cache_is_complete(folder):
        raise FileNotFoundError(f"{folder} is not a complete micro backbone (run `ntbench prepare`)")
    backbone = load_backbone(llm=str(folder / "llm"), vision=str(folder / "vision"))
    cfg = json.loads((folder / "image_decoder" / "config.json").read_text())
    decoder = ImageDecoder(cfg["embed_dim"], cfg["image_size"])
    decoder.load_state_dict(load_file(str(folder / "image_decoder" / "model.safetensors")))
    backbone.image_decoder = decoder
    backbone.name = f"micro:{folder.name}"
    backbone.meta = json.loads((folder / MANIFEST).read_text())
    return backbone.check()


def ensure_micro(seed: int = 0, sizes: MicroSizes = MicroSizes(), home: Path | None = None,
                 data: Path | None = None, progress=None) -> tuple[Path, bool]:
    """The cached micro backbone, prepared first if missing or incomplete. Returns (folder, built)."""
    from filelock import FileLock

    from ntbench.train.trial import default_data_dir

    folder = cache_dir(seed, home)
    if cache_is_complete(folder):
        return folder, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / ".lock"):  # one process prepares; the others wait and reuse it
        if cache_is_complete(folder):
            return folder, False
        prepare(data or default_data_dir(), folder, seed=seed, sizes=sizes, progress=progress)
    return folder, True


@BACKBONES.register("micro", description="ntbench's own backbone pretrained on the micro world (prepared once, cached)")
def micro_backbone(seed: int = 0) -> Backbone:
    folder, _ = ensure_micro(seed)
    return load_micro(folder)


def record_manifest(folder: Path, dest: Path) -> Path:
    """Copy the manifest to ``dest/prepare.json`` and write ``dest/prepare.md`` (a readable table)."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((folder / MANIFEST).read_text())
    (dest / "prepare.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    lines = ["# Micro backbone (made by `ntbench prepare --record results/micro`)", "",
             f"Seed {manifest['seed']}; wall time per stage (s): " +
             ", ".join(f"{k} {v:.0f}" for k, v in manifest["seconds"].items()), "",
             "| part | parameters |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in manifest["params"].items()]
    lines += ["", "| loss | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in manifest["losses"].items()]
    lines += ["", "| size | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in manifest["sizes"].items()]
    (dest / "prepare.md").write_text("\n".join(lines) + "\n")
    return dest / "prepare.md"
