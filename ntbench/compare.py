"""`ntbench compare A B ...`: one generated suite with the adapter and the seed as its axes."""
from __future__ import annotations

import pandas as pd

from ntbench.suite import Suite, _check_values, SuiteError

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


def side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """metric x adapter table of 'mean ± std' over seeds (completed trials)."""
    done = df[df.status == "COMPLETE"]
    cols = {}
    for adapter, g in done.groupby("param.adapter", sort=False):
        cols[adapter] = {m: (f"{g[m].mean():.4g} ± {g[m].std(ddof=1):.2g}" if g[m].count() > 1 else f"{g[m].mean():.4g}")
                         for m in METRICS if m in g.columns and g[m].count()}
    return pd.DataFrame(cols)
