"""Reports from stored results (no training): tables, differences to the best, plots, index.

Every interval comes from :mod:`ntbench.stats`. A cell shows its mean ± the 95% t interval over
seeds; with one seed it shows ``n = 1`` and no interval. "≈ the best" is judged from the 95%
interval of the *difference* to the best cell, paired by seed (Welch's interval when the two
cells share no seeds), never from two overlapping intervals. A banner at the top says when the
rows were made by other code than HEAD or by another micro backbone version. The report ends
with the paper's claims that the suite declares (``paper:``), each judged from the interval of
the difference and its rank test: reproduced, opposite, t interval only, not distinguishable, or not run
(:mod:`ntbench.paper_table`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

# the paper-vs-ntbench section lives in ntbench.paper_table; its names stay importable from here
from ntbench.paper_table import SUITES_DIR, judge_claim, paper_claims, paper_section, scoreboard  # noqa: F401
from ntbench.plots import axis_label, value_label
from ntbench.stats import difference, mean_interval, minimum_detectable_effect, power_table, smallest_rank_p
from ntbench.suite import Suite, lower_is_better
from ntbench.suite_models import adapter_recipes_in_effect

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
    """Each cell against the best cell (:func:`ntbench.stats.difference`: paired by seed, else Welch).
    One row per cell (the best included, as the reference)."""
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
        d = difference(vals, best)
        rows.append({**dict(zip(axes, key)), "is_best": key == best_key, **d.as_dict()})
    return pd.DataFrame(rows)


def mark_noise(agg: pd.DataFrame, maximize: bool = True, diffs: pd.DataFrame | None = None,
               axes: list[str] | None = None) -> pd.DataFrame:
    """★ on the best cell; ≈ where the 95% interval of the *difference* to the best includes 0
    (paired by seed when the cells share seeds). Without ``diffs`` (or with one seed) no ≈ is claimed
    on interval grounds: a cell with one seed is marked "n = 1"."""
    best = agg.loc[agg["mean"].idxmax() if maximize else agg["mean"].idxmin()]
    verdict = {}
    if diffs is not None and len(diffs) and axes:
        for d in diffs.to_dict("records"):  # records keep each column's dtype (no int -> float upcast)
            verdict[tuple(d[a] for a in axes)] = (bool(d["distinguishable"]), not math.isnan(d["half_width"]))

    def mark(r):
        if r.name == best.name:
            return "best"
        if r["count"] < 2:
            return "n = 1"
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
    # one seed: the mean and n = 1, never an interval the data cannot give
    no_interval = math.isnan(r["ci95"])
    text = f"{r['mean']:.3f} (n = {int(r['count'])})" if no_interval else f"{r['mean']:.3f} ± {r['ci95']:.3f}"
    marks = {"≈": " ≈", "best": " ★", "(no interval)": " (no interval)"}
    return text + marks.get(r["vs_best"], "")


def readable_table(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`suite_table` display table as a reader reads it, flat: axes named in words (not
    ``param.train.tasks``), a JSON axis value as its leaves (``strategy=distribution m=0``), and a pivot's
    corner naming both axes. The CSVs keep the raw keys and values for programs."""
    names = [n for n in table.index.names if n]
    flat = table.copy()
    if flat.columns.name:  # a pivot: the columns are the values of the cols axis
        flat.columns = [value_label(c) for c in flat.columns]
    flat = flat.reset_index()
    heads = {n: axis_label(n) if n != "_all" else "all trials" for n in names}
    if table.columns.name and len(names) == 1:
        heads[names[0]] = f"{axis_label(names[0])} ↓ · {axis_label(table.columns.name)} →"
    for n in names:
        flat[n] = flat[n].map(value_label)
    return flat.rename(columns=heads)


def readable_markdown(table: pd.DataFrame) -> str:
    """:func:`readable_table` as markdown (the report's tables)."""
    return readable_table(table).to_markdown(index=False)


