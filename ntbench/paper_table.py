"""The report's last section, paper vs ntbench: the claims of the paper's table that a suite declares
(``paper:``), each judged from the 95% interval of the difference of its two sides and its rank test:
reproduced, opposite, t interval only (not confirmed by the rank test), not distinguishable at this
resolution, or not run. Also ``paper_vs_ntbench.csv``.

Used by :func:`ntbench.report.report_suite` (which re-exports these names); every interval comes from
:mod:`ntbench.stats`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ntbench.stats import (NOT_RUN, OPPOSITE, OPPOSITE_T_ONLY, REPRODUCED, REPRODUCED_T_ONLY, UNRESOLVED, difference,
                           mean_interval, smallest_rank_p, verdict, versus_value)
from ntbench.suite import PaperClaim, PaperTable, Suite, SuiteError, label, paper_errors, read_suite_file, same_label

VERDICTS = (REPRODUCED, REPRODUCED_T_ONLY, OPPOSITE, OPPOSITE_T_ONLY, UNRESOLVED, NOT_RUN)

SEED = "param.train.seed"  # the trial rows' seed column (as in ntbench.report)


SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"  # the suites shipped in the checkout


def paper_claims(suite: Suite, suites_dir: Path = SUITES_DIR) -> tuple[PaperTable | None, str, list[str]]:
    """(the claims, where they come from, why they do not fit). The results' own suite first; results
    resolved before suites declared claims take them from the shipped suite of the same name, checked
    against the axes the results were run with."""
    if suite.paper is not None:
        return suite.paper, "suite.resolved.yaml", []
    for path in sorted(suites_dir.rglob("*.yaml")) if suites_dir.is_dir() else []:
        try:
            data = read_suite_file(path)
        except SuiteError:
            continue
        if data.get("name") != suite.name or data.get("paper") is None:
            continue
        where = str(path.relative_to(suites_dir.parent))
        try:
            table = PaperTable.model_validate(data["paper"])
        except ValueError as exc:
            return None, where, [str(exc)]
        return table, where, paper_errors(suite, table)
    return None, "", []


def _in_cell(params: dict, cell: dict) -> bool:
    """A trial, given by its axis values (key -> label), lies in a claim's cell."""
    return all(key in params and same_label(params[key], label(value)) for key, value in cell.items())


def _claim_cell(done: pd.DataFrame, cell: dict, metric: str) -> dict[int, float] | list[float]:
    """The rows of one claim cell: seed -> value (repeats averaged), or a list without seeds."""
    if any(f"param.{key}" not in done.columns for key in cell):
        return {}
    params = done[[f"param.{key}" for key in cell]].rename(columns=lambda c: c[len("param."):]).to_dict("records")
    rows = done[pd.Series([_in_cell(p, cell) for p in params], index=done.index, dtype=bool)]
    if SEED in rows.columns and rows[SEED].notna().all():
        return {int(s): float(v) for s, v in rows.groupby(SEED)[metric].mean().items()}
    return [float(v) for v in rows[metric]]


def _cell_name(cell: dict) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]} {label(v)}" for k, v in cell.items()) or "(the only cell)"


def _mean_text(values) -> str:
    iv = mean_interval(list(values.values()) if isinstance(values, dict) else list(values))
    return f"{iv.mean:.3f} (n = 1)" if iv.n < 2 else f"{iv.mean:.3f} ± {iv.half_width:.3f} (n = {iv.n})"


