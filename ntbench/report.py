"""Reports from stored results (no training): tables with mean ± 95% CI over seeds, plots, index.

A cell whose 95% confidence interval overlaps the best cell's is marked "≈": with these seeds
it is not distinguishable from the best. Cells with a single seed get no interval and are
marked "(1 seed)".
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ntbench.stats import mean_interval
from ntbench.suite import Suite

SEED = "param.train.seed"


def _ci95(values: pd.Series) -> float:
    return mean_interval(values.dropna().tolist()).half_width  # nan with one seed: no interval claimed


def aggregate(df: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """Mean, std, n and 95% CI half-width of ``metric`` per combination of ``by``."""
    done = df[df.status == "COMPLETE"]
    if not by:
        done = done.assign(_all="all")
        by = ["_all"]
    g = done.groupby(by, dropna=False)[metric]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["ci95"] = g.apply(_ci95).values
    return out


def _cells(done: pd.DataFrame, metric: str, axes: list[str]) -> dict[tuple, dict[int, float] | list[float]]:
    """Per cell (a tuple of axis values, dtypes kept): seed -> value (repeats of a seed averaged), or a
    plain list of values when the trials carry no seed to pair by."""
    out = {}
    for key, g in done.groupby(axes, dropna=False, sort=False):
        g = g[g[metric].notna()]
        key = key if isinstance(key, tuple) else (key,)
        if SEED in g.columns and g[SEED].notna().all():
            out[key] = {int(s): float(v) for s, v in g.groupby(SEED)[metric].mean().items()}
        else:
            out[key] = [float(v) for v in g[metric]]
    return out


def differences_vs_best(df: pd.DataFrame, metric: str, axes: list[str], maximize: bool = True) -> pd.DataFrame:
    """Each cell against the best cell: paired by seed where they share at least two seeds (common
    random numbers), Welch's interval otherwise. One row per cell (the best included, as the reference)."""
    from ntbench.stats import paired_difference, welch_difference

    done = df[df.status == "COMPLETE"]
    if not axes or done.empty:
        return pd.DataFrame()
    cells = _cells(done, metric, axes)
    means = {k: (sum(v.values()) / len(v) if isinstance(v, dict) else sum(v) / len(v)) for k, v in cells.items() if v}
    if not means:
        return pd.DataFrame()
    best_key = (max if maximize else min)(means, key=means.get)
    best = cells[best_key]
    rows = []
    for key, vals in cells.items():
        if not vals:
            continue
        paired = isinstance(vals, dict) and isinstance(best, dict) and len(set(vals) & set(best)) >= 2
        if paired:
            d = paired_difference(vals, best)
        else:
            as_list = lambda c: list(c.values()) if isinstance(c, dict) else c  # noqa: E731
            d = welch_difference(as_list(vals), as_list(best))
        rows.append({**dict(zip(axes, key)), "is_best": key == best_key, **d.as_dict()})
    return pd.DataFrame(rows)


def mark_noise(agg: pd.DataFrame, maximize: bool = True, diffs: pd.DataFrame | None = None,
               axes: list[str] | None = None) -> pd.DataFrame:
    """★ on the best cell; ≈ where the 95% interval of the *difference* to the best includes 0
    (paired by seed when the cells share seeds). Without ``diffs`` (or with one seed) no ≈ is claimed
    on interval grounds: a cell with one seed is marked "(1 seed)"."""
    best = agg.loc[agg["mean"].idxmax() if maximize else agg["mean"].idxmin()]
    verdict = {}
    if diffs is not None and len(diffs) and axes:
        for d in diffs.to_dict("records"):  # records keep each column's dtype (no int -> float upcast)
            verdict[tuple(d[a] for a in axes)] = (bool(d["distinguishable"]), not math.isnan(d["half_width"]))

    def mark(r):
        if r.name == best.name:
            return "best"
        if r["count"] < 2:
            return "(1 seed)"
        dist, has_interval = verdict.get(tuple(r[a] for a in (axes or [])), (False, False))
        if not has_interval:
            return "(no interval)"
        return "" if dist else "≈"
    agg = agg.copy()
    agg["vs_best"] = [mark(r) for r in _records(agg)]
    return agg


def _records(frame: pd.DataFrame):
    """Rows as dict-like records that keep dtypes and carry the index as ``.name``."""
    for name, rec in zip(frame.index, frame.to_dict("records")):
        yield pd.Series(rec, name=name, dtype=object)


def _cell(r) -> str:
    text = f"{r['mean']:.3f}" if math.isnan(r["ci95"]) else f"{r['mean']:.3f} ± {r['ci95']:.3f}"
    marks = {"≈": " ≈", "best": " ★", "(no interval)": " (no interval)", "(1 seed)": " (1 seed)"}
    return text + marks.get(r["vs_best"], "")


