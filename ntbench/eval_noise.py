"""How much of a paired difference between two saved trials the evaluation set alone could make.

Why: a suite's seeds share one evaluation set, but two models get different samples right, so a finite set
adds its own noise to every per-seed difference, and pairing by seed does not remove it. On the micro
backbone (v5, on an AVX-512/AMX CPU whose weights differ from the committed reference) it was measured as
sd 0.011-0.012 of the β 0.4 − 0.5 difference at 500 samples (0.0034-0.0037 at 5000),
independent from seed to seed: a third to a half of the per-seed variance among seeds that do not branch
(results/micro/resolution.md 0e). Whether a larger evaluation set or more seeds buys more
resolution depends on that share, and this module measures it for any two saved trials: both models score the
same samples (teacher-forced), each sample's intersections and unions are kept, and the samples are resampled
with replacement, the same draw for both models, so the spread of the resampled difference is what another
evaluation set of that size would have moved it by.

A diagnostic of finished trials: no trial imports it (``ntbench.freshness.REPORT_ONLY``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ntbench.data.io import SampleDataset
from ntbench.eval.evaluate import _batches, build_items
from ntbench.model.batching import collate, to_device
from ntbench.saved_trial import load_saved_model, saved_trial

SEGMENTATION = ("reasoning", "referring")
BLOCK_VALUES = 2_000_000  # resampled indices held at once (16 MB)


def sample_overlaps(model, dataset: SampleDataset, task: str, n_samples: int, seed: int = 0,
                    device: str | torch.device = "cpu", batch_size: int = 16) -> dict[str, list]:
    """Teacher-forced intersection and union (pixels, summed over a sample's target masks) for each of the first
    ``n_samples`` samples that serve ``task``: the sums over all samples give the task's oIoU exactly as
    :func:`ntbench.eval.evaluate.evaluate` computes it."""
    items = build_items(dataset, task, n_samples, seed)
    inter, union = np.zeros(len(items)), np.zeros(len(items))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start, chunk in zip(range(0, len(items), batch_size), _batches(items, batch_size)):
                batch = to_device(collate(chunk, model.tokenizer), device)
                if not len(batch["seg_b"]):
                    continue
                vision = model.encode_images(batch["images"])
                _, hidden, off = model.run_llm(batch, vision)
                masks = model.predict_masks(hidden, vision, batch["seg_b"], off + batch["seg_t"],
                                            tuple(batch["seg_masks"].shape[-2:])).cpu().numpy().astype(bool)
                truth = batch["seg_masks"].bool().cpu().numpy()
                for mask, gt, owner in zip(masks, truth, batch["seg_b"].cpu().numpy()):
                    inter[start + owner] += np.logical_and(mask, gt).sum()
                    union[start + owner] += np.logical_or(mask, gt).sum()
    finally:
        model.train(was_training)
    return {"ids": [it.sample_id for it in items], "inter": inter.tolist(), "union": union.tolist()}


def paired_bootstrap(inter_a, union_a, inter_b, union_b, resamples: int = 4000, seed: int = 0) -> dict[str, float]:
    """oIoU of A and B on the same samples, their difference, and its spread over resamples of the samples (the
    same resample for both): ``sd`` (of A − B), ``low``/``high`` (its 2.5 and 97.5 percentiles), ``sd_a``, ``sd_b``."""
    ia, ua, ib, ub = (np.asarray(x, dtype=float) for x in (inter_a, union_a, inter_b, union_b))
    if not len(ia) == len(ua) == len(ib) == len(ub):
        raise ValueError(f"both models need the same samples (got {len(ia)}, {len(ua)}, {len(ib)}, {len(ub)} values)")
    if len(ia) < 2:
        raise ValueError(f"a bootstrap needs at least two samples, got {len(ia)}")
    # resamples drawn in blocks of rows: the same indices as one (resamples x samples) draw, without holding it
    # (and four gathered copies) in memory at once on a large evaluation set
    rng, a, b = np.random.default_rng(seed), [], []
    block = max(1, BLOCK_VALUES // len(ia))
    for start in range(0, resamples, block):
        draw = rng.integers(0, len(ia), size=(min(block, resamples - start), len(ia)))
        a.append(ia[draw].sum(1) / np.maximum(ua[draw].sum(1), 1.0))
        b.append(ib[draw].sum(1) / np.maximum(ub[draw].sum(1), 1.0))
    a, b = np.concatenate(a), np.concatenate(b)
    oiou_a, oiou_b = ia.sum() / max(ua.sum(), 1.0), ib.sum() / max(ub.sum(), 1.0)
    low, high = np.percentile(a - b, [2.5, 97.5])
    return {"samples": len(ia), "oIoU_a": float(oiou_a), "oIoU_b": float(oiou_b), "delta": float(oiou_a - oiou_b),
            "sd": float(np.std(a - b, ddof=1)), "low": float(low), "high": float(high),
            "sd_a": float(np.std(a, ddof=1)), "sd_b": float(np.std(b, ddof=1))}


def eval_noise_runs(run_a: str | Path, run_b: str | Path, tasks: tuple[str, ...] = SEGMENTATION,
                    data: str | Path | None = None, split: str | None = None, samples: int | None = None,
                    resamples: int = 4000, device: str | None = None, explicit: bool = False) -> dict[str, Any]:
    """:func:`paired_bootstrap` of two saved trials (``ntbench train --out``) per segmentation task both scored.

    By default both score their own evaluation samples (run A's data folder, split and count, which B must
    share), and each task's result then carries the trials' own numbers (``trial_a``, ``trial_b``) as a check;
    ``data``, ``split`` and ``samples`` score another set (a larger split of the micro world, say), with run A's
    ``eval_seed``; a trial's own number is attached only where it scored exactly that set. ``explicit``: the tasks
    were named by the user, so one that a trial did not score is an error rather than left out.

    Returns:
        ``tasks``: per task, :func:`paired_bootstrap`'s numbers; ``per_sample``: per task, the sample ids and each
        model's intersections and unions (what :func:`write_per_sample` writes).

    Raises:
        RunFolderError: a folder is not a finished trial with a saved model.
        ValueError: the trials evaluated other samples and none were given, or a task not both scored.
    """
    from ntbench.train.trainer import deterministic_kernels, resolve_device

    runs = (run_a, run_b)
    summaries = [saved_trial(r) for r in runs]
    configs = [s["config"] for s in summaries]
    own = [(str(Path(s["data"])), c.get("eval_split", "val"), int(c.get("eval_samples", 500)), int(c.get("eval_seed", 0)))
           for s, c in zip(summaries, configs)]
    if own[0] != own[1] and (data is None or split is None or samples is None):
        words = [f"{r}: data {o[0]}, split {o[1]}, {o[2]} samples, eval_seed {o[3]}" for r, o in zip(runs, own)]
        raise ValueError(f"the trials scored other samples ({'; '.join(words)}): give --data, --split and --samples "
                         f"to score both on the same set (with {run_a}'s eval_seed)")
    folder, split_, count, eval_seed = str(Path(data or own[0][0])), split or own[0][1], samples or own[0][2], own[0][3]
    has = {t: [r for r, s in zip(runs, summaries) if "tf_paper_oIoU" in (s["metrics"].get(t) or {})] for t in tasks}
    scored = [t for t in tasks if len(has[t]) == 2]
    lacking = [f"{t} (scored by {', '.join(map(str, has[t])) or 'neither'})" for t in tasks if t not in scored]
    if not scored or (explicit and lacking):
        raise ValueError(f"both trials must have scored segmentation for each task; not both did for: {'; '.join(lacking)}")
    dataset = SampleDataset(Path(folder), split_)
    overlaps = []
    for run, config in zip(runs, configs):
        target = resolve_device(device or config.get("train", {}).get("device", "auto"))
        with deterministic_kernels(config.get("train", {}).get("deterministic", True), target):
            model = load_saved_model(run, target)
            overlaps.append({t: sample_overlaps(model, dataset, t, count, eval_seed, target) for t in scored})
    # a trial's own number is a check only where it scored exactly these samples
    mine = [(folder, split_, count, eval_seed) == o for o in own]
    result: dict[str, Any] = {"runs": [str(r) for r in runs], "data": folder, "split": split_, "samples": count,
                              "own_samples": all(mine), "tasks": {}}
    for t in scored:
        a, b = overlaps[0][t], overlaps[1][t]
        row = paired_bootstrap(a["inter"], a["union"], b["inter"], b["union"], resamples)
        for side, summary, same in zip("ab", summaries, mine):
            if same:
                row[f"trial_{side}"] = summary["metrics"][t]["tf_paper_oIoU"]
        result["tasks"][t] = row
    result["per_sample"] = {t: {"ids": overlaps[0][t]["ids"], "inter_a": overlaps[0][t]["inter"],
                                "union_a": overlaps[0][t]["union"], "inter_b": overlaps[1][t]["inter"],
                                "union_b": overlaps[1][t]["union"]} for t in scored}
    return result


def write_per_sample(result: dict[str, Any], path: str | Path) -> Path:
    """The per-sample intersections and unions behind :func:`eval_noise_runs` as CSV (one row per task and sample:
    ``task, sample_id, inter_a, union_a, inter_b, union_b``; gzip-compressed when ``path`` ends in .gz), so that
    other statistics (disjoint chunks, other resamplings) can be computed without the models."""
    import pandas as pd

    frames = [pd.DataFrame({"task": t, "sample_id": v["ids"], "inter_a": v["inter_a"], "union_a": v["union_a"],
                            "inter_b": v["inter_b"], "union_b": v["union_b"]}) for t, v in result["per_sample"].items()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).astype({c: "int64" for c in ("inter_a", "union_a", "inter_b", "union_b")}).to_csv(path, index=False)
    return path