def maximizes(suite: Suite, metric: str) -> bool:
    """Whether a higher ``metric`` is better: the suite's direction for its objective, and for any
    other metric what the metric is (FID, parameters, TFLOPs, time and memory: lower)."""
    if metric == suite.objective:
        return suite.direction == "maximize"
    return not lower_is_better(metric)


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


COST_METRICS = ("trainable_params", "tflops_per_step", "step_time_s", "peak_memory_mb")


def _axes(suite: Suite, df: pd.DataFrame) -> list[str]:
    return [f"param.{k}" for k in suite.axes if f"param.{k}" != SEED and f"param.{k}" in df.columns]


def method_lines(suite: Suite, df: pd.DataFrame) -> list[str]:
    """What every report states: the seeds, the interval kind, and the minimum detectable effect
    (MDE) of the objective at the seed count the cells have."""
    done = df[(df.status == "COMPLETE") & df[suite.objective].notna()] if suite.objective in df else df.iloc[:0]
    axes = _axes(suite, df)
    counts = (done.groupby(axes, dropna=False).size() if axes else pd.Series([len(done)])).tolist() or [0]
    seeds = sorted(done[SEED].dropna().astype(int).unique().tolist()) if SEED in done else []
    lo, hi = min(counts), max(counts)
    lines = [f"{int((df.status == 'COMPLETE').sum())} complete / {len(df)} trials. Seeds: {seeds or 'not recorded'}; "
             f"per cell n = {lo}" + (f" to {hi}" if hi != lo else "") + "."]
    if hi < 2:
        lines.append("Intervals: none. Every cell has n = 1, so no interval is shown and no difference is "
                     "claimed: one seed says nothing about seed-to-seed noise.")
    else:
        lines.append("Intervals: each cell is mean ± the 95% t interval over its seeds (n = 1: no interval). "
                     "★ best; ≈ not distinguishable from the best: the 95% interval of the *difference* to the "
                     "best, paired by seed (t interval; also a percentile bootstrap where n ≥ 5; Welch's "
                     "interval where the cells share no seeds), includes 0.")
    diffs = differences_vs_best(df, suite.objective, axes, maximizes(suite, suite.objective)) \
        if axes and len(done) else pd.DataFrame()
    paired = diffs[diffs.paired & ~diffs.is_best & diffs.sd_diff.notna()] if len(diffs) else diffs
    if len(paired):
        sd, n = float(paired.sd_diff.median()), int(paired.n.min())
        lines.append(f"Minimum detectable effect at n = {n} seeds (paired, level 0.05, power 0.8; median "
                     f"sd(Δ) = {sd:.4f}): **{minimum_detectable_effect(sd, n):.4f}** on {suite.objective}. "
                     "A smaller difference reads as not distinguishable at this resolution, not as no effect.")
    else:
        lines.append(f"Minimum detectable effect: not estimable; it needs cells paired with the best by at "
                     f"least 2 shared seeds (here n = {hi}).")
    if "train.tasks" in suite.axes:  # the task-count confound, stated
        lines.append("Budget: fixed total steps (`budget: total_steps`), so a cell that trains more tasks makes "
                     "fewer updates of each; a difference between task mixes is interference and update count "
                     "together." if suite.budget == "total_steps" else
                     "Budget: fixed main-task updates (`budget: main_task_updates`): every cell trains its main "
                     "task as often as the one-task cell, so a cell with more tasks runs more steps.")
    if suite.linked:  # settings a cell takes with its axis value: a reader must know they differ too
        linked = "; ".join(f"{key} = {value}: " + ", ".join(f"{k} = {v}" for k, v in settings.items())
                           for key, by_value in suite.linked.items() for value, settings in by_value.items())
        lines.append(f"Linked settings (a cell takes them with its axis value): {linked}.")
    own_text = "; ".join(f"{adapter} on {b}: " + ", ".join(f"{k} = {v}" for k, v in settings.items())
                         for b, by_adapter in adapter_recipes_in_effect(suite).items()
                         for adapter, settings in by_adapter.items())
    if own_text:  # an adapter's own rate from the backbone's recipe: its cells differ in that too
        lines.append(f"Adapter settings from the backbone's recipe (`ntbench/train/recipes.py`, tuned per adapter; "
                     f"a cell that sets them itself keeps its own): {own_text}.")
    return lines



