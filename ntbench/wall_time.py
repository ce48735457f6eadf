"""How long a suite took, and how far a running one is, read back from its storage: the report's
"Run time" line and `ntbench status`.

A suite's cost table should come from a measurement, not from memory. Optuna stores when each trial
started and finished, so the wall time a suite kept the machine busy is the union of its complete
trials' intervals (a failed trial's time is left out). A suite resumed across sessions is counted in
parts, and the idle gaps between them are left out. Only the folder's own journal is read, and only the
suite's own study in it (an edited suite starts a new study in the same journal). It is read from a
temporary copy, so a report never takes the journal's lock or writes beside it. Optuna keeps times in
the reading machine's local time; they are shown in UTC so that a report does not depend on where it
was made.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import optuna
import yaml

from ntbench.paper_table import claims_with_interval
from ntbench.storage import make_storage
from ntbench.suite import Suite

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


def resolved_suite(folder: Path) -> Suite | None:
    """The suite as the run recorded it (``suite.resolved.yaml``), or None."""
    path = folder / "suite.resolved.yaml"
    return Suite(**yaml.safe_load(path.read_text())) if path.is_file() else None


def own_study_name(names: list[str], suite: Suite | None) -> str | None:
    """Which study of a journal is the suite's: its own name, else the only study (one named by an older
    naming rule); None when several studies are there and none is the suite's."""
    if suite is not None and suite.study_name() in names:
        return suite.study_name()
    return names[0] if len(names) == 1 else None


@contextmanager
def copied_study(journal: Path, suite: Suite | None) -> Iterator[optuna.Study | None]:
    """The suite's study (:func:`own_study_name`) in a temporary copy of ``journal``: no lock taken, nothing
    written beside the journal, and a journal that a running suite appends to reads as a clean earlier state
    (Optuna skips an unfinished last line). None when the journal holds no study of the suite."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(journal, Path(tmp) / "optuna.journal")
        storage = make_storage(None, Path(tmp))
        name = own_study_name([s.study_name for s in optuna.get_all_study_summaries(storage)], suite)
        yield optuna.load_study(study_name=name, storage=storage) if name else None


def stored_trials(journal: Path, suite: Suite | None = None) -> list[optuna.trial.FrozenTrial]:
    """The trials of the suite's study in ``journal`` ([] when it holds none), via :func:`copied_study`."""
    with copied_study(journal, suite) as study:
        return study.trials if study is not None else []


