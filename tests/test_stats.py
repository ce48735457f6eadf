"""ntbench.stats against hand-worked numbers and scipy's own tests."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from ntbench.stats import (mean_interval, minimum_detectable_effect, paired_difference, power_table,
                           welch_difference)


def test_mde_matches_the_worked_example():
    # statistics.md: sd(d) 0.010, n 5 -> (2.776 + 0.941) * 0.010 / sqrt(5) = 0.01662
    assert minimum_detectable_effect(0.010, 5) == pytest.approx(3.717 * 0.010 / math.sqrt(5), rel=1e-3)
    rows = power_table(0.010)
    assert [r["seeds"] for r in rows] == [3, 5, 10, 20]
    assert all(a["mde"] > b["mde"] for a, b in zip(rows, rows[1:]))  # more seeds, smaller effects
    assert math.isnan(minimum_detectable_effect(0.01, 1))


def test_mean_interval_by_hand_and_one_seed_has_none():
    iv = mean_interval([1.0, 2.0, 3.0])  # sd 1, t(2, .975) = 4.302653
    assert iv.mean == 2.0 and iv.sd == 1.0 and iv.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    one = mean_interval([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.half_width)


def test_paired_matches_scipy_ttest_rel():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.02, 6)
    b = a - 0.01 + rng.normal(0, 0.003, 6)
    d = paired_difference(dict(enumerate(a)), dict(enumerate(b)))
    ref = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert (d.low, d.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert d.sd_diff < d.sd_a and d.sd_diff < d.sd_b  # pairing removes the shared noise
    assert d.distinguishable and d.bootstrap_low < d.mean < d.bootstrap_high


def test_paired_uses_only_shared_seeds_and_refuses_none():
    d = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {1: 1.5, 2: 3.0, 7: 0.0})
    assert d.n == 2 and d.mean == pytest.approx(0.75)
    assert math.isnan(d.bootstrap_low)  # n < 5: no bootstrap claimed
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_welch_matches_scipy():
    a, b = [0.50, 0.52, 0.49, 0.51], [0.45, 0.40, 0.47, 0.44, 0.43]
    d = welch_difference(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (d.low, d.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert not d.paired and math.isnan(d.mde)
    assert not welch_difference([0.5], [0.4]).distinguishable  # one seed each: no interval, no claim


def _trials(cells: dict[float, list[float]]):
    import pandas as pd

    rows = [{"status": "COMPLETE", "param.adapter_options.beta": beta, "param.train.seed": s, "m": v}
            for beta, vals in cells.items() for s, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_report_judges_the_best_by_the_paired_difference_not_by_overlapping_intervals():
    from ntbench.report import aggregate, differences_vs_best, mark_noise

    # seed effects are large and shared; beta 0.5 is better by 0.010 on every seed
    seed_effect = [0.40, 0.46, 0.52, 0.43, 0.49]
    a = [s + 0.010 + e for s, e in zip(seed_effect, [0.001, -0.001, 0.0005, 0.0, -0.0005])]
    df = _trials({0.4: seed_effect, 0.5: a})
    axes = ["param.adapter_options.beta"]
    agg = aggregate(df, "m", axes)
    lo, hi = agg["mean"] - agg["ci95"], agg["mean"] + agg["ci95"]
    assert hi.iloc[0] > lo.iloc[1]  # the per-cell intervals overlap widely...
    diffs = differences_vs_best(df, "m", axes)
    other = diffs[~diffs.is_best].iloc[0]
    ref = sps.ttest_rel(seed_effect, a).confidence_interval(0.95)
    assert other.paired and (other.low, other.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert other.distinguishable  # ...but the paired difference excludes 0
    marked = mark_noise(agg, True, diffs, axes).set_index(axes[0])["vs_best"]
    assert marked[0.5] == "best" and marked[0.4] == ""


def test_cells_without_shared_seeds_fall_back_to_welch():
    import pandas as pd

    from ntbench.report import differences_vs_best

    df = _trials({0.4: [0.40, 0.41, 0.42], 0.5: [0.45, 0.46, 0.44]})
    df.loc[df["param.adapter_options.beta"] == 0.5, "param.train.seed"] += 10
    diffs = differences_vs_best(df, "m", ["param.adapter_options.beta"])
    other = diffs[~diffs.is_best].iloc[0]
    ref = sps.ttest_ind([0.40, 0.41, 0.42], [0.45, 0.46, 0.44], equal_var=False).confidence_interval(0.95)
    assert not other.paired and (other.low, other.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert isinstance(diffs, pd.DataFrame)


def test_integer_axes_pair_and_a_one_seed_best_gives_no_interval():
    import pandas as pd

    from ntbench.report import aggregate, differences_vs_best, mark_noise

    rows = [{"status": "COMPLETE", "param.adapter_options.dz": dz, "param.train.seed": s, "m": base + s * 0.05}
            for dz, base in ((32, 0.40), (64, 0.42)) for s in range(3)]
    df = pd.DataFrame(rows)
    axes = ["param.adapter_options.dz"]
    diffs = differences_vs_best(df, "m", axes)
    other = diffs[~diffs.is_best].iloc[0]
    assert other["param.adapter_options.dz"] == 32 and other.paired and other.n == 3
    assert other["mean"] == pytest.approx(-0.02) and other.distinguishable  # the same offset on every seed
    # a best cell with one seed: the others get no interval, and the report says so
    one = pd.DataFrame(rows[:3] + [{"status": "COMPLETE", "param.adapter_options.dz": 64, "param.train.seed": 0,
                                    "m": 0.9}])
    marks = mark_noise(aggregate(one, "m", axes), True, differences_vs_best(one, "m", axes), axes)
    assert set(marks.vs_best) == {"best", "(no interval)"}


def test_the_star_goes_to_the_lowest_for_lower_is_better_metrics():
    """FID, parameters, TFLOPs, step time and memory: less is better, whatever the objective says."""
    from ntbench.report import maximizes, suite_table
    from ntbench.suite import Suite

    suite = Suite(name="s", axes={"adapter_options.beta": [0.4, 0.5], "train.seed": [0, 1, 2]},
                  objective="reasoning.tf_paper_oIoU", report={"rows": "adapter_options.beta"})
    assert maximizes(suite, "reasoning.tf_paper_oIoU") and maximizes(suite, "captioning.BLEU-4")
    for metric in ("t2i.FID", "t2i.KID", "trainable_params", "tflops_per_step", "step_time_s", "peak_memory_mb"):
        assert not maximizes(suite, metric), metric
    df = _trials({0.4: [30.0, 31.0, 29.0], 0.5: [20.0, 21.0, 19.0]}).rename(columns={"m": "t2i.FID"})
    agg, _ = suite_table(suite, df, "t2i.FID")
    marks = agg.set_index("param.adapter_options.beta")["vs_best"]
    assert marks[0.5] == "best" and marks[0.4] != "best"


def test_difference_pairs_with_two_shared_seeds_and_falls_back_to_welch():
    from ntbench.stats import difference

    a, b = {0: 0.42, 1: 0.48, 2: 0.51}, {0: 0.40, 1: 0.45, 2: 0.50}
    d = difference(a, b)  # per seed 0.02, 0.03, 0.01: mean 0.02, sd 0.01, t(2, .975) = 4.302653
    assert d.paired and d.half_width == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-6)
    one_shared = difference({0: 0.42, 5: 0.48}, {0: 0.40, 7: 0.45})
    assert not one_shared.paired and one_shared.mean == pytest.approx(0.025)
    assert not difference([0.42, 0.48], [0.40, 0.45]).paired


def test_verdict_reads_the_paper_sign_against_the_interval_of_the_difference():
    from ntbench.stats import Difference, verdict, versus_value

    def diff(mean, half, rank_p=0.03125):  # 6 seeds all on one side: the signed-rank test's p is 2/2^6
        return Difference(True, 6, mean, half, math.nan, math.nan, 0.01, 0.01, 0.01, 0.03, rank_p)

    assert verdict(diff(0.05, 0.02), "higher") == "reproduced"   # [0.03, 0.07]
    assert verdict(diff(-0.05, 0.02), "lower") == "reproduced"
    assert verdict(diff(-0.05, 0.02), "higher") == "opposite"
    assert verdict(diff(0.01, 0.02), "higher") == "not distinguishable at this resolution"  # [-0.01, 0.03]
    assert verdict(diff(0.05, math.nan), "higher") == "not distinguishable at this resolution"  # n = 1
    assert verdict(diff(0.05, 0.02), "same") == "opposite"  # a difference where the paper claims none
    assert verdict(diff(0.01, 0.02), "same") == "not distinguishable at this resolution"  # never "reproduced"
    # the t interval excludes 0 but the rank test does not (5 seeds: p >= 2/2^5), or there is none
    assert verdict(diff(0.05, 0.02, rank_p=0.0625), "higher") == "reproduced (t interval only)"
    assert verdict(diff(-0.05, 0.02, rank_p=0.0625), "higher") == "opposite (t interval only)"
    assert verdict(diff(0.05, 0.02, rank_p=0.0625), "same") == "opposite (t interval only)"
    assert verdict(diff(0.05, 0.02, rank_p=math.nan), "lower") == "opposite (t interval only)"
    assert verdict(diff(0.01, 0.02, rank_p=0.0625), "higher") == "not distinguishable at this resolution"
    # a rank test that agrees only if most seeds lie on the interval's side
    sided = Difference(True, 10, 0.05, 0.02, math.nan, math.nan, 0.01, 0.01, 0.01, 0.03, 0.01, 2, 8)
    assert verdict(sided, "higher") == "reproduced (t interval only)"
    assert verdict(Difference(True, 10, 0.05, 0.02, math.nan, math.nan, 0.01, 0.01, 0.01, 0.03, 0.01, 9, 1),
                   "higher") == "reproduced"
    assert verdict(diff(0.05, 0.02, rank_p=0.05), "higher") == "reproduced (t interval only)"  # p < 0.05 is needed
    # one cell against a value: [0.5, 0.6, 0.7] - 0.4 = 0.2 ± t(2, .975) * 0.1 / sqrt(3)
    d = versus_value({0: 0.5, 1: 0.6, 2: 0.7}, 0.4)
    assert d.mean == pytest.approx(0.2) and d.half_width == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-6)
    assert d.mde == pytest.approx((4.302653 + 1.060660) * 0.1 / 3 ** 0.5, rel=1e-6) and not d.paired


def _exact_signed_rank_p(d):
    """Reference: the two-sided signed-rank p by enumerating all 2^n sign assignments of the ranks of |d|."""
    import itertools

    import numpy as np
    ranks = np.argsort(np.argsort(np.abs(d))) + 1  # no ties in the inputs below
    observed = ranks[np.asarray(d) > 0].sum()
    total = ranks.sum()
    stats = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    extreme = min(observed, total - observed)
    return min(1.0, 2 * sum(w <= extreme for w in stats) / len(stats))


def test_signed_rank_p_matches_an_exact_enumeration_and_its_floor_is_2_over_2_to_the_n():
    import numpy as np

    from ntbench.stats import paired_difference, signed_rank_p, smallest_rank_p

    rng = np.random.default_rng(3)
    for n in (3, 5, 6, 8, 10):
        for _ in range(4):
            d = rng.normal(0.01, 0.02, n)
            assert signed_rank_p(d) == pytest.approx(_exact_signed_rank_p(d), abs=1e-12)
    # the measured ten-seed beta pair of results/micro/resolution.md 0c'': two seeds branch the other way
    branching = [0.018, 0.016, 0.010, 0.014, 0.015, 0.013, -0.023, 0.019, -0.029, 0.022]
    assert signed_rank_p(branching) == pytest.approx(_exact_signed_rank_p(branching))  # 0.43: far from 0.05
    for n in range(1, 9):  # every difference on one side: the smallest p there is
        assert smallest_rank_p(n) == pytest.approx(min(1.0, 2 / 2 ** n))
        if n >= 2:
            assert signed_rank_p([0.01 * (k + 1) for k in range(n)]) == pytest.approx(smallest_rank_p(n))
    assert math.isnan(signed_rank_p([0.02])) and math.isnan(signed_rank_p([0.0, 0.0, 0.01]))  # < 2 non-zero
    # paired differences carry it with their signs: five seeds all positive, p = 2/32
    d = paired_difference({s: 0.5 + 0.01 * s for s in range(5)}, {s: 0.48 for s in range(5)})
    assert d.rank_p == pytest.approx(0.0625) and (d.above, d.below) == (5, 0)


def test_rank_sum_p_matches_an_exact_enumeration_of_group_assignments():
    import itertools

    from ntbench.stats import rank_sum_p, welch_difference

    a, b = [0.51, 0.55, 0.60, 0.49], [0.40, 0.47, 0.52]
    pooled = a + b
    ranks = {v: r + 1 for r, v in enumerate(sorted(pooled))}
    observed = sum(ranks[v] for v in a)
    sums = [sum(ranks[pooled[i]] for i in chosen) for chosen in itertools.combinations(range(7), 4)]
    mean = sum(sums) / len(sums)
    expected = sum(abs(s - mean) >= abs(observed - mean) - 1e-9 for s in sums) / len(sums)
    assert rank_sum_p(a, b) == pytest.approx(expected)
    assert welch_difference(a, b).rank_p == pytest.approx(expected)
    assert math.isnan(rank_sum_p([0.5], b))
