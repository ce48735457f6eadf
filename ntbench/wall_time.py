"""How long a suite took, and how far a running one is, read back from its storage: the report's
"Run time" line and `ntbench status`.

A suite's cost table should come from a measurement, not from memory. Optuna stores when each trial
started and finished, so the wall time a suite kept the machine busy is the union of its complete
trials' intervals (a failed trial's time is left out). A suite resumed across sessions is counted in parts, and the idle gaps between
them are left out. Only the folder's own journal is read. It is read from a temporary copy, so a
report never takes the journal's lock or writes beside it.
"""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import optuna

from ntbench.storage import make_storage

# a pause longer than this between one trial's end and the next trial's start splits the run into parts
GAP = timedelta(minutes=10)


def busy_parts(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The union of ``intervals`` as disjoint (start, end) parts, merging overlaps and gaps up to :data:`GAP`."""
    parts: list[list[datetime]] = []
    for start, end in sorted(intervals):
        if parts and start <= parts[-1][1] + GAP:
            parts[-1][1] = max(parts[-1][1], end)
        else:
            parts.append([start, end])
    return [(s, e) for s, e in parts]


def stored_trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    """Every trial of every study in ``journal``, read from a temporary copy (no lock taken, nothing written)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(journal, Path(tmp) / "optuna.journal")
        storage = make_storage(None, Path(tmp))
        return [t for summary in optuna.get_all_study_summaries(storage)
                for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials]


def finished_intervals(journal: Path) -> list[tuple[datetime, datetime]]:
    """(start, end) of every complete trial in ``journal``. Failed trials are left out: an interrupted or dead
    worker's trial is marked failed when the suite resumes, maybe hours later, so its end time is not its own."""
    return [(t.datetime_start, t.datetime_complete) for t in stored_trials(journal)
            if t.datetime_start and t.datetime_complete and t.state == optuna.trial.TrialState.COMPLETE]


def run_time_line(folder: Path) -> list[str]:
    """The report's line on the suite's measured wall time ([] without a journal or a finished trial)."""
    journal = folder / "optuna.journal"
    if not journal.is_file():
        return []
    try:
        intervals = finished_intervals(journal)
    except Exception as exc:  # a damaged journal stops no report: say so and go on
        return [f"Run time: not read ({type(exc).__name__}: {exc}).", ""]
    if not intervals:
        return []
    parts = busy_parts(intervals)
    busy = sum((e - s).total_seconds() for s, e in parts) / 60
    trial = sorted((e - s).total_seconds() for s, e in intervals)
    when = "; ".join(f"{s:%Y-%m-%d %H:%M}-{e:%H:%M}" for s, e in parts)
    return [f"Run time (from the storage): {len(intervals)} complete trials ran in **{busy:.1f} min** of wall time "
            f"({len(parts)} part{'s' if len(parts) > 1 else ''}: {when}, storage clock); one trial took "
            f"{trial[0]:.0f}-{trial[-1]:.0f} s (median {trial[len(trial) // 2]:.0f} s).", ""]


def suite_progress(folder: Path, now: datetime | None = None) -> dict:
    """How far the suite stored in ``folder`` is: trials complete, running (with how long they have run),
    waiting and failed, the median trial time, and a rough estimate of the time left at the current number
    of running workers. Reads a copy of the journal, so it is safe while the suite runs.

    Raises:
        FileNotFoundError: ``folder`` holds no ``optuna.journal``.
    """
    journal = folder / "optuna.journal"
    if not journal.is_file():
        raise FileNotFoundError(f"{journal}: no suite storage here (a suite's results folder holds optuna.journal)")
    trials = stored_trials(journal)
    now = now or datetime.now()
    state = optuna.trial.TrialState
    done = [t for t in trials if t.state == state.COMPLETE]
    running = [t for t in trials if t.state == state.RUNNING]
    waiting = [t for t in trials if t.state == state.WAITING]
    failed = [t for t in trials if t.state == state.FAIL]
    took = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in done
                  if t.datetime_start and t.datetime_complete)
    median = took[len(took) // 2] if took else None
    ran = [(now - t.datetime_start).total_seconds() if t.datetime_start else 0.0 for t in running]
    workers = max(1, len(running))
    # the waiting trials spread over the running workers, each of which first finishes its current trial
    left = None if median is None else max(0.0, (median * (len(waiting) + len(running)) - sum(ran)) / workers)
    return {"folder": str(folder), "complete": len(done), "running": len(running), "waiting": len(waiting),
            "failed": len(failed), "total": len(trials), "median_trial_s": median, "time_left_s": left,
            "running_trials": [{"number": t.number, "params": t.params, "running_s": round(r)}
                               for t, r in zip(running, ran)],
            "last_complete": [{"number": t.number, "params": t.params, "value": t.value}
                              for t in sorted(done, key=lambda t: t.datetime_complete)[-5:]]}