# metrics where less is better, whatever the suite's objective direction: distances between image
# distributions and costs (matched on the last dotted part of the name, case-insensitive)
LOWER_IS_BETTER = ("fid", "kid", "params", "flops", "step_time", "memory", "loss", "seconds")


def maximizes(suite: Suite, metric: str) -> bool:
    """Whether a higher ``metric`` is better: the suite's direction for its objective, and for any
    other metric what the metric is (FID, parameters, TFLOPs, time and memory: lower)."""
    if metric == suite.objective:
        return suite.direction == "maximize"
    last = metric.rsplit(".", 1)[-1].lower()
    return not (any(tag in last for tag in LOWER_IS_BETTER) or last.endswith(("_s", "_mb")))


def suite_table(suite: Suite, df: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long aggregate, display table in the paper's layout: rows x cols)."""
    axes = [f"param.{k}" for k in suite.axes if f"param.{k}" != SEED and f"param.{k}" in df.columns]
    maximize = maximizes(suite, metric)
    diffs = differences_vs_best(df, metric, axes, maximize) if axes else None
    agg = mark_noise(aggregate(df, metric, axes), maximize, diffs, axes)
    rows = f"param.{suite.report.rows}" if suite.report.rows else None
    cols = f"param.{suite.report.cols}" if suite.report.cols else None
    agg["text"] = agg.apply(_cell, axis=1)
    if rows in agg.columns and cols in agg.columns:
        table = agg.pivot(index=rows, columns=cols, values="text")
    else:
        table = agg.set_index(axes or ["_all"])[["text"]].rename(columns={"text": metric})
    return agg, table


def _plot(suite: Suite, agg: pd.DataFrame, metric: str, path: Path) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = f"param.{suite.report.rows}" if suite.report.rows else None
    cols = f"param.{suite.report.cols}" if suite.report.cols else None
    kind = suite.report.plot
    if kind == "none":
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if kind == "heatmap" and rows in agg and cols in agg:
        sns.heatmap(agg.pivot(index=rows, columns=cols, values="mean"), annot=True, fmt=".3f", cmap="viridis", ax=ax)
    elif kind == "lines" and cols in agg:
        ax.errorbar  # noqa: B018  (matplotlib draws the CI bars below)
        for key, g in (agg.groupby(rows) if rows in agg else [("all", agg)]):
            g = g.sort_values(cols)
            ax.errorbar(g[cols].astype(str), g["mean"], yerr=np.nan_to_num(g["ci95"]), marker="o", capsize=3, label=str(key))
        ax.set_xlabel(suite.report.cols)
        if rows in agg:
            ax.legend(title=suite.report.rows)
    else:
        x = rows if rows in agg else agg.columns[0]
        sns.barplot(data=agg, x=x, y="mean", ax=ax, color="steelblue")
        ax.errorbar(range(len(agg)), agg["mean"], yerr=np.nan_to_num(agg["ci95"]), fmt="none", ecolor="k", capsize=3)
        ax.tick_params(axis="x", rotation=30)
    ax.set_title(f"{suite.name}: {metric} (mean ± 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


COST_METRICS = ("trainable_params", "tflops_per_step", "step_time_s", "peak_memory_mb")


def delta_plot(suite: Suite, df: pd.DataFrame, metric: str, path: Path) -> tuple[pd.DataFrame, Path] | None:
    """Interference view: each row's change of ``metric`` against the ``report.baseline`` row."""
    rows = f"param.{suite.report.rows}" if suite.report.rows else None
    if not suite.report.baseline or rows not in df.columns:
        return None
    agg = aggregate(df, metric, [rows])
    base = agg[agg[rows].astype(str) == str(suite.report.baseline)]
    if base.empty:
        return None
    b = base.iloc[0]
    agg["delta"] = agg["mean"] - b["mean"]
    # independent seeds: the half-widths of the two intervals add in quadrature
    agg["delta_ci95"] = np.sqrt(np.nan_to_num(agg["ci95"]) ** 2 + np.nan_to_num(b["ci95"]) ** 2)
    agg = agg[agg[rows].astype(str) != str(suite.report.baseline)]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["tab:green" if d >= 0 else "tab:red" for d in agg["delta"]]
    ax.bar(agg[rows].astype(str), agg["delta"], yerr=agg["delta_ci95"], color=colors, capsize=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel(f"Δ {metric} vs {suite.report.baseline}")
    ax.set_title(f"{suite.name}: effect of the additional task (mean ± 95% CI)")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return agg, path


def cost_plot(suite: Suite, df: pd.DataFrame, path: Path) -> Path | None:
    """Adapters view: quality next to trainable parameters, TFLOPs per step, step time, memory."""
    rows = f"param.{suite.report.rows}" if suite.report.rows else None
    panels = [suite.objective] + [m for m in COST_METRICS if m in suite.report.metrics and m in df.columns
                                  and df[m].notna().any()]
    if rows not in df.columns or len(panels) < 2:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6))
    for ax, metric in zip(axes, panels):
        agg = aggregate(df, metric, [rows])
        ax.bar(agg[rows].astype(str), agg["mean"], yerr=np.nan_to_num(agg["ci95"]), capsize=3, color="steelblue")
        ax.set_title(metric, fontsize=9)
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = json.loads(src.read_text())
    # the trial that trained the most tasks shows sharing between tasks best
    trial, freqs = max(sorted(data.items(), key=lambda kv: int(kv[0])), key=lambda kv: len(kv[1]))
    tasks = list(freqs)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 1.6 * len(tasks) + 0.6), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        sns.heatmap(np.array(freqs[task]), ax=ax, vmin=0, vmax=1, cmap="magma", cbar=True)
        ax.set_ylabel(task)
    axes[0, 0].set_title(f"activation frequency per neuron (rows: layers), trial {trial}")
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
    fig.tight_layout()
    ov = folder / "activation_overlap.png"
    fig.savefig(ov, dpi=110)
    plt.close(fig)
    return [maps, ov]


