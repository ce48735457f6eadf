"""The evidence checks: margin of means against 3x the larger seed-to-seed std, worked by hand."""
import json

import numpy as np
import pandas as pd
import pytest

from ntbench.evidence import METRICS, summarize, write_summary


def _frame(neural, frozen, n=500):
    rows = []
    for method, values in (("neural", neural), ("frozen", frozen)):
        for seed, v in enumerate(values):
            row = {"method": method, "seed": seed, **{m: v for m in METRICS}, "reasoning_n": n, "referring_n": n}
            rows.append(row)
    for seed in range(len(neural)):
        rows.append({"method": "all_objects", "seed": seed, **{m: 0.3 for m in METRICS}})
        rows.append({"method": "largest_object", "seed": seed, **{m: 0.35 for m in METRICS}})
    return pd.DataFrame(rows)


def test_margin_is_compared_with_three_times_the_larger_std():
    # neural 0.50/0.55/0.60: mean 0.55, sample std 0.05; frozen 0.30/0.40/0.20: mean 0.30, std 0.10
    _, checks = summarize(_frame([0.50, 0.55, 0.60], [0.30, 0.40, 0.20]))
    vs_frozen = next(c for c in checks if c["baseline"] == "frozen" and c["metric"] == "reasoning_oIoU")
    assert vs_frozen["margin"] == pytest.approx(0.25)
    assert vs_frozen["sigma"] == pytest.approx(0.10)  # the larger of the two stds
    assert not vs_frozen["passes"]  # 0.25 < 3 * 0.10
    vs_all = next(c for c in checks if c["baseline"] == "all_objects" and c["metric"] == "reasoning_oIoU")
    assert vs_all["margin"] == pytest.approx(0.25) and vs_all["sigma"] == pytest.approx(0.05)
    assert vs_all["passes"]  # 0.25 > 3 * 0.05 (a trivial mask has no spread)


def test_summary_names_the_eval_set_size_and_writes_checks(tmp_path):
    df = _frame([0.50, 0.55, 0.60], [0.30, 0.31, 0.29], n=437)
    text = write_summary(df, tmp_path, "ntbench evidence --seeds 0,1,2")
    assert "reasoning 437; referring 437" in text
    checks = json.loads((tmp_path / "checks.json").read_text())
    assert len(checks) == 13 and all(isinstance(c["passes"], bool) for c in checks)
    # without generated answers, their six checks are left out rather than failed
    _, teacher_forced = summarize(df.assign(reasoning_gen_oIoU=np.nan, referring_gen_oIoU=np.nan))
    assert len(teacher_forced) == 7 and not any("gen" in c["metric"] for c in teacher_forced)
    sd = np.std([0.50, 0.55, 0.60], ddof=1)
    assert f"**{sd:.4f}**" in text


def test_checks_carry_the_paired_interval_worked_by_hand():
    t975_2 = 4.302653  # t(2, 0.975)
    _, checks = summarize(_frame([0.50, 0.55, 0.60], [0.30, 0.40, 0.20]))
    # vs frozen, per seed: 0.20, 0.15, 0.40 -> mean 0.25, sd sqrt(0.0175)
    c = next(c for c in checks if c["baseline"] == "frozen" and c["metric"] == "reasoning_oIoU")
    half = t975_2 * np.sqrt(0.0175) / np.sqrt(3)
    assert c["paired"] and c["n"] == 3
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(0.25 - half), pytest.approx(0.25 + half))
    assert not c["distinguishable"]  # the interval [-0.079, 0.579] includes 0
    # vs the all-objects mask (0.3 on every seed): 0.20, 0.25, 0.30 -> sd 0.05
    c = next(c for c in checks if c["baseline"] == "all_objects" and c["metric"] == "reasoning_oIoU")
    half = t975_2 * 0.05 / np.sqrt(3)
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(0.25 - half), pytest.approx(0.25 + half))
    assert c["distinguishable"]