def storage_trials(url: str, folder: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials of the suite recorded in ``folder`` (its ``suite.resolved.yaml``) from the storage its
    workers share (``--storage``): a journal file is read from a copy, a database without creating its
    tables, so nothing is written either way.

    Raises:
        FileNotFoundError: ``folder`` has no resolved suite, or the storage has no study of it.
    """
    suite = resolved_suite(folder)
    if suite is None:
        raise FileNotFoundError(f"{folder / 'suite.resolved.yaml'}: not found (the suite's results folder names the "
                                "study to read from the storage)")
    if url.startswith("journal:"):
        trials = stored_trials(Path(url[len("journal:"):]), suite)
    else:
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        name = own_study_name([s.study_name for s in optuna.get_all_study_summaries(storage)], suite)
        trials = optuna.load_study(study_name=name, storage=storage).trials if name else []
    if not trials:
        raise FileNotFoundError(f"{url}: no trials of the suite {suite.name} (study {suite.study_name()}) there")
    return trials


def recorded_configs(trials: list[optuna.trial.FrozenTrial]) -> dict[int, dict]:
    """Trial number -> the config it ran (the ``config`` attribute the runner stores with each trial)."""
    return {t.number: t.user_attrs["config"] for t in trials if isinstance(t.user_attrs.get("config"), dict)}


def utc(moment: datetime) -> datetime:
    """Optuna's naive local time as UTC."""
    return moment.astimezone(timezone.utc)


def finished_intervals(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[datetime, datetime]]:
    """(start, end) in UTC of every complete trial. Failed trials are left out: an interrupted or dead worker's
    trial is marked failed when the suite resumes, maybe hours later, so its end time is not its own."""
    return [(utc(t.datetime_start), utc(t.datetime_complete)) for t in trials
            if t.datetime_start and t.datetime_complete and t.state == optuna.trial.TrialState.COMPLETE]


def run_time_line(folder: Path, trials: list[optuna.trial.FrozenTrial] | None = None) -> list[str]:
    """The report's line on the suite's measured wall time ([] without a journal or a finished trial);
    ``trials``: the suite's stored trials, when the caller has read them already."""
    if trials is None:
        if not (folder / "optuna.journal").is_file():
            return []
        try:
            trials = stored_trials(folder / "optuna.journal", resolved_suite(folder))
        except Exception as exc:  # a damaged journal stops no report: say so and go on
            return [f"Run time: not read ({type(exc).__name__}: {exc}).", ""]
    intervals = finished_intervals(trials)
    if not intervals:
        return []
    parts = busy_parts(intervals)
    busy = sum((e - s).total_seconds() for s, e in parts) / 60
    trial = sorted((e - s).total_seconds() for s, e in intervals)
    end = lambda s, e: f"{e:%H:%M}" if e.date() == s.date() else f"{e:%Y-%m-%d %H:%M}"  # noqa: E731
    when = "; ".join(f"{s:%Y-%m-%d %H:%M}-{end(s, e)}" for s, e in parts)
    return [f"Run time (from the storage): {len(intervals)} complete trials ran in **{busy:.1f} min** of wall time "
            f"({len(parts)} part{'s' if len(parts) > 1 else ''}: {when} UTC); one trial took "
            f"{trial[0]:.0f}-{trial[-1]:.0f} s (median {trial[len(trial) // 2]:.0f} s).", ""]


# records.INTERRUPTED, the fail_reason of a trial stopped by Ctrl-C (records sits beside this module in the
# layers, so it cannot be imported here; tests/test_report.py keeps the two equal)
INTERRUPTED = "interrupted"


def suite_progress(folder: Path, now: datetime | None = None,
                   trials: list[optuna.trial.FrozenTrial] | None = None) -> dict:
    """How far the suite stored in ``folder`` is: trials complete, running (with how long they have run),
    waiting, and failed attempts (interrupted ones included, and counted apart: a resumed run repeats their
    cells), the next three cells a plain resume takes (``number`` None: a stopped cell it queues again;
    ``--claims-first`` may reorder them), the median trial time, and a rough estimate of the time left at the current number of running workers. A sampled (TPE or
    random) suite's total is its ``n_trials`` budget. Reads a copy of the journal, so it is safe while the
    suite runs; a worker that died leaves a trial "running" until the suite is resumed. ``trials``: the
    suite's stored trials, when the caller has read them already.

    Raises:
        FileNotFoundError: ``folder`` holds no ``optuna.journal``.
    """
    journal = folder / "optuna.journal"
    if trials is None and not journal.is_file():
        raise FileNotFoundError(f"{journal}: no suite storage here (a suite's results folder holds optuna.journal; "
                                "a suite run with --storage: give that too)")
    suite = resolved_suite(folder)
    trials = stored_trials(journal, suite) if trials is None else trials
    now = now or datetime.now()
    state = optuna.trial.TrialState
    done = [t for t in trials if t.state == state.COMPLETE]
    running = [t for t in trials if t.state == state.RUNNING]
    waiting = [t for t in trials if t.state == state.WAITING]
    failed = [t for t in trials if t.state == state.FAIL]
    stopped = [t for t in failed if t.user_attrs.get("fail_reason") == INTERRUPTED]
    total = len(done) + len(running) + len(waiting)
    if suite is not None and suite.sampler.type != "grid":  # nothing waits: the budget says what is left
        total = max(total, suite.sampler.n_trials)
    elif suite is not None and suite.axes:  # a cell stopped by Ctrl-C waits for nothing until the next run
        total = max(total, math.prod(len(values) for values in suite.axes.values()))  # enqueues it again
    todo = total - len(done) - len(running)
    took = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in done
                  if t.datetime_start and t.datetime_complete)
    median = took[len(took) // 2] if took else None
    ran = [(now - t.datetime_start).total_seconds() if t.datetime_start else 0.0 for t in running]
    workers = max(1, len(running))
    # each running worker first finishes its trial (a slow one is not taken from the others' time), then the
    # trials still to start spread over the workers
    left = None if median is None else (sum(max(0.0, median - r) for r in ran) + median * todo) / workers
    claims = None if suite is None else claims_with_interval(suite, [t.params for t in done])
    # what a resumed run takes first: the cells stopped by Ctrl-C and not queued since, which `ntbench run` puts
    # back where they were handed out (before every trial still waiting), then the waiting trials, oldest first
    was_stopped = {t.number for t in stopped}
    held = {t.user_attrs.get("cell") for t in trials if t.number not in was_stopped}
    unqueued = {t.user_attrs["cell"]: t for t in sorted(stopped, key=lambda t: t.number)
                if "cell" in t.user_attrs and t.user_attrs["cell"] not in held}
    queue = sorted(unqueued.values(), key=lambda t: t.number) + sorted(waiting, key=lambda t: t.number)
    upcoming = [{"number": None if t.state == state.FAIL else t.number,
                 "params": t.params or t.system_attrs.get("fixed_params", {})} for t in queue[:3]]
    return {"folder": str(folder), "objective": None if suite is None else suite.objective, "complete": len(done), "running": len(running), "to_start": todo,
            "failed_attempts": len(failed), "interrupted_attempts": len(stopped), "total": total, "median_trial_s": median, "time_left_s": left,
            "claims_with_interval": None if claims is None else claims[0],
            "claims": None if claims is None else claims[1],
            "next_trials": upcoming,
            "running_trials": [{"number": t.number, "params": t.params, "running_s": round(r)}
                               for t, r in zip(running, ran)],
            "last_complete": [{"number": t.number, "params": t.params, "value": t.value}
                              for t in sorted(done, key=lambda t: t.datetime_complete)[-5:]]}


def progress_banner(folder: Path, trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """A report's first banner while its suite has trials running or still to start ([] once it is done)."""
    p = suite_progress(folder, trials=trials)
    if not p["running"] + p["to_start"]:
        return []
    return [f"> **In progress.** {p['complete']} of {p['total']} trials complete, {p['running']} running, "
            f"{p['to_start']} to start (`ntbench status {folder}`): the tables below are partial, and cells "
            "may be missing seeds." + _claims_text(p), ""]


def _claims_text(p: dict) -> str:
    if p["claims"] is None:
        return ""
    return (f" {p['claims_with_interval']} of the {p['claims']} paper claims have both their cells run on two "
            "shared seeds or more, so an interval.")


def storage_lines(folder: Path) -> tuple[list[str], list[str], dict[int, dict]]:
    """What a report takes from the suite's storage, read once: its "In progress" banner, its "Run time" line
    (both [] without a journal; a damaged journal is named in the run-time line) and each trial's recorded
    config (:func:`recorded_configs`; {} without a readable journal, so no config vouches for a row)."""
    journal = folder / "optuna.journal"
    if not journal.is_file():
        return [], [], {}
    try:
        trials = stored_trials(journal, resolved_suite(folder))
    except Exception as exc:  # a damaged journal stops no report: say so and go on
        return [], [f"Run time: not read ({type(exc).__name__}: {exc}).", ""], {}
    return progress_banner(folder, trials), run_time_line(folder, trials), recorded_configs(trials)