def judge_claim(suite: Suite, df: pd.DataFrame, claim: PaperClaim) -> dict:
    """One claim against the trials: ours A and B, A - B with its 95% interval, the MDE, the verdict."""
    metric = claim.metric or suite.objective
    expect = claim.expected()
    row = {"says": claim.says, "metric": metric, "a": _cell_name(claim.a),
           "b": _cell_name(claim.b) if isinstance(claim.b, dict) else f"the value {claim.b:g}",
           "paper_a": claim.paper.a, "paper_b": claim.paper.b, "paper_expects": expect, "note": claim.note}
    done = df[(df.status == "COMPLETE") & df[metric].notna()] if metric in df.columns else df.iloc[:0]
    a = _claim_cell(done, claim.a, metric)
    b = _claim_cell(done, claim.b, metric) if isinstance(claim.b, dict) else None
    missing = [side for side, v in (("A", a), ("B", b)) if v is not None and not v]
    if missing:
        return {**row, "ours_a": "not run" if "A" in missing else _mean_text(a),
                "ours_b": "not run" if "B" in missing else (_mean_text(b) if b is not None else f"{claim.b:g}"),
                "verdict": NOT_RUN, "comparison": "", "n": 0}
    d = difference(a, b) if b is not None else versus_value(a, float(claim.b))
    kind = "paired" if d.paired else ("one-sample" if b is None else "Welch")
    return {**row, "ours_a": _mean_text(a), "ours_b": _mean_text(b) if b is not None else f"{claim.b:g}",
            "comparison": kind,
            **{k: v for k, v in d.as_dict().items() if k in ("n", "mean", "low", "high", "mde", "rank_p", "above", "below")},
            "verdict": verdict(d, expect)}


def _cell_runs(done: list[dict], cell: dict) -> list:
    """The seeds (None for a trial without one) of the complete trials, given by their parameters, in one cell."""
    return [p.get("train.seed") for p in done if _in_cell(p, cell)]


def claims_with_interval(suite: Suite, done: list[dict]) -> tuple[int, int] | None:
    """(claims the complete trials can already judge with an interval, claims): both cells share two seeds
    (a paired interval), or hold two runs each where the trials carry no seed (Welch), or, against a value,
    the cell holds two runs. ``done``: the complete trials' parameters. ``None`` if the suite judges no claims.
    Lets ``ntbench status`` say when a grid run in parts has answered what it was run for."""
    table, _, problems = paper_claims(suite)
    if table is None or problems:
        return None
    ready = 0
    for claim in table.claims:
        a = _cell_runs(done, claim.a)
        if not isinstance(claim.b, dict):
            ready += len(a) >= 2
            continue
        b = _cell_runs(done, claim.b)
        if None in a or None in b:
            ready += min(len(a), len(b)) >= 2
        else:
            ready += len(set(a) & set(b)) >= 2
    return ready, len(table.claims)


def _diff_text(r: dict) -> str:
    if r["verdict"] == NOT_RUN:
        return "-"
    if pd.isna(r["low"]):
        return f"{r['mean']:+.4f} (n = {r['n']}, no interval)"
    return f"{r['mean']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] ({r['comparison']}, n = {r['n']})"


def _rank_text(r: dict) -> str:
    """The rank test and the signs: "p = 0.062; 5 of 5 seeds A > B" ("-" without a test)."""
    p = r.get("rank_p")  # absent from a table written before rank tests
    if r["verdict"] == NOT_RUN or p is None or pd.isna(p):
        return "-"
    unit = "seeds" if r["comparison"] == "paired" else "runs"
    signs = f"; {int(r['above'])} of {int(r['n'])} {unit} A > B" if r["comparison"] != "Welch" else ""
    return f"p = {p:.3f}{signs}"


def _verdict_text(r: dict) -> str:
    if r["verdict"] in (REPRODUCED_T_ONLY, OPPOSITE_T_ONLY):
        n = int(r["n"])
        floor = smallest_rank_p(n)
        why = f"with n = {n} the rank test's p cannot go below {floor:.3f}" \
            if floor >= 0.05 and r.get("comparison") != "Welch" else f"rank test p = {r.get('rank_p', float('nan')):.3f}"
        return f"{r['verdict']}: {why}"
    if r["verdict"] != UNRESOLVED:
        return r["verdict"]
    if pd.isna(r.get("low")):
        return f"{UNRESOLVED} (n = {int(r['n'])}: no interval, no MDE)"
    if pd.isna(r.get("mde")):
        return f"{UNRESOLVED} (MDE not estimable: {r['comparison']})"
    return f"{UNRESOLVED} (MDE {r['mde']:.4f})"


