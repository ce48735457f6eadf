"""Take-off statistics: when does segmentation leave the trivial-mask level, seed by seed?

A trial "takes off" at the first evaluation where its teacher-forced reasoning oIoU exceeds the
all-objects mask (scored on the same targets) by ``margin`` (issue 13: 0.10). Each seed trains the
given configuration, with its full learning-rate schedule, and is scored on the evaluation split
every ``every`` steps; a seed stops ``extra_evals`` evaluations after it took off, or at
``max_steps``. Evaluating does not change training (the evaluation draws from its own generators),
so a seed's curve up to its stop is the curve of the full trial.

Seeds run in worker processes of one thread each: that thread count is part of every number here
(another count splits the reductions differently) and is recorded with them.
"""
from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

METRIC = "reasoning"  # the task whose take-off is timed; referring is recorded beside it


def _curve(cfg_data: dict[str, Any], every: int, max_steps: int, margin: float, extra_evals: int) -> list[dict]:
    """One seed's curve (runs in a worker process)."""
    import torch

    from ntbench.data.cache import resolve_data
    from ntbench.data.io import SampleDataset
    from ntbench.eval.evaluate import evaluate, trivial_mask_baselines
    from ntbench.train.trainer import deterministic_kernels, resolve_device, train
    from ntbench.train.trial import TrialConfig, build_model

    torch.set_num_threads(1)
    cfg = TrialConfig(**cfg_data)
    data = resolve_data(cfg.data)
    train_ds, eval_ds = SampleDataset(data, "train"), SampleDataset(data, cfg.eval_split)
    tasks = ["reasoning", "referring"]
    trivial = trivial_mask_baselines(eval_ds, tasks, cfg.eval_samples, cfg.eval_seed)
    rows: list[dict] = []
    state = {"took_off": None}
    start = time.perf_counter()

    with deterministic_kernels(cfg.train.deterministic, resolve_device(cfg.train.device)):
        model = build_model(cfg)

        def on_event(event: str, record: dict) -> str | None:
            if event != "step" or record["step"] % every:
                return None
            metrics = evaluate(model, eval_ds, tasks, n_samples=cfg.eval_samples, seed=cfg.eval_seed,
                               generated=False)
            model.train()
            row = {"seed": cfg.train.seed, "step": record["step"], "seconds": time.perf_counter() - start,
                   "loss_seg": record.get("loss_seg")}
            for task in tasks:
                row[f"{task}_oIoU"] = metrics[task]["tf_paper_oIoU"]
                row[f"{task}_all_objects"] = trivial[task]["all_objects"]["paper_oIoU"]
            rows.append(row)
            if state["took_off"] is None and row[f"{METRIC}_oIoU"] > row[f"{METRIC}_all_objects"] + margin:
                state["took_off"] = record["step"]
            if state["took_off"] is not None and record["step"] >= state["took_off"] + extra_evals * every:
                return "stop"
            return "stop" if record["step"] >= max_steps else None

        train(model, train_ds, cfg.train, callbacks=[on_event])
    return rows


def takeoff_step(rows: list[dict], margin: float) -> int | None:
    """The first evaluated step where reasoning oIoU exceeds the all-objects mask by ``margin`` (None: never)."""
    for row in sorted(rows, key=lambda r: r["step"]):
        if row[f"{METRIC}_oIoU"] > row[f"{METRIC}_all_objects"] + margin:
            return int(row["step"])
    return None


