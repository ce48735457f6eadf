"""The suite runner: one Optuna study per suite, resumable, shared by any number of workers.

Grid suites enqueue every missing cell once; workers pop waiting trials (the storage hands each
to exactly one worker), so no cell runs twice and none is missed. A trial left RUNNING by a
killed process is marked failed ("interrupted") and its cell enqueued again, so a rerun after a
crash or ``kill -9`` runs only what is missing. A trial that raises (NaN loss, OOM, any error) is
recorded as FAIL with its reason and the suite goes on.

Storage: by default a journal file in ``<results root>/<suite>/`` (``runs/`` unless told) (no server; safe for several
processes on one machine); ``--storage postgresql://...`` for workers on several machines.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
import yaml

from ntbench.atomic import write_csv, write_text
from ntbench.suite import Suite, label, trial_config

optuna.logging.set_verbosity(optuna.logging.WARNING)
INTERRUPTED = "interrupted"


def suite_dir(suite: Suite, results: Path) -> Path:
    return results / suite.name


def make_storage(url: str | None, folder: Path):
    if url:
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180) \
            if not url.startswith("journal:") else _journal(Path(url[len("journal:"):]))
    folder.mkdir(parents=True, exist_ok=True)
    return _journal(folder / "optuna.journal")


def _journal(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    return JournalStorage(JournalFileBackend(str(path)))


def _labels(suite: Suite) -> dict[str, dict[Any, Any]]:
    return {key: {label(v): v for v in values} for key, values in suite.axes.items()}


def _cell_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def prepare_study(suite: Suite, storage, recover_running: bool = True) -> tuple[optuna.Study, int]:
    """Create/load the study, recover interrupted trials, enqueue missing grid cells.

    ``recover_running``: treat RUNNING trials as left behind by a dead process. True for the
    embedded journal (one runner per machine); False for a shared server, where RUNNING trials
    may belong to live workers on other machines (recover those with ``--recover-running``
    once they are known to be dead).

    Returns the study and the number of trials still to run.
    """
    study = optuna.create_study(study_name=suite.study_name(), storage=storage, load_if_exists=True,
                                direction=suite.direction)
    study.set_user_attr("suite", suite.model_dump())
    live = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(live.RUNNING,)) if recover_running else []:
        # a RUNNING trial at start-up belongs to a process that died (or, on a server, one
        # whose heartbeat stopped): fail it and run its cell again
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", INTERRUPTED)
        study._storage.set_trial_state_values(t._trial_id, live.FAIL)
        if suite.sampler.type == "grid":
            study.enqueue_trial(t.params, user_attrs={"cell": _cell_key(t.params)})
    if suite.sampler.type != "grid":
        done = [t for t in study.get_trials(deepcopy=False)
                if t.state in (live.COMPLETE, live.FAIL) and t.user_attrs.get("fail_reason") != INTERRUPTED]
        return study, max(0, suite.sampler.n_trials - len(done))
    taken = {t.user_attrs.get("cell") for t in study.get_trials(deepcopy=False)
             if t.state != live.FAIL or t.user_attrs.get("fail_reason") != INTERRUPTED}
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


def run_one(trial: optuna.Trial, suite: Suite, progress: Callable | None = None) -> float:
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
        summary = run_trial(cfg, callbacks=[report], progress=progress)
    except Exception as exc:  # recorded on the trial; the suite goes on
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:2000])
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        raise
    trial.set_user_attr("summary", json.loads(json.dumps(
        {k: v for k, v in summary.items() if k != "config"}, default=str)))
    trial.set_user_attr("config", json.loads(json.dumps(summary["config"], default=str)))
    trial.set_user_attr("duration_s", time.perf_counter() - start)
    return _objective_value(summary["metrics"], suite.objective)


def worker_loop(suite: Suite, storage_url: str | None, folder: Path, budget: int | None,
                progress: Callable | None = None, on_trial: Callable | None = None) -> int:
    """Run trials until no grid cell waits (or the TPE budget is spent); returns how many ran."""
    storage = make_storage(storage_url, folder)
    study = optuna.load_study(study_name=suite.study_name(), storage=storage, sampler=_sampler(suite))
    ran = 0
    live = optuna.trial.TrialState
    while True:
        if suite.sampler.type == "grid":
            if not study.get_trials(deepcopy=False, states=(live.WAITING,)):
                break
        else:
            counted = [t for t in study.get_trials(deepcopy=False) if t.state != live.WAITING
                       and t.user_attrs.get("fail_reason") != INTERRUPTED]
            if len(counted) >= suite.sampler.n_trials:
                break
        trial = study.ask()
        if suite.sampler.type == "grid" and "cell" not in trial.user_attrs:
            # another worker took the last waiting cell between our check and ask()
            study.tell(trial, state=live.PRUNED)
            study._storage.set_trial_user_attr(trial._trial_id, "surplus", True)
            break
        try:
            value = run_one(trial, suite, progress)
            study.tell(trial, value)
        except optuna.TrialPruned:
            study.tell(trial, state=live.PRUNED)
        except Exception:
            study.tell(trial, state=live.FAIL)
        ran += 1
        if on_trial:
            on_trial()
    return ran


def _sampler(suite: Suite):
    if suite.sampler.type == "tpe":
        return optuna.samplers.TPESampler(seed=suite.sampler.seed)
    return optuna.samplers.RandomSampler(seed=suite.sampler.seed)  # grid cells are enqueued


def prepare_inputs(suite: Suite) -> None:
    """Generate the micro-world data and prepare the micro backbone if any cell needs them."""
    from ntbench.data.cache import resolve_data

    cells = [{}] + [{k: v} for k, vs in suite.axes.items() for v in vs]
    for cell in cells:
        cfg = trial_config(suite, cell)
        if cfg.data is None or str(cfg.data).startswith("microworld:"):
            resolve_data(cfg.data)
        if cfg.backbone == "micro":
            from ntbench.micro import ensure_micro
            ensure_micro()


def _worker_main(args) -> int:
    suite_json, storage_url, folder = args
    import torch
    torch.set_num_threads(1)
    return worker_loop(Suite(**json.loads(suite_json)), storage_url, Path(folder), None)


def run_suite(suite: Suite, results: Path = Path("runs"), storage_url: str | None = None, workers: int = 1,
              progress: Callable | None = None, on_trial: Callable | None = None,
              on_total: Callable[[int], None] | None = None, recover_running: bool | None = None) -> pd.DataFrame:
    """Run what is missing of ``suite``; write ``trials.csv`` and the resolved suite; return the rows."""
    folder = suite_dir(suite, results)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.resolved.yaml").write_text(yaml.safe_dump(suite.model_dump(), sort_keys=False))
    storage = make_storage(storage_url, folder)
    recover = storage_url is None if recover_running is None else recover_running
    study, todo = prepare_study(suite, storage, recover)
    if on_total:
        on_total(todo)
    if todo:
        prepare_inputs(suite)  # data and backbones are made once here, not raced by the workers
        if workers <= 1:
            worker_loop(suite, storage_url, folder, None, progress=progress, on_trial=on_trial)
        else:
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=_worker_main, args=((suite.model_dump_json(), storage_url, str(folder)),))
                     for _ in range(workers)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            bad = [p.exitcode for p in procs if p.exitcode]
            if bad:
                raise RuntimeError(f"{len(bad)} worker process(es) exited with codes {bad}; "
                                   "rerun the suite to finish the missing cells")
    return write_trials_csv(suite, study, folder)


def trial_rows(suite: Suite, study: optuna.Study) -> pd.DataFrame:
    """One row per trial: parameters, every metric, status, timing, cost and provenance."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus") or t.state == optuna.trial.TrialState.WAITING:
            continue
        s = t.user_attrs.get("summary", {})
        row: dict[str, Any] = {"trial": t.number, "status": t.state.name, **{f"param.{k}": v for k, v in t.params.items()},
                               "objective": t.value, "fail_reason": t.user_attrs.get("fail_reason"),
                               "duration_s": t.user_attrs.get("duration_s")}
        train = s.get("train", {})
        row.update({"step_time_s": train.get("step_time_s"), "peak_memory_mb": train.get("peak_memory_mb"),
                    "tokens_per_s": train.get("tokens_per_s"), "trainable_params": s.get("trainable_params"),
                    "adapter_params": s.get("adapter_params"), "tflops_per_step": train.get("tflops_per_step")})
        for task, metrics in (s.get("metrics") or {}).items():
            if task == "activation_frequency":
                continue
            for key, value in metrics.items():
                if isinstance(value, (int, float)) or value is None:
                    row[f"{task}.{key}"] = value
        for key, value in (s.get("provenance") or {}).items():
            row[f"prov.{key}"] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):  # interrupted attempts are superseded by the rerun of their cell
        df = df[~((df.status == "FAIL") & (df.fail_reason == INTERRUPTED))]
    return df.reset_index(drop=True)


def write_trials_csv(suite: Suite, study: optuna.Study, folder: Path) -> pd.DataFrame:
    df = trial_rows(suite, study)
    write_csv(folder / "trials.csv", df)  # a kill never leaves a half-written file
    freqs = {t.number: t.user_attrs["summary"]["metrics"]["activation_frequency"] for t in study.get_trials(deepcopy=False)
             if "activation_frequency" in (t.user_attrs.get("summary", {}).get("metrics") or {})}
    if freqs:
        write_text(folder / "activation_frequency.json", json.dumps(freqs))
    return df