def paper_section(suite: Suite, df: pd.DataFrame, folder: Path, made: dict) -> list[str]:
    """The report's last section: every claim of the paper's table the suite re-asks, the paper's numbers
    beside ours with the interval of the difference, and the verdict. Also ``paper_vs_ntbench.csv``."""
    table, where, problems = paper_claims(suite)
    if problems:
        return ["## Paper vs ntbench", "", f"The claims in {where} do not fit these results:", "",
                *[f"- {p}" for p in problems], ""]
    if table is None:
        return ["## Paper vs ntbench", "", "This suite declares no claims of the paper (no `paper:` block).", ""]
    rows = [judge_claim(suite, df, c) for c in table.claims]
    pd.DataFrame(rows).to_csv(folder / "paper_vs_ntbench.csv", index=False)
    made["tables"].append(folder / "paper_vs_ntbench.csv")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    md = [f"## Paper vs ntbench: {table.table}", "", *([table.source, ""] if table.source else []),
          f"Claims from {where}. Each is judged by the 95% interval of ours A − B (paired by seed; Welch's "
          "interval where the cells share no seeds; one-sample against a value) and by the rank test of the same "
          "comparison (Wilcoxon signed-rank; rank-sum for Welch): the interval excludes 0 on the side the paper "
          f"claims: {REPRODUCED}; on the other side: {OPPOSITE}; either one marked '(t interval only)' when the rank "
          "test does not also give p < 0.05 (the t interval assumes normal per-seed differences, and on the micro "
          "backbone one or two seeds in ten branch away from the rest; the signed-rank test's smallest p is "
          "2/2^n, so it needs at least 6 seeds); the interval contains 0, or "
          f"there is none (n = 1): {UNRESOLVED}, with the minimum detectable effect (paired, level 0.05, power "
          "0.8) of that comparison. A claim of no difference is never counted as reproduced by an interval that "
          "contains 0. The paper's numbers (its backbone, its units) and ours are on different scales: only the "
          "direction is compared.", "",
          "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
          "| # | claim | metric | A | B | paper A | paper B | paper: A vs B | ours A | ours B | "
          "ours A − B [95% CI] | rank test | verdict |", "|" + "---|" * 13]
    for i, r in enumerate(rows, 1):
        md.append(f"| {i} | {r['says']} | {r['metric']} | {r['a']} | {r['b']} | {r['paper_a']} | {r['paper_b']} | "
                  f"{r['paper_expects']} | {r['ours_a']} | {r['ours_b']} | {_diff_text(r)} | {_rank_text(r)} | "
                  f"{_verdict_text(r)} |")
    notes = [f"- {i}: {r['note']}" for i, r in enumerate(rows, 1) if r["note"]]
    return md + ([""] + ["Notes on the paper's numbers:", ""] + notes if notes else []) + [""]


def _report_facts(report: Path) -> tuple[str, str]:
    """What the index needs from a suite's report: the freshness of its rows in a fixed vocabulary
    (fresh, rechecked, mixed machines, stale, stale: a rerun differed) and the paper table it judges."""
    if not report.is_file():
        return "no report", ""
    text = report.read_text()
    banners = [ln for ln in text.splitlines() if ln.startswith("> **")]
    state = ("stale: a rerun differed" if any("different numbers" in b for b in banners) else "stale") \
        if any(b.startswith("> **Stale") for b in banners) else \
        "rechecked" if any(b.startswith("> **Rechecked") for b in banners) else "fresh"
    if any(b.startswith("> **Mixed") for b in banners):
        state += ", mixed machines"
    if any(b.startswith("> **In progress") for b in banners):
        state = "in progress, " + state
    table = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("## Paper vs ntbench:")), "")
    return state, table


NO_INTERVAL = "no interval (n = 1)"


def _kind(r: dict) -> str:
    """A claim's verdict for counting: an unresolved claim with no interval at all (one seed) is its own
    kind, since it could not have been resolved at any effect size."""
    return NO_INTERVAL if r["verdict"] == UNRESOLVED and pd.isna(r.get("low")) else r["verdict"]