def takeoff_statistics(base: dict[str, Any], seeds: list[int], every: int = 50, max_steps: int = 1000,
                       margin: float = 0.10, extra_evals: int = 1, workers: int = 2,
                       progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], dict[str, Any]]:
    """Curves of ``seeds`` (each ``base`` with ``train.seed`` set) and their summary.

    Returns:
        (rows: one per seed and evaluated step, summary: per-seed take-off step, how many took off,
        the median take-off step, and the settings).
    """
    if every < 1 or max_steps < every:
        raise ValueError(f"every must be >= 1 and max_steps >= every (got every={every}, max_steps={max_steps})")
    configs = []
    for seed in seeds:
        cfg = {**base, "train": {**base.get("train", {}), "seed": seed}, "eval_generated": False}
        configs.append(cfg)
    rows: list[dict] = []
    if workers <= 1:  # in this process, at one thread too (restored after): the same numbers as a worker's
        import torch

        threads = torch.get_num_threads()
        try:
            for done, cfg in enumerate(configs, 1):
                rows += _curve(cfg, every, max_steps, margin, extra_evals)
                if progress:
                    progress(done, len(configs))
        finally:
            torch.set_num_threads(threads)
    else:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited thread pools or RNG state
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_curve, cfg, every, max_steps, margin, extra_evals) for cfg in configs]
            for done, future in enumerate(futures, 1):
                rows += future.result()
                if progress:
                    progress(done, len(futures))
    per_seed = {seed: takeoff_step([r for r in rows if r["seed"] == seed], margin) for seed in seeds}
    # a seed that never took off counts as later than any step (censored): the median exists while
    # more than half took off
    censored = sorted(s if s is not None else float("inf") for s in per_seed.values())
    median = statistics.median(censored) if censored else None
    summary = {"seeds": list(seeds), "takeoff_step": per_seed, "n_seeds": len(seeds),
               "took_off": sum(s is not None for s in per_seed.values()),
               "median_takeoff_step": median if median is not None and median != float("inf") else None,
               "every": every, "max_steps": max_steps, "margin": margin, "threads_per_worker": 1}
    return rows, summary


def write_takeoff(out, rows: list[dict], summary: dict[str, Any], command: str, provenance: dict) -> None:
    """``takeoff.csv`` (the curves), ``takeoff.json`` (summary + provenance), ``takeoff.md`` and ``takeoff.png``."""
    from pathlib import Path

    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntbench.atomic import write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows).sort_values(["seed", "step"])
    df.to_csv(out / "takeoff.csv", index=False)
    write_json(out / "takeoff.json", {**summary, "command": command, "provenance": provenance})
    median = summary["median_takeoff_step"]
    lines = [f"# Take-off over {summary['n_seeds']} seeds", "", f"Made by: `{command}`", "",
             f"Take-off: the first evaluation (every {summary['every']} steps) where teacher-forced reasoning oIoU "
             f"exceeds the all-objects mask by {summary['margin']}; each seed stops one evaluation after it, or at "
             f"step {summary['max_steps']}. One thread per worker.", "",
             f"**{summary['took_off']} of {summary['n_seeds']} seeds took off; median take-off step: "
             f"{median if median is not None else 'none (fewer than half took off)'}.**", "",
             "| seed | take-off step | reasoning oIoU there | referring oIoU there |", "|---|---|---|---|"]
    for seed, step in summary["takeoff_step"].items():
        if step is None:
            lines.append(f"| {seed} | never (by {summary['max_steps']}) | | |")
            continue
        row = df[(df.seed == seed) & (df.step == step)].iloc[0]
        lines.append(f"| {seed} | {step} | {row.reasoning_oIoU:.3f} | {row.referring_oIoU:.3f} |")
    write_text(out / "takeoff.md", "\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, task in zip(axes, ("reasoning", "referring")):
        for seed, part in df.groupby("seed"):
            ax.plot(part.step, part[f"{task}_oIoU"], color="tab:blue", alpha=0.5, lw=1)
        base = float(df[f"{task}_all_objects"].iloc[0])
        ax.axhline(base, color="grey", ls="--", label="all-objects mask")
        if task == METRIC:
            ax.axhline(base + summary["margin"], color="tab:red", ls=":", label="take-off line")
        ax.set_title(f"{task} segmentation, one line per seed")
        ax.set_xlabel("training step")
        ax.legend(loc="lower right")
    axes[0].set_ylabel("teacher-forced oIoU (all val targets)")
    fig.tight_layout()
    fig.savefig(out / "takeoff.png", dpi=120)
    plt.close(fig)
