"""Bring a suite folder's ``trials.csv`` up to date with its storage, so that a report can be made of a
suite that is still running, or that was stopped (a session ended, Ctrl-C, a killed machine) before the
run wrote its table.

``ntbench run`` writes ``trials.csv`` once, when it ends. A long grid run across sessions would otherwise
have no report until its last cell. The rows are rebuilt by the runner's own function
(:func:`ntbench.records.trial_rows`) from a temporary copy of the journal: no lock is taken and the
storage is not written. A ``trials.csv`` whose trials and states already match the storage is left as it
is, so committed results are not rewritten by a report, and one with a complete row the journal lacks is
kept too. A report taken in the instant a run writes its own table may still show a trial as running;
the next report corrects it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ntbench.records import trial_rows, write_trials_csv
from ntbench.wall_time import copied_study, resolved_suite


def _same_rows(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Whether two trial tables hold the same trials in the same states (the rest follows from those)."""
    key = lambda df: sorted(zip(df["trial"].astype(int), df["status"].astype(str)))  # noqa: E731
    return {"trial", "status"} <= set(old.columns) and key(old) == key(new)


def _loses_complete_rows(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Whether ``new`` lacks a trial that ``old`` has as complete: then the journal is the older record
    (a copy taken before the run's last write, or a journal left over from another storage)."""
    if not {"trial", "status"} <= set(old.columns):
        return False
    kept = set(new.loc[new.status == "COMPLETE", "trial"].astype(int)) if len(new) else set()
    return bool(set(old.loc[old.status == "COMPLETE", "trial"].astype(int)) - kept)


def refresh_trials_csv(folder: Path) -> int | None:
    """Rewrite ``folder/trials.csv`` from ``folder/optuna.journal`` where the journal has more to say.

    Nothing is written when the table already matches, when the storage has no row yet (a suite still
    preparing its data), when the rebuilt table would lose a complete row the old one has, or when the
    table changed while the journal was read (the run finished meanwhile).

    Returns:
        The number of rows written, or None when nothing was written.
    """
    journal, csv = folder / "optuna.journal", folder / "trials.csv"
    suite = resolved_suite(folder)
    if not journal.is_file() or suite is None:
        return None
    before = csv.stat().st_mtime_ns if csv.is_file() else None
    with copied_study(journal, suite) as study:
        if study is None:
            return None
        rows = trial_rows(suite, study)
        if not len(rows):
            return None
        if before is not None:
            try:
                old = pd.read_csv(csv)
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                old = pd.DataFrame()
            if _same_rows(old, rows) or _loses_complete_rows(old, rows):
                return None
        if (csv.stat().st_mtime_ns if csv.is_file() else None) != before:
            return None
        return len(write_trials_csv(suite, study, folder))
