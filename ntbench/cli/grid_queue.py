"""The order in which `ntbench run` hands out a grid's cells: a stopped cell keeps its place, and
`--claims-first` puts the cells the suite's paper claims compare before the rest of the grid.

Plain run: Optuna hands out waiting trials oldest first, and the runner queues a cell stopped by Ctrl-C
again *behind* every waiting one, so without help a grid stopped part-way would run that cell last and
leave it one seed short until the grid's very end. ``keep_places`` puts every waiting cell back in the
place it had in the queue (a stopped cell: where it was handed out), so a resumed run goes on exactly
where it stopped.

--claims-first: a paper grid (activation_patterns: 150 trials, about 7.5 h on 2 cores) rarely finishes in one sitting,
and it runs its cells in the product order of its axes, so a run stopped part-way has answered the claims
whose cells happen to come early. The claims need few of the cells (activation_patterns: 16 of 50), so
queueing those first makes a partial run answer every claim as early as it can; the rest of the grid
follows in the suite's own order when the runner queues what is missing.

How: before the runner prepares the study, the same study (same name, storage and direction) is opened
under the folder's claim lock. The grid's cells are put in this order: the claims' cells, claim by claim,
A then B, the seeds of a cell together; then the other cells in the suite's own order. Each cell nobody ran
or runs is queued. Nothing else changes: the runner then finds every cell taken, the trials are the ones a
plain run would make, and a later plain run resumes the same study in the same order (each cell keeps its
place). A cell stopped during the claims goes back among them.

Both reorder the waiting trials in place: the oldest waiting trial gets the first cell (a trial's cell is its ``fixed_params`` and its
``cell`` label, moved together). Workers take trials only under the same folder lock, so none takes a
trial mid-move; on a database shared with other machines (whose workers hold other folders' locks) the
queue is left as it is while any trial runs there. Each waiting trial is then marked as placed, so that a
later resume tells the places a reorder chose from a cell the runner queued again at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


# a waiting trial's system attribute: its cell was put in this place by a reorder (claims-first or a resume),
# so the place is deliberate; a trial the runner queued at the end (a Python caller of ``run_suite``, or an
# ntbench older than this mark, requeueing a stopped cell) lacks it
PLACED = "ntbench_queue_placed"


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
    if others_may_run and study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        return 0, ("the waiting trials were not reordered: trials are running on this study's storage, "
                   "maybe from another folder or machine, whose workers could take a trial while it moves"
                   if moves else "")
    study_id = storage.get_study_id_from_name(study.study_name)
    moved = {t.number: cell for t, cell in moves}
    for trial in waiting:  # the storage's public API: a Study sets attributes of its own trial only
        if trial.number not in moved and trial.system_attrs.get(PLACED):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if trial.number in moved:
            key, params = moved[trial.number]
            storage.set_trial_user_attr(trial_id, "cell", key)
            storage.set_trial_system_attr(trial_id, "fixed_params", params)
        # every waiting trial now holds the place this order gave its cell, moved or not (see ``_places``)
        storage.set_trial_system_attr(trial_id, PLACED, True)
    return len(moves), ""


def claim_cells_first(suite, results: Path, storage_url: str | None) -> ClaimsQueue:
    """Queue the missing cells of ``suite``'s grid and order its waiting trials: the paper claims'
    cells first, in claim order, then the rest in the grid's own order.

    Raises:
        ClaimsFirstError: the suite samples its trials, or declares no (valid) paper claims.
    """
    from ntbench.paper_table import _in_cell, paper_claims
    from ntbench.runner import _label_grid, _labels

    if suite.sampler.type != "grid":
        raise ClaimsFirstError(f"--claims-first: suite {suite.name} samples its trials ({suite.sampler.type}); "
                               "only a grid suite has cells to order")
    table, where, problems = paper_claims(suite)
    if table is None or problems:
        raise ClaimsFirstError(f"--claims-first: suite {suite.name} judges no paper claims"
                               + (f" ({where}: {'; '.join(problems)})" if problems else
                                  " (it has no paper: block)"))
    grid = _label_grid(_labels(suite))
    order: list[dict] = []
    for claim in table.claims:
        for cell in (claim.a, claim.b):
            if isinstance(cell, dict):  # a claim against a printed value has one cell
                order += [combo for combo in grid if _in_cell(combo, cell) and combo not in order]
    order += [combo for combo in grid if combo not in order]
    return _queue_in_order(suite, results, storage_url, order, keep_places=False)


def keep_places(suite, results: Path, storage_url: str | None) -> ClaimsQueue:
    """Queue the missing cells of ``suite``'s grid and put each waiting cell back in the place it had in
    the queue, so that a cell stopped by Ctrl-C runs where it stopped, not after the rest of the grid.
    A suite that samples its trials has no cells: nothing happens."""
    from ntbench.runner import _label_grid, _labels

    if suite.sampler.type != "grid":
        return ClaimsQueue(0)
    return _queue_in_order(suite, results, storage_url, _label_grid(_labels(suite)), keep_places=True)


def _queue_in_order(suite, results: Path, storage_url: str | None, order: list[dict],
                    keep_places: bool) -> ClaimsQueue:
    """Queue the cells of ``order`` nobody ran or runs, in that order, then reorder the waiting trials into
    ``order``, or (``keep_places``) each cell into the place it had (see ``_places``)."""
    import optuna

    from ntbench.claims import Claims, has_heartbeat
    from ntbench.records import interrupted, replaced
    # the runner's own cell keys, so that its check for missing cells finds these
    from ntbench.runner import _cell_key, suite_dir
    from ntbench.storage import make_storage

    folder = suite_dir(suite, results)
    folder.mkdir(parents=True, exist_ok=True)
    storage = make_storage(storage_url, folder)
    keys = [_cell_key(c) for c in order]
    with Claims(folder, storage):
        study = optuna.create_study(study_name=suite.study_name(), storage=storage, load_if_exists=True,
                                    direction=suite.direction)
        trials = study.get_trials(deepcopy=False)
        place = _places(trials)
        # an attempt a later one re-runs does not hold its cell: a retry stopped by Ctrl-C leaves the cell free
        gone = replaced(trials)
        taken = {t.user_attrs.get("cell") for t in trials if not interrupted(t) and t.number not in gone}
        queued = 0
        for combo, key in zip(order, keys):
            if key not in taken:
                study.enqueue_trial(combo, user_attrs={"cell": key})
                taken.add(key)
                queued += 1
        if keep_places:  # stable: cells never queued before keep ``order``, after the others
            keys.sort(key=lambda k: place.get(k, len(trials)))
        # a journal or database named by --storage may be shared with other folders, whose workers take
        # trials under their own folder's lock
        moved, why = reorder_waiting(study, storage, keys, storage_url is not None or has_heartbeat(storage))
    return ClaimsQueue(queued, moved, why)


def _places(trials) -> dict[str, int]:
    """Each cell's place in the queue, as a trial number. A cell stopped by Ctrl-C had the place of its
    latest attempt (Optuna handed it out then, before every trial still waiting: those are younger, or were
    oldest-first behind it); the first attempt's number would be wrong once ``--claims-first`` has moved
    the cell since. A waiting trial a reorder placed (:data:`PLACED`) holds its cell's place, even one behind
    the cell's stopped attempt: the reorder came later and chose it. An unplaced waiting trial was queued at
    the end, maybe for a stopped cell, so the cell keeps the earlier of the two."""
    from optuna.trial import TrialState

    from ntbench.records import interrupted

    place: dict[str, int] = {}
    for t in trials:
        if interrupted(t):
            place[t.user_attrs.get("cell")] = max(t.number, place.get(t.user_attrs.get("cell"), -1))
    for t in trials:
        if t.state == TrialState.WAITING and "cell" in t.user_attrs:
            cell = t.user_attrs["cell"]
            place[cell] = t.number if t.system_attrs.get(PLACED) else min(t.number, place.get(cell, t.number))
    return place
