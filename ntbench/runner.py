"""The suite runner: one Optuna study per suite, resumable, shared by any number of workers.

Grid suites enqueue every missing cell once; workers pop waiting trials (the storage hands each
to exactly one worker), so no cell runs twice and none is missed. Every trial runs through
``study.optimize``, so on a database its heartbeat is recorded while it runs. A trial whose
worker died (``kill -9``, a lost machine) is taken over by any live worker of the study, this
run's or another's: at once on the journal (its lease lock is free), after the heartbeat's grace
period on a database (see ``ntbench.claims``). Its cell is enqueued again and re-run, with no
flag to pass. A trial that raises (NaN loss, OOM, any error) is recorded as FAIL with its reason
and the suite goes on. Several ``ntbench run`` on one results folder cooperate like the workers
of ``--workers N``: each waits until the other's RUNNING cells are told, then writes the table.

Storage: by default a journal file in ``<results root>/<suite>/`` (``runs/`` unless told) (no server; safe for several
processes on one machine); ``--storage postgresql+psycopg2://...`` for workers on several machines.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import pandas as pd
import yaml

from ntbench.claims import Claims
from ntbench.records import (INTERRUPTED, counted, enqueue_retries, interrupted, record_trial,  # noqa: F401
                             trial_rows, write_trials_csv)  # (trial_rows: public here too)
from ntbench.provenance import current_setup, row_setup
from ntbench.storage import HEARTBEAT, make_storage
from ntbench.suite import Suite, label, trial_config

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)
POLL_S = 1.0  # how often a worker with nothing to take looks at the other workers' RUNNING trials


def suite_dir(suite: Suite, results: Path) -> Path:
    return results / suite.name


def _labels(suite: Suite) -> dict[str, dict[Any, Any]]:
    return {key: {label(v): v for v in values} for key, values in suite.axes.items()}


def _cell_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def prepare_study(suite: Suite, storage, folder: Path, recover_running: bool = False,
                  retry_failed: bool = False) -> tuple[optuna.Study, int]:
    """Create/load the study, take over dead workers' trials, enqueue missing grid cells (and,
    with ``retry_failed``, the cells or sampled parameters of failed trials).

    All of it under the folder's claim lock: a second run on the folder waits, then finds the
    cells already enqueued or held by the first run's live workers.

    Args:
        suite: the suite.
        storage: from ``make_storage``.
        folder: the suite's results folder (holds the claim lock).
        recover_running: also take over RUNNING trials whose owner cannot be seen to be dead (a
            trial left on a server by an ntbench without heartbeats). Only when no other worker lives.
        retry_failed: run failed trials again (their last attempt of each cell); the retry replaces
            the failed row in ``trials.csv`` and, for a sampled suite, its place in the budget.

    Returns:
        The study and the number of trials still to run.
    """
    with Claims(folder, storage) as claims:
        study = optuna.create_study(study_name=suite.study_name(), storage=storage, load_if_exists=True,
                                    direction=suite.direction)
        study.set_user_attr("suite", suite.model_dump())
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([suite.objective])  # optuna-dashboard shows the objective by name
        claims.recover(study, force=recover_running)
        live = optuna.trial.TrialState
        trials = study.get_trials(deepcopy=False)
        if retry_failed:
            enqueue_retries(study, trials, grid=suite.sampler.type == "grid")
            trials = study.get_trials(deepcopy=False)
        if suite.sampler.type != "grid":
            return study, max(0, suite.sampler.n_trials - len(counted(trials)))
        # a cell stopped by Ctrl-C was left without a retry: enqueue it again
        taken = {t.user_attrs.get("cell") for t in trials if not interrupted(t)}
        labels = _labels(suite)
        for combo in _label_grid(labels):
            key = _cell_key(combo)
            if key not in taken:
                study.enqueue_trial(combo, user_attrs={"cell": key})
                taken.add(key)
        waiting = study.get_trials(deepcopy=False, states=(live.WAITING,))
    return study, len(waiting)


def _label_grid(labels: dict[str, dict]) -> list[dict[str, Any]]:
    import itertools
    keys = list(labels)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(labels[k]) for k in keys))]


def _objective_value(metrics: dict, path: str) -> float:
    task, _, key = path.partition(".")
    value = metrics.get(task, {}).get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"objective {path!r} not found in the trial's metrics")
    return float(value)


def _suggest(trial: optuna.Trial, suite: Suite) -> dict[str, Any]:
    """Axis values for this trial (fixed for enqueued grid cells, sampled otherwise)."""
    labels = _labels(suite)
    overrides = {}
    for key, mapping in labels.items():
        overrides[key] = mapping[trial.suggest_categorical(key, list(mapping))]
    for key, rng in suite.ranges.items():
        overrides[key] = trial.suggest_int(key, int(rng.low), int(rng.high), log=rng.log) if rng.type == "int" \
            else trial.suggest_float(key, rng.low, rng.high, log=rng.log)
    return overrides


def run_one(trial: optuna.Trial, suite: Suite, progress: Callable | None = None, folder: Path | None = None) -> float:
    """Run the trial's cell; its summary goes to the user attributes, its large parts to files in
    ``folder`` (see ``ntbench.records``). Returns the objective."""
    from ntbench.train.trial import run_trial

    overrides = _suggest(trial, suite)
    cfg = trial_config(suite, overrides)
    start = time.perf_counter()

    def report(event: str, state: dict) -> Any:
        if event == "eval":  # Optuna reporting and pruning on intermediate evaluations
            try:
                trial.report(_objective_value(state["metrics"], suite.objective), state["step"])
            except ValueError:
                return None
            if trial.should_prune():
                return "stop"
        return None

    try:
        steps = cfg.train.steps  # the record says which step; the bar also needs how many
        summary = run_trial(cfg, callbacks=[report], progress=progress and (
            lambda s, rec: progress(s, {**rec, "total_steps": steps})))
    except KeyboardInterrupt:  # optimize records it FAIL; the reason makes the next run re-run the cell
        trial.set_user_attr("fail_reason", INTERRUPTED)
        raise
    except Exception as exc:  # recorded on the trial; the suite goes on
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:2000])
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        raise
    record_trial(trial, summary, folder, time.perf_counter() - start)
    return _objective_value(summary["metrics"], suite.objective)


CLAIM, WAIT, DONE = "claim", "wait", "done"


def _next_step(suite: Suite, study: optuna.Study) -> str:
    """CLAIM a trial, WAIT for other workers' RUNNING trials (they may die and be re-run), or DONE."""
    trials = study.get_trials(deepcopy=False)
    states = {t.state for t in trials}
    live = optuna.trial.TrialState
    work = live.WAITING in states
    if suite.sampler.type != "grid":
        work = work or len(counted(trials)) < suite.sampler.n_trials
    return CLAIM if work else WAIT if live.RUNNING in states else DONE


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """optimize logs each failed trial with its traceback; the runner records the reason on the trial."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _run_next(study: optuna.Study, suite: Suite, claims: Claims, progress: Callable | None, folder: Path) -> bool:
    """Take the next trial and run it; call with the claim lock held (it is let go once the trial
    is leased). Returns whether a trial ran (False: another worker took it from us)."""
    held: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        held["number"] = trial.number
        held["lease"] = claims.lease(study, trial.number)
        claims.release()
        if suite.sampler.type == "grid" and "cell" not in trial.user_attrs:
            # a worker on another results folder (another machine) took the last waiting cell
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned()
        return run_one(trial, suite, progress, folder)

    try:
        with _quiet_optuna():
            study.optimize(objective, n_trials=1, catch=(Exception,))
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        # "Cannot tell a FAIL trial": our heartbeat stalled past the grace period (or another run
        # was told --recover-running) and a live worker took the trial over and re-runs its cell
        number = held.get("number")
        if number is None or _state(study, number) == optuna.trial.TrialState.RUNNING:
            raise
        log.warning("trial %d was taken over by another worker; its cell runs again there", number)
        return False
    finally:
        if "lease" in held:
            held["lease"].release()
    return not study.get_trials(deepcopy=False)[held["number"]].user_attrs.get("surplus")


def _state(study: optuna.Study, number: int) -> optuna.trial.TrialState:
    return study.get_trials(deepcopy=False)[number].state


def worker_loop(suite: Suite, storage_url: str | None, folder: Path, progress: Callable | None = None,
                on_trial: Callable | None = None, heartbeat: tuple[int, int] = HEARTBEAT) -> int:
    """Run trials until no grid cell waits (or the TPE budget is spent) and no other worker's trial
    runs (it might die and need a re-run here). Returns how many trials this worker ran."""
    storage = make_storage(storage_url, folder, heartbeat)
    study = optuna.load_study(study_name=suite.study_name(), storage=storage, sampler=_sampler(suite))
    claims = Claims(folder, storage)
    ran, since, told = 0, {}, False
    while True:
        claims.acquire()
        try:
            claims.recover(study)
            step = _next_step(suite, study)
            if step == DONE:
                break
            if step == CLAIM:
                ran += _run_next(study, suite, claims, progress, folder)
                if on_trial:
                    on_trial()
                continue
            running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        finally:
            claims.release()
        now = time.monotonic()
        since = {n: since.get(n, now) for n in running}
        # the journal knows at once whether a worker lives; on a database, a trial that outlives the
        # grace period with no takeover may have died before its first heartbeat: say so, once
        if claims.heartbeat and not told and any(now - t > heartbeat[1] + 2 * heartbeat[0] for t in since.values()):
            told = True
            log.warning("still waiting for trial(s) %s, RUNNING in other workers. If no worker runs them, "
                        "rerun with --recover-running", sorted(running))
        time.sleep(POLL_S)
    return ran


def _sampler(suite: Suite):
    if suite.sampler.type == "tpe":
        return optuna.samplers.TPESampler(seed=suite.sampler.seed)
    return optuna.samplers.RandomSampler(seed=suite.sampler.seed)  # grid cells are enqueued


def prepare_inputs(suite: Suite, make_data: Callable[[str | None], Any] | None = None) -> None:
    """Generate the micro-world data and prepare the micro backbone if any cell needs them.

    ``make_data``: makes a micro world by its data spec (default ``resolve_data``; the CLI's shows a bar).
    """
    from ntbench.data.cache import resolve_data

    cells = [{}] + [{k: v} for k, vs in suite.axes.items() for v in vs]
    for cell in cells:
        cfg = trial_config(suite, cell)
        if cfg.data is None or str(cfg.data).startswith("microworld:"):
            (make_data or resolve_data)(cfg.data)
        if cfg.backbone == "micro":
            from ntbench.micro import ensure_micro
            ensure_micro()


def _filters() -> list:
    """This process's warning filters that can travel to a spawned worker."""
    import pickle

    def travels(f) -> bool:
        try:
            return bool(pickle.dumps(f))
        except Exception:  # a filter on a class defined in a function, say
            return False
    return [f for f in warnings.filters if travels(f)]


def _worker_main(args) -> int:
    suite_json, storage_url, folder, heartbeat, filters = args
    warnings.filters[:] = filters  # the parent's warning filters (the CLI's quiet ones), not the defaults
    import torch
    torch.set_num_threads(1)
    return worker_loop(Suite(**json.loads(suite_json)), storage_url, Path(folder), heartbeat=heartbeat)


def run_suite(suite: Suite, results: Path = Path("runs"), storage_url: str | None = None, workers: int = 1,
              progress: Callable | None = None, on_trial: Callable | None = None,
              on_total: Callable[[int], None] | None = None, recover_running: bool = False,
              heartbeat: tuple[int, int] = HEARTBEAT, retry_failed: bool = False,
              make_data: Callable[[str | None], Any] | None = None,
              on_notice: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run what is missing of ``suite``; write ``trials.csv`` and the resolved suite; return the rows.

    ``on_trial`` is called once per finished trial, by any worker (with ``workers > 1`` the parent
    watches the storage); ``progress(step, record)`` per training step (one worker only).
    ``recover_running``: see ``prepare_study``; dead workers' trials are taken over without it.
    ``heartbeat``: (interval, grace period) in seconds on a database storage.
    ``retry_failed``: also re-run the cells whose trials failed (see ``prepare_study``).
    ``make_data``: see ``prepare_inputs``.
    ``on_notice``: told when the suite's finished rows ran on another arithmetic setup than this run
    will (see :func:`setup_notice`); default: a Python warning.
    """
    folder = suite_dir(suite, results)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.resolved.yaml").write_text(yaml.safe_dump(suite.model_dump(), sort_keys=False))
    storage = make_storage(storage_url, folder, heartbeat)
    study, todo = prepare_study(suite, storage, folder, recover_running, retry_failed)
    if on_total:
        on_total(todo)
    if todo:
        notice = setup_notice(trial_rows(suite, study), current_setup(1 if workers > 1 else None))
        if notice:
            (on_notice or (lambda text: warnings.warn(text, stacklevel=2)))(notice)
        prepare_inputs(suite, make_data)  # data and backbones are made once here, not raced by the workers
    if workers <= 1:
        # also with nothing left to take: another run's RUNNING trials are waited for (or re-run)
        worker_loop(suite, storage_url, folder, progress=progress, on_trial=on_trial, heartbeat=heartbeat)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker_main,
                             args=((suite.model_dump_json(), storage_url, str(folder), heartbeat,
                                    _filters()),))
                 for _ in range(workers)]
        for p in procs:
            p.start()
        _watch(study, procs, on_trial)
        bad = [p.exitcode for p in procs if p.exitcode]
        if bad:
            raise WorkersFailed(f"{len(bad)} worker process(es) exited with codes {bad}; "
                                "rerun the suite to finish the missing cells")
    return write_trials_csv(suite, study, folder)


def setup_notice(rows: pd.DataFrame, here: str) -> str | None:
    """A warning when a suite resumes on another arithmetic setup than its completed rows (else None).

    Cells are compared by seed, and a seed is bit-reproducible only on one setup: finishing a suite
    elsewhere pairs unlike runs (its report then says "Mixed machines"). Only a warning, since
    finishing elsewhere may still be what a user wants.
    """
    if rows.empty or "status" not in rows:
        return None
    done = rows[rows.status == "COMPLETE"]
    there = {label for label in done.apply(row_setup, axis=1) if isinstance(label, str)} if len(done) else set()
    if not there or there == {here}:
        return None
    trials = f"{len(done)} completed trial{'' if len(done) == 1 else 's'}"
    return (f"this suite's {trials} ran on {'; '.join(sorted(there))}, and this run is on {here}. "
            "A seed is bit-reproducible only within one setup, so cells paired across setups compare unlike "
            "runs: finish the suite on the kind of machine that started it, or its report will say "
            "'Mixed machines'.")


class WorkersFailed(RuntimeError):
    """A worker process of ``--workers N`` died (killed, out of memory): the finished cells are stored,
    a rerun runs the rest."""


def _watch(study: optuna.Study, procs: list, on_trial: Callable | None) -> None:
    """Wait for the worker processes, calling ``on_trial`` once per trial they finish meanwhile."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    count = lambda: len(study.get_trials(deepcopy=False, states=done))  # noqa: E731
    start, told, alive = count(), 0, list(procs)
    while alive:
        alive[0].join(timeout=POLL_S)
        alive = [p for p in alive if p.is_alive()]
        for _ in range(count() - start - told if on_trial else 0):
            told += 1
            on_trial()
