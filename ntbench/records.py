"""What a suite records, and which attempts count.

Each trial's summary is stored as small Optuna user attributes, its large parts (activation maps,
intermediate evaluations) as files in the suite's folder, and the rows in ``trials.csv``. A
cell's trial may be interrupted, superseded by a dead worker's re-run (``ntbench.claims``) or
retried by ``--retry-failed``; the later attempt replaces it in the table and in a TPE budget.

User attributes are stored with every trial (and shown by optuna-dashboard), so they keep
scalars and paths: ``trials/<number>/activation_frequency.json`` holds a trial's map (a frequency per
task, layer and neuron: 4 x 32 x 128 numbers, some 300 kB of JSON, at the paper's scale), ``trials/<number>/evaluations.json`` its
evaluations during training (``eval_every``; the objective's values are also Optuna's
intermediate values).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from ntbench.atomic import write_csv, write_text
from ntbench.claims import superseded
from ntbench.suite import Suite

log = logging.getLogger(__name__)
# fail_reason of a trial stopped by Ctrl-C (and, before heartbeats, of one whose process died):
# its cell is enqueued again by the next run
INTERRUPTED = "interrupted"


def record_trial(trial: optuna.Trial, summary: dict[str, Any], folder: Path | None, duration_s: float) -> None:
    """Store a finished trial's summary, config and duration; large parts go to files under ``folder``.

    Args:
        trial: the running trial.
        summary: ``run_trial``'s result.
        folder: the suite's results folder (None: the large parts are dropped).
        duration_s: wall time of the trial.
    """
    summary = json.loads(json.dumps(summary, default=str))
    metrics, train = summary.get("metrics") or {}, summary.get("train") or {}
    large = {"activation_frequency": metrics.pop("activation_frequency", None),
             "evaluations": train.pop("evaluations", None)}
    for name, data in large.items():
        if data and folder is not None:
            relative = f"trials/{trial.number}/{name}.json"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            write_text(folder / relative, json.dumps(data))
            trial.set_user_attr(f"{name}_file", relative)
    trial.set_user_attr("summary", {k: v for k, v in summary.items() if k != "config"})
    trial.set_user_attr("config", summary["config"])
    trial.set_user_attr("duration_s", duration_s)


def trial_rows(suite: Suite, study: optuna.Study) -> pd.DataFrame:
    """One row per trial: parameters, every metric, status, timing, cost and provenance."""
    rows = []
    trials = study.get_trials(deepcopy=False)
    rerun = replaced(trials)  # a dead worker's or a failed attempt, re-run as a later trial
    for t in trials:
        if t.user_attrs.get("surplus") or t.state == optuna.trial.TrialState.WAITING or t.number in rerun:
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
    freqs = {}
    for t in study.get_trials(deepcopy=False):
        old = (t.user_attrs.get("summary", {}).get("metrics") or {}).get("activation_frequency")  # before files
        name = t.user_attrs.get("activation_frequency_file")
        if old is not None or name is None:
            if old is not None:
                freqs[t.number] = old
            continue
        try:
            freqs[t.number] = json.loads((folder / name).read_text())
        except FileNotFoundError:  # written on another machine sharing the storage
            log.warning("trial %d: %s is not in this folder; its activation map is left out", t.number, name)
    if freqs:
        write_text(folder / "activation_frequency.json", json.dumps(freqs))
    return df


def enqueue_retries(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], grid: bool) -> None:
    """Enqueue again each failed trial that nothing re-runs yet, naming it in ``retry_of``."""
    live = optuna.trial.TrialState
    gone = replaced(trials)
    # a grid cell some other trial completed, runs or waits for needs no retry
    busy = {t.user_attrs.get("cell") for t in trials if t.state != live.FAIL}
    for t in trials:
        if t.state != live.FAIL or t.number in gone or interrupted(t) or t.user_attrs.get("surplus"):
            continue
        if not grid:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        elif t.user_attrs.get("cell") not in busy:
            busy.add(t.user_attrs["cell"])
            cell = t.user_attrs["cell"]
            study.enqueue_trial(json.loads(cell), user_attrs={"cell": cell, "retry_of": t.number})


def retried(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of failed trials that ``--retry-failed`` enqueued again (a later trial re-runs them)."""
    return {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}


def interrupted(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("fail_reason") == INTERRUPTED


def counted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that spend a TPE/random budget: taken (running or done), not re-run elsewhere."""
    gone = replaced(trials)
    return [t for t in trials if t.state != optuna.trial.TrialState.WAITING and t.number not in gone
            and not interrupted(t) and not t.user_attrs.get("surplus")]


def replaced(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of attempts a later trial re-runs: a dead worker's, or a failed one retried."""
    return superseded(trials) | retried(trials)
