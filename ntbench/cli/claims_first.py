"""`ntbench run --claims-first`: queue the cells the suite's paper claims compare before the rest of the grid.

Why: a paper grid (activation_patterns: 150 trials, about 7.5 h on 2 cores) rarely finishes in one sitting,
and it runs its cells in the product order of its axes, so a run stopped part-way has answered the claims
whose cells happen to come early. The claims need few of the cells (activation_patterns: 16 of 50), so
queueing those first makes a partial run answer every claim as early as it can; the rest of the grid
follows in the suite's own order when the runner queues what is missing.

How: before the runner prepares the study, the same study (same name, storage and direction) is opened
under the folder's claim lock, and each missing cell of a claim is queued, claim by claim, A then B, the
seeds of a cell together. Nothing else changes: the runner then finds these cells taken and queues the
others, the trials are the ones a plain run would make, and a later plain run resumes the same study.
Cells already queued (a run started earlier) keep their place.
"""
from __future__ import annotations

from pathlib import Path


class ClaimsFirstError(ValueError):
    """The suite cannot be ordered by its claims (not a grid, or it judges no paper claims)."""


def claim_cells_first(suite, results: Path, storage_url: str | None) -> int:
    """Queue the missing grid cells of ``suite``'s paper claims in claim order; return how many were queued.

    Raises:
        ClaimsFirstError: the suite samples its trials, or declares no (valid) paper claims.
    """
    import optuna

    from ntbench.claims import Claims
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
    return queued
