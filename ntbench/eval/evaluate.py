"""Evaluation of an all-in-token model on a split, per task, in teacher-forced and generated modes."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from ntbench.adapters import sparse_vector_state
from ntbench.data.io import SampleDataset
from ntbench.eval.metrics import caption_metrics, fid_kid, segmentation_metrics
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.batching import Item, collate, to_device
from ntbench.model.tasks import TASKS, obj_token


def build_items(dataset: SampleDataset, task: str, n: int, seed: int) -> list[Item]:
    """The first ``n`` samples (in split order) that can serve ``task``, built deterministically."""
    rng = np.random.default_rng(seed)
    builder = TASKS.get(task)()
    items = []
    for idx in range(len(dataset)):
        example = builder.build(dataset.samples[idx], rng)
        if example is None:
            continue
        data = dataset[idx]
        items.append(Item(example, data["image"], data["masks"], data["id"]))
        if len(items) >= n:
            break
    return items


def _batches(items: list[Item], size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _ActivationCounter:
    """Observer of the neural adapter's keep-masks: per layer, how often each neuron is active."""

    def __init__(self):
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = defaultdict(int)

    def __call__(self, layer: int, keep: torch.Tensor) -> None:
        flat = keep.reshape(-1, keep.shape[-1]).float()
        self.sums[layer] = self.sums.get(layer, 0) + flat.sum(0).cpu()
        self.counts[layer] += flat.shape[0]

    def frequencies(self) -> list[list[float]]:
        return [(self.sums[k] / self.counts[k]).tolist() for k in sorted(self.sums)]


@torch.no_grad()
def _teacher_forced(model: AllInTokenModel, items: list[Item], batch_size: int, device) -> dict[str, Any]:
    preds, gts, emb_pred, emb_true, real = [], [], [], [], []
    for chunk in _batches(items, batch_size):
        batch = to_device(collate(chunk, model.tokenizer), device)
        vision = model.encode_images(batch["images"])
        _, hidden, off = model.run_llm(batch, vision)
        if len(batch["seg_b"]):
            masks = model.predict_masks(hidden, vision, batch["seg_b"], off + batch["seg_t"],
                                        tuple(batch["seg_masks"].shape[-2:]))
            preds += list(masks.cpu().numpy())
            gts += list(batch["seg_masks"].bool().cpu().numpy())
        if len(batch["gen_b"]):
            emb_pred.append(model.gen_head(hidden[batch["gen_b"], off + batch["gen_t"]].float()).cpu())
            emb_true.append(vision["pooled"][batch["gen_b"]].float().cpu())
            real.append(batch["images"][batch["gen_b"]].cpu())
    return {"preds": preds, "gts": gts, "emb_pred": emb_pred, "emb_true": emb_true, "real": real}


_TAG = re.compile(r"<OBJ-\d+>")


def answer_words(text: str) -> list[str]:
    """An answer's words without its object tags, case or punctuation: what decides whether a generated
    answer names the same object as the reference ("The yellow cross <OBJ-1> is closest to the top."
    and "the yellow cross is closest to the top ." are the same answer)."""
    return re.sub(r"[^a-z0-9 ]+", " ", _TAG.sub(" ", text).lower()).split()


def answer_accuracy(references: list[str], generated: list[str]) -> float:
    """Fraction of generated answers whose words equal the reference's (:func:`answer_words`).

    A generated-mode mask follows the object the answer names, so a wrong answer caps ``gen_*`` oIoU
    whatever the mask decoder does; this says how often that happened."""
    if not references:
        return float("nan")
    return sum(answer_words(r) == answer_words(g) for r, g in zip(references, generated)) / len(references)


@torch.no_grad()
def _generated(model: AllInTokenModel, items: list[Item], batch_size: int, device, max_new_tokens: int):
    """Generated answers; each emitted <OBJ-k> is decoded into a mask and matched to target k."""
    tok = model.tokenizer
    tag_of = {tok.convert_tokens_to_ids(obj_token(k)): k for k in range(1, 65)}
    texts, preds, gts = [], [], []
    for chunk in _batches(items, batch_size):
        batch = to_device(collate(chunk, tok, teacher_forced=False), device)
        out = model.generate(batch, max_new_tokens=max_new_tokens)
        size = tuple(chunk[0].masks.shape[-2:])
        for row, it in enumerate(chunk):
            ids = out["ids"][row].tolist()
            if tok.eos_token_id in ids:
                ids = ids[:ids.index(tok.eos_token_id)]
            texts.append(tok.decode([i for i in ids if i < model.base_vocab], skip_special_tokens=True).strip())
            first = {}
            for j, t in enumerate(ids):
                if t in tag_of and tag_of[t] not in first:
                    first[tag_of[t]] = j
            for k, obj in enumerate(it.example.target_objects, start=1):
                gt = it.masks[obj].bool().numpy()
                if k in first:
                    h = out["answer_hidden_full"]
                    pos = torch.tensor([out["offset"] + first[k]], device=h.device)
                    mask = model.predict_masks(h, out["vision"], torch.tensor([row], device=h.device),
                                               pos, size)[0].cpu().numpy()
                else:
                    mask = np.zeros_like(gt)
                preds.append(mask)
                gts.append(gt)
    return texts, preds, gts