def _paired_section(suite: Suite, df: pd.DataFrame, metric: str, folder: Path, made: dict) -> list[str]:
    """The difference of every cell to the best, with its interval and the smallest detectable effect,
    and a power table from the measured sd of the paired differences."""
    axes = _axes(suite, df)
    diffs = differences_vs_best(df, metric, axes, maximizes(suite, metric)) if axes else pd.DataFrame()
    if diffs.empty or diffs.is_best.all():  # one cell: nothing to compare it with
        return []
    safe = metric.replace("/", "_")
    diffs.to_csv(folder / f"diff_vs_best_{safe}.csv", index=False)
    made["tables"].append(folder / f"diff_vs_best_{safe}.csv")
    fmt = lambda v: "-" if pd.isna(v) else f"{v:+.4f}"  # noqa: E731  (signed: a difference)
    plain = lambda v: "-" if pd.isna(v) else f"{v:.4f}"  # noqa: E731  (sds and effect sizes)
    lines = [f"### {metric}: each cell minus the best", "",
             "| " + " | ".join(axis_label(a) for a in axes) + " | seeds | Δ | 95% CI (t) | bootstrap CI | "
             "rank test p | seeds below / above the best | sd(Δ) | sd(cell) | sd(best) | MDE | distinguishable |",
             "|" + "---|" * (len(axes) + 11)]
    for _, d in diffs[~diffs.is_best].iterrows():
        ci = "-" if pd.isna(d.half_width) else f"[{d.low:+.4f}, {d.high:+.4f}]"
        boot = "-" if pd.isna(d.bootstrap_low) else f"[{d.bootstrap_low:+.4f}, {d.bootstrap_high:+.4f}]"
        kind = "paired" if d.paired else "Welch"
        signs = f"{int(d.below)} / {int(d.above)}" if d.paired else "-"
        lines.append("| " + " | ".join(value_label(d[a]) for a in axes) + f" | {int(d.n)} ({kind}) | {fmt(d['mean'])} | {ci} | "
                     f"{boot} | {plain(d.rank_p)} | {signs} | {plain(d.sd_diff)} | {plain(d.sd_a)} | {plain(d.sd_b)} | "
                     f"{plain(d.mde)} | {'yes' if d.distinguishable else 'no'} |")
    paired = diffs[diffs.paired & ~diffs.is_best & diffs.sd_diff.notna()]
    if len(paired):
        sd = float(paired.sd_diff.median())
        lines += ["", f"Power (paired, level 0.05, power 0.8) from the median sd(Δ) = {sd:.4f}: the smallest "
                  "difference to the best that this many seeds would detect.", "",
                  "| seeds | MDE |", "|---|---|"] + [f"| {r['seeds']} | {r['mde']:.4f} |" for r in power_table(sd)]
        lines += ["", "The MDE assumes normal per-seed differences. The rank test (Wilcoxon signed-rank) assumes "
                  f"nothing, but its smallest p with n seeds is 2/2^n ({smallest_rank_p(5):.4f} at 5 seeds, "
                  f"{smallest_rank_p(6):.4f} at 6): a difference it confirms needs at least 6 seeds, and more "
                  "when a seed branches the other way."]
    if len(diffs) > 2:
        lines += ["", f"{len(diffs) - 1} cells are compared with the best: with that many comparisons, some "
                  "intervals exclude 0 by chance (no multiplicity correction applied)."]
    return lines + [""]