def _paired_section(suite: Suite, df: pd.DataFrame, metric: str, folder: Path, made: dict) -> list[str]:
    """The difference of every cell to the best, with its interval and the smallest detectable effect,
    and a power table from the measured sd of the paired differences."""
    from ntbench.stats import power_table

    axes = [f"param.{k}" for k in suite.axes if f"param.{k}" != SEED and f"param.{k}" in df.columns]
    diffs = differences_vs_best(df, metric, axes, maximizes(suite, metric)) if axes else pd.DataFrame()
    if diffs.empty:
        return []
    safe = metric.replace("/", "_")
    diffs.to_csv(folder / f"diff_vs_best_{safe}.csv", index=False)
    made["tables"].append(folder / f"diff_vs_best_{safe}.csv")
    fmt = lambda v: "-" if pd.isna(v) else f"{v:+.4f}"  # noqa: E731  (signed: a difference)
    plain = lambda v: "-" if pd.isna(v) else f"{v:.4f}"  # noqa: E731  (sds and effect sizes)
    lines = [f"### {metric}: each cell minus the best", "",
             "| " + " | ".join(a.removeprefix("param.") for a in axes) + " | seeds | Δ | 95% CI (t) | bootstrap CI | "
             "sd(Δ) | sd(cell) | sd(best) | MDE | distinguishable |",
             "|" + "---|" * (len(axes) + 9)]
    for _, d in diffs[~diffs.is_best].iterrows():
        ci = "-" if pd.isna(d.half_width) else f"[{d.low:+.4f}, {d.high:+.4f}]"
        boot = "-" if pd.isna(d.bootstrap_low) else f"[{d.bootstrap_low:+.4f}, {d.bootstrap_high:+.4f}]"
        kind = "paired" if d.paired else "Welch"
        lines.append("| " + " | ".join(str(d[a]) for a in axes) + f" | {int(d.n)} ({kind}) | {fmt(d['mean'])} | {ci} | "
                     f"{boot} | {plain(d.sd_diff)} | {plain(d.sd_a)} | {plain(d.sd_b)} | {plain(d.mde)} | "
                     f"{'yes' if d.distinguishable else 'no'} |")
    paired = diffs[diffs.paired & ~diffs.is_best & diffs.sd_diff.notna()]
    if len(paired):
        sd = float(paired.sd_diff.median())
        lines += ["", f"Power (paired, level 0.05, power 0.8) from the median sd(Δ) = {sd:.4f}: the smallest "
                  "difference to the best that this many seeds would detect.", "",
                  "| seeds | MDE |", "|---|---|"] + [f"| {r['seeds']} | {r['mde']:.4f} |" for r in power_table(sd)]
    if len(diffs) > 2:
        lines += ["", f"{len(diffs) - 1} cells are compared with the best: with that many comparisons, some "
                  "intervals exclude 0 by chance (no multiplicity correction applied)."]
    return lines + [""]


