"""Which questions a trained model gets right: a saved trial's segmentation and answers by question template.

Why: a suite row gives one oIoU per task, and two cells that differ by 0.03 may differ everywhere or on one
kind of question. On the micro backbone the per-template view found what no aggregate shows: reasoning
answers that name the wrong object (results/micro/resolution.md 5a), and counting answers whose tags
point at objects in an order the image does not show, where every model is at chance
(results/micro/diagnosis/branching_seed8). Each template's oIoU is the task's own metric
(:func:`ntbench.eval.metrics.segmentation_metrics`) over that template's masks, so all templates together give
the trial's teacher-forced oIoU, which the result states next to the trial's number as a check.

A diagnostic of finished trials: no trial imports it (``ntbench.freshness.REPORT_ONLY``).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ntbench.data.io import SampleDataset
from ntbench.eval.evaluate import _generated, _teacher_forced, answer_words, build_items
from ntbench.eval.metrics import segmentation_metrics
from ntbench.saved_trial import load_saved_model, saved_trial

NO_TEMPLATE = "(no template)"  # data not made by the micro-world generator


def _oiou(preds: list[np.ndarray], gts: list[np.ndarray]) -> float:
    return float(segmentation_metrics(preds, gts)["paper_oIoU"]) if preds else float("nan")


def _own_target_best(preds: list[np.ndarray], gts: list[np.ndarray]) -> int:
    """How many of one answer's masks overlap their own target more than any other target of the answer."""
    hits = 0
    for j, p in enumerate(preds):
        ious = [np.logical_and(p, g).sum() / max(1, np.logical_or(p, g).sum()) for g in gts]
        hits += int(np.argmax(ious) == j)
    return hits


def breakdown(model, dataset: SampleDataset, task: str = "reasoning", n_samples: int = 500, seed: int = 0,
              generated: bool = False, device: str | torch.device = "cpu", max_new_tokens: int = 32) -> dict[str, Any]:
    """Teacher-forced oIoU of ``task`` by question template and by the number of objects an answer tags.

    Returns:
        ``templates``: one row per template (``template``, ``samples``, ``masks``, ``tf_oIoU`` and, with
        ``generated``, ``answer_accuracy``: the generated answers whose words equal the reference's, tags aside);
        ``by_objects``: one row per template and count of tagged objects (``template``, ``objects``, ``masks``,
        ``tf_oIoU``, ``own_target_best``: masks that overlap their own target more than another target of the
        same answer, and ``chance``: what picking a target at random would give); ``tf_oIoU``: all masks together.
    """
    items = build_items(dataset, task, n_samples, seed)
    template = {s.id: s.template or NO_TEMPLATE for s in dataset.samples}
    by_template: dict[str, dict[str, list]] = defaultdict(lambda: {"preds": [], "gts": [], "items": []})
    by_objects: dict[tuple[str, int], dict[str, Any]] = defaultdict(lambda: {"preds": [], "gts": [], "own": 0})
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for it in items:  # one at a time: each answer's masks stay together, in tag order
                out = _teacher_forced(model, [it], 1, device)
                row = by_template[template[it.sample_id]]
                row["preds"] += out["preds"]
                row["gts"] += out["gts"]
                row["items"].append(it)
                group = by_objects[template[it.sample_id], len(out["gts"])]
                group["preds"] += out["preds"]
                group["gts"] += out["gts"]
                group["own"] += _own_target_best(out["preds"], out["gts"])
            texts = _generated(model, items, 16, device, max_new_tokens)[0] if generated else []
    finally:
        model.train(was_training)
    correct = defaultdict(int)
    for it, text in zip(items, texts):
        correct[template[it.sample_id]] += answer_words(it.example.answer) == answer_words(text)
    rows = [{"template": name, "samples": len(r["items"]), "masks": len(r["gts"]), "tf_oIoU": _oiou(r["preds"], r["gts"]),
             **({"answer_accuracy": correct[name] / len(r["items"])} if generated else {})}
            for name, r in sorted(by_template.items())]
    groups = [{"template": name, "objects": k, "masks": len(g["gts"]), "tf_oIoU": _oiou(g["preds"], g["gts"]),
               "own_target_best": g["own"] if k > 1 else None, "chance": len(g["gts"]) / k if k > 1 else None}
              for (name, k), g in sorted(by_objects.items()) if k > 0]
    every = [(p, g) for r in by_template.values() for p, g in zip(r["preds"], r["gts"])]
    return {"task": task, "samples": len(items), "templates": rows, "by_objects": groups,
            "tf_oIoU": _oiou([p for p, _ in every], [g for _, g in every])}


def breakdown_run(run_dir: str | Path, task: str = "reasoning", generated: bool = False,
                  device: str | None = None) -> dict[str, Any]:
    """:func:`breakdown` of a trial's output folder (``ntbench train --out``) on the trial's own evaluation
    samples (split, count, seed), with its deterministic-kernel setting; ``trial_tf_oIoU`` is the trial's number.

    Raises:
        RunFolderError: ``run_dir`` is not a finished trial with a saved model.
        ValueError: the trial did not evaluate ``task``.
    """
    from ntbench.train.trainer import deterministic_kernels
    from ntbench.train.trainer import resolve_device

    run_dir = Path(run_dir)
    summary = saved_trial(run_dir)
    config = summary["config"]
    trial = summary["metrics"].get(task)
    if not isinstance(trial, dict) or "tf_paper_oIoU" not in trial:
        done = sorted(k for k, v in summary["metrics"].items() if isinstance(v, dict) and "tf_paper_oIoU" in v)
        raise ValueError(f"{run_dir}: the trial scored no segmentation for task {task!r}; it has: "
                         f"{', '.join(done) or 'none'}")
    target = resolve_device(device or config.get("train", {}).get("device", "auto"))
    with deterministic_kernels(config.get("train", {}).get("deterministic", True), target):
        model = load_saved_model(run_dir, target)
        result = breakdown(model, SampleDataset(Path(summary["data"]), config.get("eval_split", "val")), task,
                           int(config.get("eval_samples", 500)), int(config.get("eval_seed", 0)), generated, target)
    return {"run": str(run_dir), **result, "trial_tf_oIoU": trial["tf_paper_oIoU"]}
