"""A finished trial's output folder (``ntbench train --out``) read back: its ``metrics.json`` and its whole model.

Shared by the diagnostics of saved trials (``ntbench breakdown``, ``ntbench eval-noise``); no trial imports it
(``ntbench.freshness.REPORT_ONLY``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def saved_trial(run_dir: str | Path) -> dict[str, Any]:
    """A finished trial's ``metrics.json`` (its config, data folder and numbers).

    Raises:
        RunFolderError: ``run_dir`` is not a finished trial's output folder.
    """
    from ntbench.train.trial import RunFolderError

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunFolderError(f"{run_dir}: no such folder, so not a trial's output folder (as `ntbench train --out` writes)")
    if not (run_dir / "metrics.json").is_file():
        raise RunFolderError(f"{run_dir} is not a trial's output folder (no metrics.json: not written by "
                             "`ntbench train --out`, or the trial did not finish)")
    return json.loads((run_dir / "metrics.json").read_text())


def load_saved_model(run_dir: str | Path, target: torch.device):
    """The whole saved model of a trial, on ``target``.

    Raises:
        RunFolderError: the folder holds no whole model (runs written before ntbench saved one).
    """
    from ntbench.model.allintoken import AllInTokenModel
    from ntbench.train.trial import RunFolderError

    try:
        return AllInTokenModel.from_pretrained(Path(run_dir)).to(target)
    except FileNotFoundError as exc:
        raise RunFolderError(f"{exc}; runs written before ntbench saved the whole model cannot be reloaded") from None