def evaluate(model: AllInTokenModel, dataset: SampleDataset, tasks: list[str], n_samples: int = 32,
             batch_size: int = 16, seed: int = 0, generated: bool = True, meteor: bool = False,
             max_new_tokens: int = 32, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Metrics per task. Segmentation: ``tf_*`` teacher-forced (the paper's mode) and ``gen_*``
    generated; each under both conventions (``paper_*``: mIoU/oIoU/Pr@, ``lisa_*``: gIoU/cIoU)."""
    was_training = model.training
    model.eval()
    state = sparse_vector_state(model.llm)
    results: dict[str, Any] = {}
    frequencies = {}
    try:
        for task in tasks:
            items = build_items(dataset, task, n_samples, seed)
            counter = _ActivationCounter()
            if state is not None:
                state.observer = counter
            tf = _teacher_forced(model, items, batch_size, device)
            if state is not None:
                state.observer = None
                frequencies[task] = counter.frequencies()
            metrics: dict[str, Any] = {"n_samples": len(items)}
            if TASKS.get(task).segmentation:
                metrics.update({f"tf_{k}": v for k, v in segmentation_metrics(tf["preds"], tf["gts"]).items()})
                if generated:
                    texts, preds, gts = _generated(model, items, batch_size, device, max_new_tokens)
                    metrics.update({f"gen_{k}": v for k, v in segmentation_metrics(preds, gts).items()})
                    metrics["gen_answer_accuracy"] = answer_accuracy([it.example.answer for it in items], texts)
            if task == "captioning":
                texts, _, _ = _generated(model, items, batch_size, device, max_new_tokens)
                refs = {it.sample_id: [it.example.answer] for it in items}
                hyps = {it.sample_id: t for it, t in zip(items, texts)}
                metrics.update(caption_metrics(refs, hyps, meteor=meteor))
                metrics["examples"] = [{"reference": it.example.answer, "generated": t} for it, t in zip(items[:3], texts)]
            if tf["emb_pred"]:
                pred, true = torch.cat(tf["emb_pred"]), torch.cat(tf["emb_true"])
                metrics["embedding_mse"] = float(torch.mean((pred - true) ** 2))
                metrics["embedding_cosine"] = float(torch.nn.functional.cosine_similarity(pred, true).mean())
                if model.image_decoder is not None and len(pred) >= 2:
                    fake = (model.image_decoder(pred.to(device)).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
                    real = torch.cat(tf["real"])
                    size = model.image_size
                    real = torch.nn.functional.interpolate(real.float(), size=(size, size)).round().to(torch.uint8)
                    encode = lambda x: model.encode_images(x.to(device))["pooled"].cpu()  # noqa: E731
                    metrics.update(fid_kid(real, fake, encode))
                else:
                    metrics["FID_note"] = "no image decoder for this backbone: FID/KID not computed"
            results[task] = metrics
    finally:
        if state is not None:
            state.observer = None
        model.train(was_training)
    if frequencies:
        results["activation_frequency"] = frequencies
    return results


def trivial_mask_baselines(dataset: SampleDataset, tasks: list[str], n_samples: int = 32,
                           seed: int = 0) -> dict[str, dict[str, float]]:
    """Masks that need no model: every object's union, and the largest object, for each target.

    Returns per task {"all_objects": metrics, "largest_object": metrics} (paper and LISA conventions).
    """
    out: dict[str, dict[str, float]] = {}
    for task in tasks:
        if not TASKS.get(task).segmentation:
            continue
        items = build_items(dataset, task, n_samples, seed)
        gts, union, largest = [], [], []
        for it in items:
            masks = it.masks.bool().numpy()
            big = masks[int(masks.reshape(len(masks), -1).sum(1).argmax())]
            for obj in it.example.target_objects:
                gts.append(masks[obj])
                union.append(masks.any(0))
                largest.append(big)
        out[task] = {"all_objects": segmentation_metrics(union, gts),
                     "largest_object": segmentation_metrics(largest, gts)}
    return out


def metric_names(task: str, generated: bool = True, meteor: bool = False) -> list[str]:
    """The numeric metrics :func:`evaluate` reports for ``task``: what a suite's objective may name.

    Computed from the metric functions themselves on a trivial input, so the list follows them."""
    spec, canonical = TASKS.get(task), TASKS.canonical(task)
    names = ["n_samples"]
    if spec.segmentation:
        one = [np.ones((2, 2), dtype=bool)]
        seg = list(segmentation_metrics(one, one))
        names += [f"tf_{k}" for k in seg]
        names += [f"gen_{k}" for k in seg] + ["gen_answer_accuracy"] if generated else []
    if canonical == "captioning":
        found = caption_metrics({"a": ["a b"]}, {"a": "a b"}, meteor=False)
        names += [k for k, v in found.items() if isinstance(v, float)] + (["METEOR"] if meteor else [])
    if canonical == "t2i":  # FID/KID only where the backbone has an image decoder
        names += ["embedding_mse", "embedding_cosine", "FID", "KID"]
    return names
