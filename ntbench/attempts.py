"""Which attempts of a suite's cells count: a cell's trial may be interrupted, superseded by a
dead worker's re-run (``ntbench.claims``) or retried by ``--retry-failed``; later attempts replace it."""
from __future__ import annotations

import json

import optuna
from optuna.trial import FrozenTrial

from ntbench.claims import superseded

# fail_reason of a trial stopped by Ctrl-C (and, before heartbeats, of one whose process died):
# its cell is enqueued again by the next run
INTERRUPTED = "interrupted"


def enqueue_retries(study: optuna.Study, trials: list[FrozenTrial], grid: bool) -> None:
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


def retried(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that ``--retry-failed`` enqueued again (a later trial re-runs them)."""
    return {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}


def interrupted(t: FrozenTrial) -> bool:
    return t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("fail_reason") == INTERRUPTED


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that spend a TPE/random budget: taken (running or done), not re-run elsewhere."""
    gone = replaced(trials)
    return [t for t in trials if t.state != optuna.trial.TrialState.WAITING and t.number not in gone
            and not interrupted(t) and not t.user_attrs.get("surplus")]


def replaced(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of attempts a later trial re-runs: a dead worker's, or a failed one retried."""
    return superseded(trials) | retried(trials)
