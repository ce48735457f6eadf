"""Provenance: what produced a result (library versions, machine, thread count, git state of the code).

Every trial's ``metrics.json`` carries it, so a number can be traced to the code and the
settings that made it, and results from a modified tree are told apart from clean ones.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def git_state(root: Path) -> dict[str, Any]:
    """Commit and whether the *code* differs from it. Tracked files under results/ do not count: a
    run that rewrites its own committed results table would otherwise mark itself dirty.

    Returns:
        ``{"git_commit": sha or None, "git_dirty": bool or None}`` (None: not a git checkout).
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)results"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 and commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"git_commit": commit, "git_dirty": dirty}


@functools.lru_cache(maxsize=1)
def code_git_state() -> dict[str, Any]:
    """The package's git state, read once per process: a long suite keeps running the code it
    imported, so a commit made meanwhile must not be recorded as the code that ran."""
    return git_state(Path(__file__).resolve().parents[1])


def provenance() -> dict[str, Any]:
    """Versions, machine, threading and determinism settings, and the code's git state."""
    import peft
    import transformers

    info: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "peft": peft.__version__, "python": platform.python_version(),
                            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                            # CPU reductions split work by thread: the same seed is bit-exact only at the same count
                            "torch_threads": torch.get_num_threads(),
                            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    info.update(code_git_state())
    return info


def setup_label(cuda: Any, threads: Any, torch_version: Any) -> str | None:
    """The arithmetic setup of a run, e.g. ``"cpu, 1 thread, torch 2.14.1"``, from its provenance
    fields ``cuda``, ``torch_threads`` and ``torch``; None when threads or torch are not recorded.

    Why these three: the device's kernels, the CPU thread count (reductions split work by thread) and
    torch's version decide the floating-point arithmetic, so the same seed gives the same numbers
    only when all three match. Not recorded, so not told apart: two CPU models.
    """
    def missing(value: Any) -> bool:
        return value is None or value != value or value == ""  # None, NaN (a CSV's empty cell) or ""
    if missing(threads) or missing(torch_version):
        return None
    device = cuda if isinstance(cuda, str) and cuda else "cpu"  # empty on CPU runs
    return f"{device}, {int(threads)} thread{'' if int(threads) == 1 else 's'}, torch {torch_version}"


def row_setup(row: Any) -> str | None:
    """:func:`setup_label` of a result row (a mapping with ``prov.cuda``, ``prov.torch_threads``, ``prov.torch``)."""
    return setup_label(row.get("prov.cuda"), row.get("prov.torch_threads"), row.get("prov.torch"))


def current_setup(threads: int | None = None) -> str:
    """This process's setup as :func:`setup_label` words it (``threads``: what a worker will use)."""
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return setup_label(cuda, threads or torch.get_num_threads(), torch.__version__)
