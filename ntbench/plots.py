"""Plots of suite reports: every number drawn with its interval, axes named in words.

The tables and intervals come from :mod:`ntbench.report` (which uses :mod:`ntbench.stats`);
this module only draws them. Segmentation plots draw the trivial-mask baselines (the union of
all objects, the largest object) as lines: a cell below them has learned nothing a mask
without a model does not give.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from ntbench.suite import Suite
from ntbench.suite_models import leaf_paths

# suite keys as a reader says them (the param. prefix is dropped before lookup)
AXIS_LABELS = {
    "adapter": "adapter",
    "adapter_options": "adapter options",
    "adapter_options.alpha": "EMA weight α (previous layer's share)",
    "adapter_options.beta": "neuron activation rate β",
    "adapter_options.strategy": "activation strategy",
    "adapter_options.targets": "projections that receive W_b's output",
    "adapter_options.dz": "sparse vector size D_z",
    "train.tasks": "tasks trained together",
    "train.seed": "seed",
    "train.lr": "learning rate",
    "train.steps": "training steps",
}
TASK_LABELS = {"reasoning": "reasoning segmentation", "referring": "referring segmentation",
               "captioning": "image captioning", "t2i": "text-to-image generation"}
METRIC_LABELS = {"trainable_params": "trainable parameters", "tflops_per_step": "TFLOPs per training step",
                 "step_time_s": "step time (s)", "peak_memory_mb": "peak memory (MB)"}
BASELINE_LABELS = {"all_objects": "all-objects mask", "largest_object": "largest-object mask"}


def axis_label(key: str | None) -> str:
    """Words for a suite key such as ``param.train.tasks``; unknown keys lose dots and underscores."""
    if not key:
        return ""
    key = key.removeprefix("param.")
    return AXIS_LABELS.get(key, key.replace(".", " ").replace("_", " "))


def value_label(value) -> str:
    """An axis value as a reader says it: a JSON mapping (Optuna keeps only primitives, so a mapping axis
    value is stored as its JSON label) shows its leaves, ``strategy=distribution m=0``; anything else as is."""
    mapping = _json_mapping(value)
    if mapping is None:
        return str(value)
    return " ".join(f"{leaf}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for leaf, v in _leaves(mapping))


def cell_text(params: dict) -> str:
    """A trial's cell in one short line: ``{'adapter_options': '{"strategy": "level"}', 'adapter_options.beta':
    0.3, 'train.seed': 2}`` -> ``strategy=level beta=0.3 seed=2``. A key shows its last dotted part unless two
    keys share it; an axis value stored as a JSON mapping (Optuna keeps only primitives) shows its leaves."""
    last = {key: key.rsplit(".", 1)[-1] for key in params}
    shared = Counter(last.values())
    return " ".join(value_label(value) if _json_mapping(value) is not None else
                    f"{last[key] if shared[last[key]] == 1 else key}={value}" for key, value in params.items())


def _json_mapping(value) -> dict | None:
    if not (isinstance(value, str) and value.startswith("{")):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _leaves(mapping: dict) -> Iterator[tuple[str, object]]:
    """A nested mapping's leaves by their own key (``strategy``, not ``adapter_options.strategy``)."""
    for path, value in leaf_paths(mapping):
        yield path[-1], value