def superseded(folders: list[Path]) -> dict[Path, str]:
    """Folders pooled into another of ``folders`` (``ntbench pool``: its ``pooled.json`` names its sources, as given
    on the command line, from where it ran or from the results root's parent) -> the pooled folder's name. Their
    rows are counted once, in the pooled folder."""
    found = {}
    for pooled in folders:
        record = pooled / "pooled.json"
        if not record.is_file():
            continue
        try:
            sources = [Path(s["folder"]) for s in json.loads(record.read_text()).get("sources", [])]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        places = {p.resolve() for s in sources for p in (s, pooled.parent.parent / s)}
        found.update({f: pooled.name for f in folders if f != pooled and f.resolve() in places})
    return found


def scoreboard(folders: list[Path]) -> list[str]:
    """The results index's first section: every suite's paper-vs-ntbench verdicts counted, with the freshness
    of the rows they were judged on, then every claim with its interval. Read from the ``paper_vs_ntbench.csv``
    files on disk (what the reports wrote), so the index never re-judges a claim. A suite pooled into another
    (:func:`superseded`) is listed but not counted: its rows count in the pooled folder."""
    judged = [(f, pd.read_csv(f / "paper_vs_ntbench.csv")) for f in folders if (f / "paper_vs_ntbench.csv").is_file()]
    if not judged:
        return []
    without = [f.name for f in folders if not (f / "paper_vs_ntbench.csv").is_file()]
    kinds = (*VERDICTS[:-1], NO_INTERVAL, NOT_RUN)
    facts = {f: _report_facts(f / "report.md") for f, _ in judged}
    pooled_into = superseded(folders)
    for folder, into in pooled_into.items():
        if folder in facts:
            facts[folder] = (f"{facts[folder][0]}, pooled into {into}", facts[folder][1])
    md = ["## Paper vs ntbench: the suites that judge the paper's claims", "",
          "Counted from each suite's `paper_vs_ntbench.csv`; its report gives the rule (the 95% interval of ours "
          "A − B against the paper's direction, confirmed by a rank test) and the paper's numbers. Rows 'stale' were made by other trial "
          "code or another backbone than HEAD's and not rechecked by `ntbench verify` ('a rerun differed': "
          "rechecked, and HEAD gives other numbers); their verdicts may not be what the code gives now, so the "
          "totals count only fresh and rechecked suites, no suite still in progress, and no suite pooled into another "
          "(`ntbench pool`: its rows count there). A claim's MDE (below) is that comparison's own; a "
          "suite's MDE in its section further down is the median over its cells' differences to the best."
          + (f" Suites without paper claims: {', '.join(without)}." if without else ""), "",
          "| suite | paper table | rows | claims | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 4)]
    totals = dict.fromkeys(kinds, 0)
    for folder, rows in judged:
        counts = {k: sum(_kind(r) == k for r in rows.to_dict("records")) for k in kinds}
        state, table = facts[folder]
        # a finished suite on current rows (mixed machines too), not counted already in a pooled folder
        if state.split(",")[0] in ("fresh", "rechecked") and folder not in pooled_into:
            totals = {k: totals[k] + counts[k] for k in kinds}
        md.append(f"| [{folder.name}]({folder.name}/report.md) | {table} | {state} | {len(rows)} | "
                  + " | ".join(str(counts[k]) for k in kinds) + " |")
    md += [f"| **fresh and rechecked** | | | {sum(totals.values())} | " + " | ".join(str(totals[k]) for k in kinds)
           + " |", "", "| suite | rows | claim | metric | ours A − B [95% CI] | rank test | verdict |",
           "|---|---|---|---|---|---|---|"]
    for folder, rows in judged:
        for r in rows.to_dict("records"):
            md.append(f"| {folder.name} | {facts[folder][0]} | {r['says']} | {r['metric']} | {_diff_text(r)} | "
                      f"{_rank_text(r)} | {_verdict_text(r)} |")
    return md + [""]
