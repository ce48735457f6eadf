"""Bring a suite folder's ``trials.csv`` up to date with its storage, so that a report can be made of a
suite that is still running, or that was stopped (a session ended, Ctrl-C, a killed machine) before the
run wrote its table.

``ntbench run`` writes ``trials.csv`` once, when it ends. A long grid run across sessions would otherwise
have no report until its last cell. The rows are rebuilt by the runner's own function
(:func:`ntbench.records.trial_rows`) from a temporary copy of the journal: no lock is taken and the
storage is not written. A ``trials.csv`` whose trials and states already match the storage is left as it
is, so committed results are not rewritten by a report.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import optuna
import pandas as pd
import yaml

from ntbench.records import trial_rows, write_trials_csv
from ntbench.storage import make_storage
from ntbench.suite import Suite


def _same_rows(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Whether two trial tables hold the same trials in the same states (the rest follows from those)."""
    if len(old) != len(new) or not len(new):
        return len(old) == len(new)
    key = lambda df: sorted(zip(df["trial"].astype(int), df["status"].astype(str)))  # noqa: E731
    return {"trial", "status"} <= set(old.columns) and key(old) == key(new)


def refresh_trials_csv(folder: Path) -> int | None:
    """Rewrite ``folder/trials.csv`` from ``folder/optuna.journal`` where they disagree.

    Returns:
        The number of rows written, or None when nothing was written: the table already matched, or the
        folder holds no journal, no resolved suite, or several studies none of which is the suite's.
    """
    journal, resolved, csv = folder / "optuna.journal", folder / "suite.resolved.yaml", folder / "trials.csv"
    if not journal.is_file() or not resolved.is_file():
        return None
    suite = Suite(**yaml.safe_load(resolved.read_text()))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(journal, Path(tmp) / "optuna.journal")
        storage = make_storage(None, Path(tmp))
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        # the suite's own study; else the journal's only one (a study named by an older naming rule)
        name = suite.study_name() if suite.study_name() in names else (names[0] if len(names) == 1 else None)
        if name is None:  # none, or several studies and none of them this suite's
            return None
        study = optuna.load_study(study_name=name, storage=storage)
        rows = trial_rows(suite, study)
        if csv.is_file() and _same_rows(pd.read_csv(csv), rows):
            return None
        return len(write_trials_csv(suite, study, folder))