def report_suite(folder: Path) -> dict[str, list[Path]]:
    """Tables (CSV + markdown) and plots for one suite folder holding trials.csv."""
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    df = pd.read_csv(folder / "trials.csv")
    made: dict[str, list[Path]] = {"tables": [], "plots": []}
    metrics = [suite.objective] + [m for m in suite.report.metrics if m != suite.objective]
    md = [f"# {suite.name}", "", suite.description, "",
          f"{int((df.status == 'COMPLETE').sum())} complete / {len(df)} trials; seeds: "
          f"{sorted(df[SEED].dropna().astype(int).unique().tolist()) if SEED in df else 'n/a'}. Mean ± 95% t "
          "interval over seeds (none with one seed); ★ best, ≈ not distinguishable from the best: the 95% "
          "interval of the difference to the best, paired by seed, includes 0.", ""]
    for metric in metrics:
        if metric not in df.columns or df[metric].dropna().empty:
            md += [f"_{metric}: no values._", ""]
            continue
        agg, table = suite_table(suite, df, metric)
        safe = metric.replace("/", "_")
        agg.drop(columns=["text"]).to_csv(folder / f"table_{safe}.csv", index=False)
        made["tables"].append(folder / f"table_{safe}.csv")
        md += [f"## {metric}", "", table.to_markdown(), ""]
        md += _paired_section(suite, df, metric, folder, made)
        plot = _plot(suite, agg, metric, folder / f"plot_{safe}.png") if metric == suite.objective else None
        if plot:
            made["plots"].append(plot)
            md += [f"![{metric}]({plot.name})", ""]
    if suite.objective in df.columns and df[suite.objective].notna().any():
        delta = delta_plot(suite, df, suite.objective, folder / "plot_delta.png")
        if delta:
            agg, plot = delta
            agg.to_csv(folder / "table_delta.csv", index=False)
            made["tables"].append(folder / "table_delta.csv")
            made["plots"].append(plot)
            md += [f"## Δ {suite.objective} vs {suite.report.baseline}", "",
                   agg[[c for c in agg.columns if c.startswith("param.") or c in ("delta", "delta_ci95", "count")]]
                   .to_markdown(index=False), "", f"![delta]({plot.name})", ""]
        costs = cost_plot(suite, df, folder / "plot_costs.png")
        if costs:
            made["plots"].append(costs)
            md += [f"![costs]({costs.name})", ""]
    failed = df[df.status == "FAIL"]
    if len(failed):
        md += ["## Failed trials", "", failed[["trial", "fail_reason"]].to_markdown(index=False), ""]
    for p in activation_plots(folder):
        made["plots"].append(p)
        md += [f"![{p.stem}]({p.name})", ""]
    (folder / "report.md").write_text("\n".join(md))
    made["tables"].append(folder / "report.md")
    return made


def write_index(results: Path) -> Path:
    """results/README.md linking every suite report, table and plot."""
    lines = ["# Results", "", "Made by `ntbench report` from the stored results; see each report for the command.", ""]
    bench = results / "bench" / "README.md"
    if bench.is_file():
        lines += ["- [bench/README.md](bench/README.md): step-time and data benchmarks", ""]
    micro = results / "micro"
    if (micro / "summary.md").is_file():
        seeds = "?"
        if (micro / "trials.csv").is_file():  # said from the data, not hard-coded
            seeds = str(pd.read_csv(micro / "trials.csv")["seed"].nunique())
        lines += ["- [micro/summary.md](micro/summary.md): neural vs frozen vs trivial masks on the micro backbone, "
                  f"{seeds} seeds ([trials.csv](micro/trials.csv))"]
    if (micro / "resolution.md").is_file():
        lines += ["- [micro/resolution.md](micro/resolution.md): determinism, paired differences between neighbouring "
                  "cells, the power table, and where a trial's time goes"]
    if (micro / "prepare.md").is_file():
        lines += ["- [micro/prepare.md](micro/prepare.md): micro backbone sizes, parameter counts, pretraining losses"]
    if (micro / "diagnosis" / "diagnosis.md").is_file():
        lines += ["- [micro/diagnosis/diagnosis.md](micro/diagnosis/diagnosis.md): why segmentation on the micro "
                  "backbone stays at the all-objects level (oracle and probe experiments)"]
    if (results / "gpu" / "README.md").is_file():
        lines += ["- [gpu/README.md](gpu/README.md): CUDA checks (bf16, checkpointing, every adapter), GPU step time at 7B shape, "
                  "torch.compile, end-to-end latency and the paper-scale trial"]
    lines.append("")
    for folder in sorted(p.parent for p in results.glob("*/suite.resolved.yaml") if (p.parent / "trials.csv").is_file()):
        lines.append(f"## {folder.name}")
        lines.append("")
        for f in sorted(folder.iterdir()):
            if f.suffix in (".md", ".csv", ".png") and not f.name.endswith(".partial"):
                lines.append(f"- [{f.name}]({folder.name}/{f.name})")
        lines.append("")
    path = results / "README.md"
    path.write_text("\n".join(lines))
    return path
