"""`ntbench compare A B ...`: one generated suite with the adapter and the seed as its axes.

Every adapter runs the same seeds, so adapter B is compared with the reference adapter A seed by
seed (common random numbers): the table gives mean(B - A) with its 95% paired t interval
(:mod:`ntbench.stats`; Welch's interval if the rows share fewer than two seeds).
"""
from __future__ import annotations

import math

import pandas as pd

from ntbench.stats import difference, mean_interval
from ntbench.suite import Suite, _check_values, SuiteError

SEED = "param.train.seed"  # the trial rows' seed column (as in ntbench.report; compare sits beside it)
METRICS = ["reasoning.tf_paper_oIoU", "referring.tf_paper_oIoU", "reasoning.gen_paper_oIoU",
           "captioning.BLEU-4", "captioning.CIDEr", "t2i.FID", "trainable_params", "step_time_s",
           "peak_memory_mb", "tflops_per_step"]


def compare_suite(adapters: list[str], backbone: str, steps: int | None, seeds: list[int], tasks: list[str] | None,
                  data: str | None = None, eval_samples: int | None = None) -> Suite:
    """What is not given (steps, tasks, eval samples) comes from the backbone's recipe, whole."""
    train = {k: v for k, v in {"steps": steps, "tasks": {t: 1.0 for t in tasks} if tasks else None}.items()
             if v is not None}
    defaults = {"backbone": backbone, **({"eval_samples": eval_samples} if eval_samples else {}),
                **({"train": train} if train else {})}
    if data:
        defaults["data"] = data
    suite = Suite(name="compare-" + "-".join(adapters), description=f"compare {', '.join(adapters)}",
                  defaults=defaults,
                  axes={"adapter": list(adapters), "train.seed": list(seeds)},
                  report={"rows": "adapter", "metrics": METRICS[1:6], "plot": "bars"})
    errors = _check_values(suite)
    if errors:
        raise SuiteError("compare", errors)
    return suite


def _cell(values: pd.Series) -> str:
    iv = mean_interval(values.dropna().tolist())
    # one seed: the value and n = 1, no interval
    return f"{iv.mean:.4g} (n = 1)" if math.isnan(iv.half_width) else f"{iv.mean:.4g} ± {iv.half_width:.2g}"


def side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """metric x adapter table of 'mean ± 95% t interval' over seeds (completed trials)."""
    done = df[df.status == "COMPLETE"]
    cols = {}
    for adapter, g in done.groupby("param.adapter", sort=False):
        cols[adapter] = {m: _cell(g[m]) for m in METRICS if m in g.columns and g[m].count()}
    return pd.DataFrame(cols)


def _by_seed(g: pd.DataFrame, metric: str) -> dict[int, float] | list[float]:
    g = g[g[metric].notna()]
    if SEED in g.columns and g[SEED].notna().all():
        return {int(s): float(v) for s, v in g.groupby(SEED)[metric].mean().items()}
    return [float(v) for v in g[metric]]


def paired_differences(df: pd.DataFrame, reference: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """Each other adapter minus ``reference``, per metric, paired by seed.

    Returns:
        One row per (adapter, metric): ``adapter``, ``metric``, ``n``, ``paired``, ``mean`` (the mean
        per-seed difference), ``low``/``high`` (95% t interval; nan without one), ``sd_diff``,
        ``mde``, ``distinguishable``.

    Raises:
        ValueError: ``reference`` has no completed trial.
    """
    done = df[df.status == "COMPLETE"]
    groups = dict(tuple(done.groupby("param.adapter", sort=False)))
    if reference not in groups:
        raise ValueError(f"no completed trial of the reference adapter {reference!r}")
    rows = []
    for adapter, g in groups.items():
        if adapter == reference:
            continue
        for m in metrics or METRICS:
            if m not in g.columns or not g[m].count() or not groups[reference][m].count():
                continue
            d = difference(_by_seed(g, m), _by_seed(groups[reference], m)).as_dict()
            rows.append({"adapter": adapter, "reference": reference, "metric": m,
                         **{k: d[k] for k in ("n", "paired", "mean", "low", "high", "sd_diff", "mde",
                                              "distinguishable")}})
    return pd.DataFrame(rows)
