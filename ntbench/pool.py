"""Pool the trials of suite folders that ran parts of one grid into one folder that ``ntbench report`` reads.

Why: a question often needs more seeds than its first run had (the power table says how many). Editing a
suite's seeds starts a new study (its name is a hash of its content), so the seeds already run would run
again. Running the new seeds as a suite of their own and pooling keeps every trial that was paid for: the
folders must agree on everything but their axis values (defaults, objective, budget, linked settings), and
the pooled folder's axes are the union. Every row keeps its provenance (commit, setup), plus the folder
and trial number it came from, so the report's freshness and setup banners judge the pooled rows by their
commits and setups; ``ntbench verify`` reruns recorded in a source's ``verified.json`` come along. One
judgement stays at home: a row whose commit differs from HEAD only in the suite modules is fresh there when its
storage shows HEAD resolves its cell to the config it ran; the pooled folder has no storage, so such a row reads
stale here (``ntbench verify`` on the source vouches for it, and its record comes along).

A seed that ran the same cell in two folders is kept once when both rows give the same numbers and
refused when they do not: two draws of one seed (another thread count, another commit) would be averaged.

The pooled folder has no storage (``optuna.journal``): it is a report's input, not a suite to resume; a source
still running is refused (its ``trials.csv`` is not final). The results index counts a source pooled into another
folder under the same root once, as the pooled folder (:func:`ntbench.paper_table.scoreboard`). The report settings
(``report``, ``sampler``, ``description``) are the first folder's.
A diagnostic of finished rows: no trial imports it (``ntbench.freshness.REPORT_ONLY``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ntbench.atomic import write_text
from ntbench.backbone_record import RECORD as BACKBONE_RECORD
from ntbench.freshness import VERIFIED, read_verified
from ntbench.suite import Suite

SEED = "param.train.seed"
SAME = ("defaults", "objective", "direction", "ranges", "budget", "linked")  # what every part must share
WRITTEN = ("suite.resolved.yaml", "trials.csv", VERIFIED, BACKBONE_RECORD, "pooled.json")


class PoolError(ValueError):
    """Folders that cannot be pooled (missing files, different suites, a seed run twice with other numbers)."""


def _read(folder: Path) -> tuple[Suite, pd.DataFrame]:
    for name in ("suite.resolved.yaml", "trials.csv"):
        if not (folder / name).is_file():
            raise PoolError(f"{folder / name}: not found (a suite folder written by `ntbench run` has both)")
    try:
        suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise PoolError(f"{folder / 'suite.resolved.yaml'}: not a suite ({exc})") from None
    try:
        rows = pd.read_csv(folder / "trials.csv")
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise PoolError(f"{folder / 'trials.csv'}: not a trial table ({exc})") from None
    missing = [c for c in ("trial", "status") if c not in rows.columns]
    if missing:
        raise PoolError(f"{folder / 'trials.csv'}: no column {', '.join(missing)} (a table written by `ntbench run` "
                        "has them)")
    if (folder / "optuna.journal").is_file():
        from ntbench.wall_time import suite_progress

        state = suite_progress(folder)
        if state["running"] or state["to_start"]:
            raise PoolError(f"{folder}: the suite is not finished ({state['complete']} complete, {state['running']} "
                            f"running, {state['to_start']} to start); pool it when its run has ended")
    return suite, rows


def _merged_axes(suites: list[Suite], folders: list[Path]) -> dict[str, list]:
    first = suites[0]
    axes = {key: list(values) for key, values in first.axes.items()}
    for suite, folder in zip(suites[1:], folders[1:]):
        if set(suite.axes) != set(axes):
            raise PoolError(f"{folder}: axes {sorted(suite.axes)} differ from {folders[0]}'s {sorted(axes)}; "
                            "pooled folders vary the same keys")
        for key, values in suite.axes.items():
            axes[key] += [v for v in values if v not in axes[key]]
    return axes


def _check_same(suites: list[Suite], folders: list[Path]) -> None:
    first = suites[0].model_dump(mode="json")
    for suite, folder in zip(suites[1:], folders[1:]):
        mine = suite.model_dump(mode="json")
        if mine.get("paper") and first.get("paper") and mine["paper"] != first["paper"]:
            raise PoolError(f"{folder}: its paper claims differ from {folders[0]}'s; pooled folders judge one set")
        for key in SAME:
            if mine.get(key) != first.get(key):
                raise PoolError(f"{folder}: `{key}` is {json.dumps(mine.get(key), sort_keys=True)}, but "
                                f"{folders[0]} has {json.dumps(first.get(key), sort_keys=True)}: pooled rows must "
                                "come from the same trial settings")
    records = [json.loads((f / BACKBONE_RECORD).read_text()).get("files") for f in folders
               if (f / BACKBONE_RECORD).is_file()]
    if any(r != records[0] for r in records[1:]):
        raise PoolError(f"the folders' {BACKBONE_RECORD} record different micro backbone weights: their rows "
                        "come from different backbones")


def _drop_repeats(rows: pd.DataFrame, params: list[str], objective: str) -> tuple[pd.DataFrame, int]:
    """One row per complete (cell, seed); a repeat with other numbers is refused."""
    if SEED not in rows:  # rows without seeds are runs of their own, never repeats
        return rows, 0
    done = rows[rows.status == "COMPLETE"]
    keys = params + [SEED]
    metrics = [c for c in rows.columns if "." in c and not c.startswith(("param.", "prov.")) and
               pd.api.types.is_numeric_dtype(rows[c])] or [objective]
    drop = []
    for _, group in done.groupby(keys, dropna=False):
        if len(group) < 2:
            continue
        first = group.iloc[0]
        for index, row in group.iloc[1:].iterrows():
            # only what both rows measured: a metric added between two runs is no disagreement
            differ = [m for m in metrics if not pd.isna(first[m]) and not pd.isna(row[m]) and first[m] != row[m]]
            if differ:
                cell = ", ".join(f"{k[len('param.'):]} = {first[k]}" for k in keys)
                raise PoolError(f"{cell} ran in {first['pooled_from']} (trial {first['source_trial']}) and in "
                                f"{row['pooled_from']} (trial {row['source_trial']}) with different numbers "
                                f"({differ[0]}: {first[differ[0]]} against {row[differ[0]]}): two draws of one seed "
                                "(another thread count or commit?) would be averaged")
            drop.append(index)
    return rows.drop(index=drop), len(drop)


def pool_suites(sources: list[Path], out: Path, name: str | None = None) -> dict[str, Any]:
    """Write ``out`` with ``suite.resolved.yaml`` (the first folder's suite with every folder's axis values),
    ``trials.csv`` (every folder's rows, renumbered, with ``pooled_from`` and ``source_trial``),
    ``verified.json`` (the folders' reruns, renumbered) and ``pooled.json`` (what came from where).

    Raises:
        PoolError: fewer than two folders, a missing file, folders of different settings or backbones,
            a seed that ran one cell twice with other numbers, or ``out`` holding results already.
    """
    folders = [Path(s) for s in sources]
    if len(folders) < 2:
        raise PoolError("give at least two suite folders to pool")
    twice = sorted({str(f) for f in folders if sum(g.resolve() == f.resolve() for g in folders) > 1})
    if twice:
        raise PoolError(f"{', '.join(twice)}: given more than once")
    out = Path(out)
    if any(out.resolve() == f.resolve() for f in folders):
        raise PoolError(f"{out}: is one of the folders to pool; pool into a new folder")
    if (out / "trials.csv").exists() and not (out / "pooled.json").is_file():
        raise PoolError(f"{out}: holds a suite's results already; pool into a new folder")
    parts = [_read(f) for f in folders]
    suites = [s for s, _ in parts]
    _check_same(suites, folders)
    merged = suites[0].model_copy(update={
        "name": name or out.name, "axes": _merged_axes(suites, folders),
        "paper": next((s.paper for s in suites if s.paper is not None), None),
        "description": f"{suites[0].description.rstrip('. ')}. Pooled from " + ", ".join(f"{f.name} ({len(df)} trials)"
                                                                           for f, (_, df) in zip(folders, parts)) + "."})
    merged = Suite(**merged.model_dump())  # validated as a whole
    frames, verified, offset, origin = [], [], 0, []
    for folder, (suite, df) in zip(folders, parts):
        renumber = {int(t): offset + i for i, t in enumerate(df["trial"])}
        # a pooled source keeps the folder and trial its rows first came from
        came_from = df["pooled_from"] if "pooled_from" in df else str(folder)
        first_trial = df["source_trial"] if "source_trial" in df else df["trial"]
        frames.append(df.assign(pooled_from=came_from, source_trial=first_trial, trial=df["trial"].map(renumber)))
        verified += [{**e, "trial": renumber[e["trial"]], "pooled_from": e.get("pooled_from", str(folder))}
                     for e in read_verified(folder) if e["trial"] in renumber]
        origin.append({"folder": str(folder), "suite": suite.name, "trials": len(df), "first_trial": offset})
        offset += len(df)
    rows, repeats = _drop_repeats(pd.concat(frames, ignore_index=True),
                                  [f"param.{k}" for k in merged.axes if f"param.{k}" != SEED], merged.objective)
    kept = set(rows["trial"].astype(int))
    verified = [e for e in verified if e["trial"] in kept]  # a rerun of a repeat dropped names no row here
    out.mkdir(parents=True, exist_ok=True)
    for stale in WRITTEN:  # pooling again into a pooled folder: nothing of the last pooling may stay
        (out / stale).unlink(missing_ok=True)
    write_text(out / "suite.resolved.yaml", yaml.safe_dump(merged.model_dump(mode="json"), sort_keys=False))
    write_text(out / "trials.csv", rows.to_csv(index=False))
    if verified:
        write_text(out / VERIFIED, json.dumps(verified, indent=1) + "\n")
    first_record = next((f / BACKBONE_RECORD for f in folders if (f / BACKBONE_RECORD).is_file()), None)
    if first_record is not None:
        write_text(out / BACKBONE_RECORD, first_record.read_text())
    summary = {"sources": origin, "rows": len(rows), "repeats_dropped": repeats, "axes": merged.axes}
    write_text(out / "pooled.json", json.dumps(summary, indent=1, default=str) + "\n")
    return summary
