"""`ntbench run --claims-first`: queue the cells the suite's paper claims compare before the rest of the grid.

Why: a paper grid (activation_patterns: 150 trials, about 7.5 h on 2 cores) rarely finishes in one sitting,
and it runs its cells in the product order of its axes, so a run stopped part-way has answered the claims
whose cells happen to come early. The claims need few of the cells (activation_patterns: 16 of 50), so
queueing those first makes a partial run answer every claim as early as it can; the rest of the grid
follows in the suite's own order when the runner queues what is missing.

How: before the runner prepares the study, the same study (same name, storage and direction) is opened
under the folder's claim lock. The grid's cells are put in this order: the claims' cells, claim by claim,
A then B, the seeds of a cell together; then the other cells in the suite's own order. Each cell nobody ran
or runs is queued. Nothing else changes: the runner then finds every cell taken, the trials are the ones a
plain run would make, and a later plain run resumes the same study.

A run stopped part-way leaves the cells it was running FAIL (interrupted) and the rest waiting; queued
again, a stopped cell would go behind every waiting one (Optuna hands out waiting trials oldest first), so
a grid stopped during its claims would answer them only at its very end, and a stopped cell of the rest
would stay one seed short until then. So the waiting trials are also reordered in place into the order
above: the oldest waiting trial gets the first cell (a trial's cell is its ``fixed_params`` and its
``cell`` label, moved together). Workers take trials only under the same folder lock, so none takes a
trial mid-move; on a database shared with other machines (whose workers hold other folders' locks) the
queue is left as it is while any trial runs there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ClaimsFirstError(ValueError):
    """The suite cannot be ordered by its claims (not a grid, or it judges no paper claims)."""


@dataclass(frozen=True)
class ClaimsQueue:
    """What ``--claims-first`` did: trials queued (cells nobody ran or runs), waiting trials given another
    cell, and why none were, where the queue could not be reordered."""
    queued: int
    moved: int = 0
    not_moved: str = ""


def reorder_waiting(study, storage, keys: list[str], others_may_run: bool) -> tuple[int, str]:
    """Give the waiting grid trials, oldest first, their cells in ``keys`` order (cells not in ``keys``
    last, in the order they had). Returns (how many trials got another cell, why nothing moved or "").
    Call under the folder's claim lock. Only trials queued with a cell alone move: a retry keeps its place
    and cell (a dead worker's retry carries the failed trial's parameters and retry history, which name
    that cell; ``--retry-failed`` names it in ``retry_of``)."""
    import optuna

    waiting = sorted((t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
                      if "cell" in t.user_attrs and "retry_of" not in t.user_attrs and not t.params
                      and "failed_trial" not in t.system_attrs), key=lambda t: t.number)
    rank = {key: i for i, key in enumerate(keys)}
    cells = [(t.user_attrs["cell"], t.system_attrs.get("fixed_params")) for t in waiting]
    wanted = sorted(cells, key=lambda c: (0, rank[c[0]]) if c[0] in rank else (1, 0))  # stable: others keep order
    moves = [(t, cell) for t, cell, now in zip(waiting, wanted, cells) if cell[0] != now[0]]
    if not moves:
        return 0, ""
    if others_may_run and study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        return 0, ("the waiting trials were not reordered: trials are running on this study's database, "
                   "maybe from another machine, whose workers could take a trial while it moves")
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial, (key, params) in moves:  # the storage's public API: a Study sets attributes of its own trial only
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "cell", key)
        storage.set_trial_system_attr(trial_id, "fixed_params", params)
    return len(moves), ""


def claim_cells_first(suite, results: Path, storage_url: str | None) -> ClaimsQueue:
    """Queue the missing cells of ``suite``'s grid and order its waiting trials: the paper claims'
    cells first, in claim order, then the rest in the grid's own order.

    Raises:
        ClaimsFirstError: the suite samples its trials, or declares no (valid) paper claims.
    """
    import optuna

    from ntbench.claims import Claims, has_heartbeat
    from ntbench.paper_table import _in_cell, paper_claims
    from ntbench.records import interrupted
    # the runner's own cell keys and grid order, so that its check for missing cells finds these
    from ntbench.runner import _cell_key, _label_grid, _labels, suite_dir
    from ntbench.storage import make_storage

    if suite.sampler.type != "grid":
        raise ClaimsFirstError(f"--claims-first: suite {suite.name} samples its trials ({suite.sampler.type}); "
                               "only a grid suite has cells to order")
    table, where, problems = paper_claims(suite)
    if table is None or problems:
        raise ClaimsFirstError(f"--claims-first: suite {suite.name} judges no paper claims"
                               + (f" ({where}: {'; '.join(problems)})" if problems else
                                  " (it has no paper: block)"))
    folder = suite_dir(suite, results)
    folder.mkdir(parents=True, exist_ok=True)
    storage = make_storage(storage_url, folder)
    grid = _label_grid(_labels(suite))
    order: list[dict] = []
    for claim in table.claims:
        for cell in (claim.a, claim.b):
            if isinstance(cell, dict):  # a claim against a printed value has one cell
                order += [combo for combo in grid if _in_cell(combo, cell) and combo not in order]
    order += [combo for combo in grid if combo not in order]
    with Claims(folder, storage):
        study = optuna.create_study(study_name=suite.study_name(), storage=storage, load_if_exists=True,
                                    direction=suite.direction)
        taken = {t.user_attrs.get("cell") for t in study.get_trials(deepcopy=False) if not interrupted(t)}
        queued = 0
        for combo in order:
            key = _cell_key(combo)
            if key not in taken:
                study.enqueue_trial(combo, user_attrs={"cell": key})
                taken.add(key)
                queued += 1
        moved, why = reorder_waiting(study, storage, [_cell_key(c) for c in order], has_heartbeat(storage))
    return ClaimsQueue(queued, moved, why)
