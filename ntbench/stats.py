"""Statistics for few-seed ablations: one module for report, compare and evidence.

- :func:`mean_interval`: a cell's mean with its t interval (none with one seed);
- :func:`paired_difference`: cells A and B run with the same seeds (common random numbers),
  compared seed by seed: t interval, bootstrap interval (n >= 5), the sd of the per-seed
  difference next to the sds of A and B, and the minimum detectable effect;
- :func:`welch_difference`: cells that share no seeds;
- :func:`difference`: paired where two cells share seeds, Welch otherwise;
- :func:`versus_value`: one cell against a fixed value (one-sample t interval);
- :func:`signed_rank_p` / :func:`rank_sum_p`: the rank tests every difference carries beside its t
  interval (``Difference.rank_p``);
- :func:`verdict`: a paper's claimed sign against the interval of the difference and its rank test;
- :func:`minimum_detectable_effect` and :func:`power_table`: how many seeds a question needs.

Formulas: ``../shared/notes/statistics.md`` (paired t, Welch-Satterthwaite, MDE at level 0.05
and power 0.8). Two overlapping intervals do not mean "no difference": judge a difference by
the interval of the difference.

Why a rank test as well: the t interval assumes the per-seed differences are roughly normal. On the
micro backbone they are not: most seeds of a pair agree within ~0.01 while one or two in ten branch
by 0.02-0.08 (results/micro/resolution.md 0c''). Five seeds that happen to hold no such seed give a
narrow t interval that five more seeds overturned. The signed-rank test needs no distribution; its
smallest two-sided p with n seeds is 2/2^n, so it cannot reach 0.05 below 6 seeds, and a verdict
that asks for both says so instead of resting on the normal model alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95
POWER = 0.80


class _Bounds:
    """low/high of a mean ± half_width (nan when no interval is claimed)."""

    mean: float
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


@dataclass(frozen=True)
class Interval(_Bounds):
    n: int
    mean: float
    sd: float          # nan with one value
    half_width: float  # nan with one value: no interval is claimed


def _t(q: float, dof: float) -> float:
    return float(stats.t.ppf(q, dof))


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean and the two-sided t interval's half-width (nan for n < 2)."""
    x = np.asarray([v for v in values if not _isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan)
    if n < 2:
        return Interval(1, float(x[0]), math.nan, math.nan)
    sd = float(x.std(ddof=1))
    return Interval(n, float(x.mean()), sd, _t(0.5 + level / 2, n - 1) * sd / math.sqrt(n))


def minimum_detectable_effect(sd: float, n: int, level: float = LEVEL, power: float = POWER) -> float:
    """Smallest true paired difference a two-sided test at ``1 - level`` finds with ``power``, given
    the sd of the per-seed difference and n seeds: (t(n-1, 1-α/2) + t(n-1, power))·sd/√n."""
    if n < 2 or _isnan(sd):
        return math.nan
    return (_t(0.5 + level / 2, n - 1) + _t(power, n - 1)) * sd / math.sqrt(n)


def power_table(sd: float, ns: Sequence[int] = (3, 5, 10, 20)) -> list[dict[str, float]]:
    """The MDE for each seed count, given a measured sd of the per-seed difference."""
    return [{"seeds": n, "mde": minimum_detectable_effect(sd, n)} for n in ns]


@dataclass(frozen=True)
class Difference(_Bounds):
    """mean(A - B) with its interval. ``paired``: over shared seeds; else Welch."""

    paired: bool
    n: int
    mean: float
    half_width: float              # t interval (Welch's for unpaired); nan when not estimable
    bootstrap_low: float           # percentile bootstrap over seeds (paired, n >= 5), else nan
    bootstrap_high: float
    sd_diff: float                 # sd of the per-seed difference (paired), nan for Welch
    sd_a: float
    sd_b: float
    mde: float                     # smallest effect detectable with this n (paired), nan for Welch
    # two-sided p of the rank test of the same comparison (signed-rank for paired and one-sample, rank-sum
    # for Welch); nan when it cannot be computed (n < 2, every difference 0)
    rank_p: float = math.nan
    above: float = math.nan        # seeds (paired) or runs (one-sample) with A above B; nan for Welch
    below: float = math.nan

    @property
    def distinguishable(self) -> bool:
        """The interval of the difference excludes 0 (false when there is no interval)."""
        return not _isnan(self.half_width) and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "low": self.low, "high": self.high, "distinguishable": self.distinguishable}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL,
                      n_boot: int = 10_000, boot_seed: int = 0) -> Difference:
    """Per-seed differences A(s) - B(s) over the seeds both cells have.

    Raises:
        ValueError: the cells share no seed (use :func:`welch_difference`).
    """
    seeds = sorted(s for s in set(a) & set(b) if not _isnan(a[s]) and not _isnan(b[s]))
    if not seeds:
        raise ValueError("the two cells share no seed with a value: a paired comparison needs common seeds")
    xa, xb = np.array([a[s] for s in seeds], float), np.array([b[s] for s in seeds], float)
    d = xa - xb
    iv = mean_interval(d, level)
    lo = hi = math.nan
    if len(d) >= 5 and float(d.std()) > 0:  # with fewer seeds the bootstrap is unreliable: t only
        res = stats.bootstrap((d,), np.mean, confidence_level=level, n_resamples=n_boot, method="percentile",
                              random_state=np.random.default_rng(boot_seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    sd = lambda x: float(x.std(ddof=1)) if len(x) > 1 else math.nan  # noqa: E731
    return Difference(True, len(d), iv.mean, iv.half_width, lo, hi, iv.sd, sd(xa), sd(xb),
                      minimum_detectable_effect(iv.sd, len(d)), signed_rank_p(d), int((d > 0).sum()), int((d < 0).sum()))


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Difference:
    """mean(A) - mean(B) ± t(ν)·√(s_A²/n_A + s_B²/n_B), ν by Welch-Satterthwaite."""
    ia, ib = mean_interval(a, level), mean_interval(b, level)
    hw = math.nan
    if ia.n >= 2 and ib.n >= 2:
        va, vb = ia.sd ** 2 / ia.n, ib.sd ** 2 / ib.n
        se = math.sqrt(va + vb)
        if se > 0:
            dof = (va + vb) ** 2 / (va ** 2 / (ia.n - 1) + vb ** 2 / (ib.n - 1))
            hw = _t(0.5 + level / 2, dof) * se
        else:
            hw = 0.0
    return Difference(False, min(ia.n, ib.n), ia.mean - ib.mean, hw, math.nan, math.nan, math.nan, ia.sd, ib.sd,
                      math.nan, rank_sum_p(a, b))


def difference(a: Mapping[int, float] | Sequence[float], b: Mapping[int, float] | Sequence[float],
               level: float = LEVEL) -> Difference:
    """A - B: paired by seed (:func:`paired_difference`) when both are seed -> value mappings sharing at
    least two seeds; Welch's interval (:func:`welch_difference`) otherwise."""
    if isinstance(a, Mapping) and isinstance(b, Mapping) and len(set(a) & set(b)) >= 2:
        return paired_difference(a, b, level)
    as_list = lambda c: list(c.values()) if isinstance(c, Mapping) else list(c)  # noqa: E731
    return welch_difference(as_list(a), as_list(b), level)


def versus_value(a: Mapping[int, float] | Sequence[float], value: float, level: float = LEVEL) -> Difference:
    """mean(A) - value with A's t interval; the MDE is the one-sample one, from A's sd."""
    values = np.asarray([v for v in (a.values() if isinstance(a, Mapping) else a) if not _isnan(v)], float)
    iv = mean_interval(values, level)
    return Difference(False, iv.n, iv.mean - value, iv.half_width, math.nan, math.nan, iv.sd, iv.sd, math.nan,
                      minimum_detectable_effect(iv.sd, iv.n), signed_rank_p(values - value),
                      int((values > value).sum()), int((values < value).sum()))


def signed_rank_p(d: Sequence[float]) -> float:
    """Two-sided p of the Wilcoxon signed-rank test that the differences ``d`` centre on 0 (exact for small
    samples without ties; zeros dropped). nan with fewer than 2 non-zero differences: no test."""
    x = np.asarray([v for v in d if not _isnan(v) and v != 0], dtype=float)
    if len(x) < 2:
        return math.nan
    return float(stats.wilcoxon(x, alternative="two-sided").pvalue)


def rank_sum_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p of the Mann-Whitney rank-sum test of two unpaired samples; nan if either has fewer than 2."""
    xa = [v for v in (a.values() if isinstance(a, Mapping) else a) if not _isnan(v)]
    xb = [v for v in (b.values() if isinstance(b, Mapping) else b) if not _isnan(v)]
    if len(xa) < 2 or len(xb) < 2:
        return math.nan
    return float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)


def smallest_rank_p(n: int) -> float:
    """The smallest two-sided p the signed-rank test can give with n differences: 2 / 2^n (every one on
    one side). Below 6 seeds it exceeds 0.05: no rank-confirmed verdict is possible."""
    return min(1.0, 2.0 / 2 ** n) if n >= 1 else math.nan


REPRODUCED, OPPOSITE, UNRESOLVED = "reproduced", "opposite", "not distinguishable at this resolution"
# the t interval excludes 0 but the rank test does not (p >= RANK_ALPHA, or no test): the direction rests on
# the normal model alone, which branching seeds break (module docstring)
REPRODUCED_T_ONLY, OPPOSITE_T_ONLY = "reproduced (t interval only)", "opposite (t interval only)"
NOT_RUN = "not run"  # a cell of the claim has no rows yet
RANK_ALPHA = 0.05  # written out: 1 - LEVEL is 0.050000000000000044, which would let p = 0.05 through


def verdict(d: Difference, expect: str) -> str:
    """The paper claims A is ``higher``, ``lower`` or the ``same`` as B; ``d`` is ours, A - B.

    The interval excludes 0 on the paper's side: reproduced; on the other side: opposite; each with
    "(t interval only)" when the rank test does not agree (p >= 0.05, or no test; below 6 seeds it
    cannot). The interval contains 0 (or there is none, n = 1): not distinguishable at this resolution.
    A claim of no difference is contradicted ("opposite") by an interval that excludes 0, and never
    "reproduced" by one that contains it: showing equality needs an equivalence margin, not a wide
    interval.
    """
    if expect not in ("higher", "lower", "same"):
        raise ValueError(f"expect: {expect!r}: one of higher, lower, same")
    if not d.distinguishable:
        return UNRESOLVED
    agrees = expect != "same" and (d.low > 0) == (expect == "higher")
    # the rank test confirms the interval's side only if most seeds lie on it (nan compares false: no test, no signs)
    same_side = _isnan(d.above) or (d.above > d.below) == (d.low > 0)
    if d.rank_p < RANK_ALPHA and same_side:
        return REPRODUCED if agrees else OPPOSITE
    return REPRODUCED_T_ONLY if agrees else OPPOSITE_T_ONLY


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True