def metric_label(metric: str) -> str:
    """``reasoning.tf_paper_oIoU`` -> ``reasoning segmentation oIoU (teacher-forced, paper convention)``."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    task, _, name = metric.partition(".")
    if not name:
        return metric.replace("_", " ")
    mode = {"tf_": "teacher-forced", "gen_": "generated answers"}
    how = next((v for k, v in mode.items() if name.startswith(k)), "")
    name = name.removeprefix("tf_").removeprefix("gen_")
    convention, _, core = name.partition("_") if name.startswith(("paper_", "lisa_")) else ("", "", name)
    notes = ", ".join(x for x in (how, f"{convention} convention" if convention else "") if x)
    return f"{TASK_LABELS.get(task, task)} {core}" + (f" ({notes})" if notes else "")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _yerr(agg: pd.DataFrame) -> np.ndarray:
    # no interval (one seed) draws no bar rather than a zero-width one that reads as certainty
    return np.nan_to_num(agg["ci95"].to_numpy(dtype=float), nan=0.0)


def _baselines(ax, baselines: dict[str, float] | None) -> None:
    for (name, value), style in zip(sorted((baselines or {}).items()), ("--", ":")):
        ax.axhline(value, color="black", ls=style, lw=1.2, zorder=3,  # over the bars, not hidden behind them
                   label=f"{BASELINE_LABELS.get(name, name)} ({value:.3f})")


def grid_plot(suite: Suite, agg: pd.DataFrame, metric: str, path: Path,
              baselines: dict[str, float] | None = None) -> Path | None:
    """The suite's table as lines, bars or a heatmap; means with their 95% t intervals (none for n = 1)."""
    kind = suite.report.plot
    if kind == "none":
        return None
    plt = _pyplot()
    rows = f"param.{suite.report.rows}" if suite.report.rows else None
    cols = f"param.{suite.report.cols}" if suite.report.cols else None
    if kind == "heatmap" and rows in agg and cols in agg:
        import seaborn as sns
        means = agg.pivot(index=rows, columns=cols, values="mean")
        fig, ax = plt.subplots(figsize=(max(8.0, 4 + 0.9 * means.shape[1]), max(4.5, 1 + 0.8 * means.shape[0])))
        # no room for error bars: each cell says its interval (or n = 1) under the mean
        agg = agg.assign(_note=[f"{m:.3f}\n" + (f"n={int(n)}" if pd.isna(c) else f"±{c:.3f}")
                                for m, c, n in zip(agg["mean"], agg["ci95"], agg["count"])])
        notes = agg.pivot(index=rows, columns=cols, values="_note").loc[means.index, means.columns]
        for frame in (means, notes):  # tick labels in words: a JSON axis value shows its leaves
            frame.index, frame.columns = frame.index.map(value_label), frame.columns.map(value_label)
        # centred on the all-objects mask: red cells score below a mask that needs no model
        center = (baselines or {}).get("all_objects")
        sns.heatmap(means, annot=notes, fmt="", cmap="RdBu" if center is not None else "viridis", center=center,
                    ax=ax, annot_kws={"fontsize": 7}, cbar_kws={"label": metric_label(metric).replace(" (", "\n(")})
        ax.set_xlabel(axis_label(cols))
        ax.set_ylabel(axis_label(rows))
        title = f"{suite.name}: mean and 95% t interval over seeds"
        if baselines:
            title += "\ntrivial masks: " + ", ".join(f"{BASELINE_LABELS.get(k, k)} {v:.3f}"
                                                   for k, v in sorted(baselines.items()))
            title += " (colour centred on the all-objects mask)" if center is not None else ""
        ax.set_title(title, fontsize=9)
    else:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        if kind == "lines" and cols in agg:
            for key, g in (agg.groupby(rows, sort=False) if rows in agg else [("all", agg)]):
                g = g.sort_values(cols)
                ax.errorbar(g[cols].map(value_label), g["mean"], yerr=_yerr(g), marker="o", capsize=3,
                            label=value_label(key))
            ax.set_xlabel(axis_label(cols))
        else:
            x = rows if rows in agg else (cols if cols in agg else agg.columns[0])
            labels = [value_label(v) if cols not in agg or x == cols else f"{value_label(v)} / {value_label(c)}" for v, c in
                      zip(agg[x], agg[cols] if cols in agg else agg[x])]
            ax.bar(range(len(agg)), agg["mean"], yerr=_yerr(agg), capsize=3, color="steelblue")
            ax.set_xticks(range(len(agg)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_xlabel(axis_label(x) + (f" / {axis_label(cols)}" if cols in agg and x != cols else ""))
        _baselines(ax, baselines)
        ax.set_ylabel(metric_label(metric).replace(" (", "\n("), fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title=axis_label(rows) if rows in agg and kind == "lines" else None, fontsize=7)
        ax.set_title(f"{suite.name}: mean ± 95% t interval over seeds (no bar: one seed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a long subtitle or colour-bar label is not cut off
    plt.close(fig)
    return path


def delta_plot(suite: Suite, delta: pd.DataFrame, metric: str, path: Path) -> Path:
    """Each row's difference to the ``report.baseline`` row with the interval of the difference."""
    plt = _pyplot()
    rows = f"param.{suite.report.rows}"
    fig, ax = plt.subplots(figsize=(7, 4))
    err = np.vstack([(delta["mean"] - delta["low"]).to_numpy(float), (delta["high"] - delta["mean"]).to_numpy(float)])
    up = suite.direction == "maximize" if metric == suite.objective else True
    colors = ["tab:green" if (d >= 0) == up else "tab:red" for d in delta["mean"]]  # green: better (FID: lower)
    ax.bar(delta[rows].map(value_label), delta["mean"], yerr=np.nan_to_num(err), color=colors, capsize=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel(axis_label(rows))
    ax.set_ylabel(f"Δ {metric_label(metric)}\nvs {suite.report.baseline}", fontsize=8)
    ax.set_title(f"{suite.name}: effect of the additional task (95% interval of the difference)", fontsize=9)
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_plot(suite: Suite, panels: list[tuple[str, pd.DataFrame]], path: Path,
              baselines: dict[str, float] | None = None) -> Path:
    """Adapters view: quality next to parameters, TFLOPs, step time, memory (one panel each); the
    trivial-mask ``baselines`` are drawn on the objective's panel."""
    plt = _pyplot()
    rows = f"param.{suite.report.rows}"
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.8), squeeze=False)
    for ax, (metric, agg) in zip(axes[0], panels):
        ax.bar(agg[rows].map(value_label), agg["mean"], yerr=_yerr(agg), capsize=3, color="steelblue")
        ax.set_title(metric_label(metric), fontsize=8)
        ax.set_xlabel(axis_label(rows), fontsize=8)
        if metric == suite.objective and baselines:
            _baselines(ax, baselines)
            ax.legend(fontsize=6)
        if metric == "trainable_params":
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def activation_plots(folder: Path) -> list[Path]:
    """Figure 2b: per-task neuron activation frequency (layer x neuron) and task overlap."""
    src = folder / "activation_frequency.json"
    if not src.is_file():
        return []
    plt = _pyplot()
    import seaborn as sns

    data = json.loads(src.read_text())
    # the trial that trained the most tasks shows sharing between tasks best
    trial, freqs = max(sorted(data.items(), key=lambda kv: int(kv[0])), key=lambda kv: len(kv[1]))
    tasks = list(freqs)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 1.6 * len(tasks) + 0.6), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        sns.heatmap(np.array(freqs[task]), ax=ax, vmin=0, vmax=1, cmap="magma", cbar=True)
        ax.set_ylabel(f"{task}\nlayer", fontsize=8)
    axes[-1, 0].set_xlabel("neuron of the sparse vector Z")
    axes[0, 0].set_title(f"how often each neuron is active, per task (trial {trial})")
    fig.tight_layout()
    maps = folder / "activation_maps.png"
    fig.savefig(maps, dpi=110)
    plt.close(fig)
    # overlap: Jaccard of each task's most active neurons (top half by frequency), averaged over layers
    overlap = np.zeros((len(tasks), len(tasks)))
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            vals = []
            for fa, fb in zip(freqs[a], freqs[b]):
                fa, fb = np.array(fa), np.array(fb)
                k = max(1, len(fa) // 2)
                sa, sb = set(np.argsort(-fa)[:k]), set(np.argsort(-fb)[:k])
                vals.append(len(sa & sb) / len(sa | sb))
            overlap[i, j] = np.mean(vals)
    fig, ax = plt.subplots(figsize=(5, 4))
    sns.heatmap(pd.DataFrame(overlap, index=tasks, columns=tasks), annot=True, fmt=".2f", vmin=0, vmax=1, ax=ax)
    ax.set_title("overlap of most-activated neurons (Jaccard)")
    ax.set_xlabel("task")
    ax.set_ylabel("task")
    fig.tight_layout()
    ov = folder / "activation_overlap.png"
    fig.savefig(ov, dpi=110)
    plt.close(fig)
    return [maps, ov]