def delta_table(suite: Suite, df: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Interference view: each row's difference to the ``report.baseline`` row (:func:`ntbench.stats.difference`:
    paired by seed, Welch's interval without shared seeds)."""
    rows = f"param.{suite.report.rows}" if suite.report.rows else None
    if not suite.report.baseline or rows not in df.columns:
        return None
    done = df[(df.status == "COMPLETE") & df[metric].notna()]
    cells = {k[0]: v for k, v in _cells(done, metric, [rows]).items() if v}
    base = next((v for k, v in cells.items() if str(k) == str(suite.report.baseline)), None)
    if base is None:
        return None
    out = [{rows: k, **difference(v, base).as_dict()} for k, v in cells.items() if str(k) != str(suite.report.baseline)]
    return pd.DataFrame(out) if out else None


def trivial_baselines(suite: Suite, folder: Path, metric: str) -> dict[str, float]:
    """The all-objects and largest-object masks' score on ``metric`` (a segmentation metric), on the
    samples the suite's trials were evaluated on; cached in ``trivial_baselines.json``. Empty for
    other metrics or when the dataset cannot be read."""
    from ntbench.model.tasks import TASKS

    task, _, name = metric.partition(".")
    key = name.removeprefix("tf_").removeprefix("gen_")
    try:
        if key == name or not TASKS.get(task).segmentation:
            return {}
        from ntbench.suite import trial_config
        cfg = trial_config(suite, {})
    except Exception:  # noqa: BLE001  (an unknown task or an unresolved paper suite: no baseline, no failure)
        return {}
    ident = f"{cfg.data}|{cfg.eval_split}|{cfg.eval_samples}|{cfg.eval_seed}"
    cache = folder / "trivial_baselines.json"
    stored = json.loads(cache.read_text()) if cache.is_file() else {}
    if task not in stored.get(ident, {}):
        from ntbench.data.cache import resolve_data
        from ntbench.data.io import SampleDataset
        from ntbench.eval.evaluate import trivial_mask_baselines
        try:
            data = SampleDataset(resolve_data(cfg.data), cfg.eval_split)
        except (OSError, ValueError):
            return {}
        stored.setdefault(ident, {}).update(trivial_mask_baselines(data, [task], cfg.eval_samples, cfg.eval_seed))
        cache.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    return {m: float(v[key]) for m, v in stored[ident][task].items() if key in v}


def report_suite(folder: Path) -> dict[str, list[Path]]:
    """Tables (CSV + markdown) and plots for one suite folder holding trials.csv."""
    from ntbench.freshness import banner, configs_head_reproduces, setup_banner
    from ntbench.plots import activation_plots, cost_plot, delta_plot, grid_plot
    from ntbench.wall_time import storage_lines

    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    df = pd.read_csv(folder / "trials.csv")
    made: dict[str, list[Path]] = {"tables": [], "plots": []}
    metrics = [suite.objective] + [m for m in suite.report.metrics if m != suite.objective]
    in_progress, run_time, configs = storage_lines(folder)  # the journal is read once for all three
    md = [f"# {suite.name}", "", *in_progress,
          *banner(df, suite.defaults.get("backbone", "tiny-random"), folder=folder,
                  config_reproduced=configs_head_reproduces(suite, df, configs)),
          *setup_banner(df), suite.description, "",
          *method_lines(suite, df), "", *run_time]
    for metric in metrics:
        if metric not in df.columns or df[metric].dropna().empty:
            md += [f"_{metric}: no values._", ""]
            continue
        agg, table = suite_table(suite, df, metric)
        safe = metric.replace("/", "_")
        agg.drop(columns=["text"]).to_csv(folder / f"table_{safe}.csv", index=False)
        made["tables"].append(folder / f"table_{safe}.csv")
        md += [f"## {metric}", "", readable_markdown(table), ""]
        base = trivial_baselines(suite, folder, metric)
        if base:
            md += ["Trivial masks on the same samples: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(base.items()))
                   + ".", ""]
        md += _paired_section(suite, df, metric, folder, made)
        plot = grid_plot(suite, agg, metric, folder / f"plot_{safe}.png", base) if metric == suite.objective else None
        if plot:
            made["plots"].append(plot)
            md += [f"![{metric}]({plot.name})", ""]
    if suite.objective in df.columns and df[suite.objective].notna().any():
        delta = delta_table(suite, df, suite.objective)
        if delta is not None:
            delta.to_csv(folder / "table_delta.csv", index=False)
            plot = delta_plot(suite, delta, suite.objective, folder / "plot_delta.png")
            made["tables"].append(folder / "table_delta.csv")
            made["plots"].append(plot)
            axis_cols = [c for c in delta.columns if c.startswith("param.")]
            shown = delta[axis_cols + ["n", "paired", "mean", "low", "high", "distinguishable"]].copy()
            shown[axis_cols] = shown[axis_cols].map(value_label)  # the axes in words, a JSON mapping by its leaves
            shown = shown.rename(columns={"mean": "Δ", **{c: axis_label(c) for c in axis_cols}})
            md += [f"## Δ {suite.objective} vs {suite.report.baseline} (95% interval of the difference)", "",
                   shown.to_markdown(index=False, floatfmt="+.4f"), "",
                   f"![delta]({plot.name})", ""]
        rows = f"param.{suite.report.rows}" if suite.report.rows else None
        panels = [(m, aggregate(df, m, [rows])) for m in [suite.objective, *COST_METRICS]
                  if rows in df.columns and m in df.columns and df[m].notna().any()
                  and (m == suite.objective or m in suite.report.metrics)]
        if len(panels) >= 2:
            made["plots"].append(cost_plot(suite, panels, folder / "plot_costs.png",
                                           trivial_baselines(suite, folder, suite.objective)))
            md += ["![costs](plot_costs.png)", ""]
    failed = df[df.status == "FAIL"]
    if len(failed):
        md += ["## Failed trials", "", failed[["trial", "fail_reason"]].to_markdown(index=False), ""]
    for p in activation_plots(folder):
        made["plots"].append(p)
        md += [f"![{p.stem}]({p.name})", ""]
    md += paper_section(suite, df, folder, made)  # last: every report ends with paper vs ntbench
    (folder / "report.md").write_text("\n".join(md))
    made["tables"].append(folder / "report.md")
    return made


def _title(path: Path) -> str:
    """A markdown file's first heading: what the file says it is (no prose written here)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def write_index(results: Path) -> Path:
    """results/README.md from what is on disk: every markdown document with its own first heading, the
    paper-vs-ntbench verdicts of every suite (:func:`ntbench.paper_table.scoreboard`), and for every suite
    folder its report's seed line and banner, and its files."""
    lines = ["# Results", "", "Generated by `ntbench report` from the files below; each document names the "
             "command that made it.", ""]
    suites = sorted(p.parent for p in results.glob("*/suite.resolved.yaml") if (p.parent / "trials.csv").is_file())
    docs = sorted(p for p in results.rglob("*.md") if p.name != "README.md" or p.parent != results)
    docs = [p for p in docs if p.parent not in suites]
    if docs:
        lines += ["## Documents", ""] + [f"- [{p.relative_to(results)}]({p.relative_to(results)}): {_title(p)}"
                                         for p in docs] + [""]
    lines += scoreboard(suites)
    for folder in suites:
        lines += [f"## {folder.name}", ""]
        report = folder / "report.md"
        if report.is_file():
            text = report.read_text()
            # each line its own paragraph: a line right after a "> " banner would join the quote
            for ln in text.splitlines():
                if ln.startswith(("> **In progress", "> **Stale", "> **Rechecked", "> **Mixed", "Minimum detectable")) \
                        or " complete / " in ln:
                    lines += [ln, ""]
        for f in sorted(folder.iterdir()):
            # the storage and the rerun record too: a reader resumes or checks the suite from them
            if f.suffix in (".md", ".csv", ".png", ".json", ".journal", ".yaml") and not f.name.endswith(".partial"):
                lines.append(f"- [{f.name}]({folder.name}/{f.name})")
        lines.append("")
    path = results / "README.md"
    path.write_text("\n".join(lines))
    return path
