"""The data cache: the generated micro world, made once under ``$NTBENCH_HOME/data`` and reused.

A trial, a suite, the evidence run and the micro backbone's preparation all name their data
the same way (:func:`resolve_data`): a folder, ``None`` for the default world, or
``microworld:N`` for a smaller one.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from filelock import FileLock

from ntbench.data.microworld import GENERATOR_VERSION, MicroWorldConfig, generate
from ntbench.paths import data_cache_dir

DEFAULT_DATA = {"train": 20000, "val": 500, "test": 500}


def _world(seed: int, train: int | None) -> tuple[Path, dict[str, int]]:
    sizes = dict(DEFAULT_DATA)
    if train is not None:  # a smaller world, e.g. "data: microworld:200" in the smoke suite
        sizes = {"train": train, "val": max(8, train // 10), "test": max(8, train // 10)}
    return data_cache_dir() / f"microworld-v{GENERATOR_VERSION}-seed{seed}-n{sizes['train']}", sizes


def default_data_dir(seed: int = 0, train: int | None = None,
                     progress: Callable[[int], None] | None = None) -> Path:
    """The default micro world (generated once if missing; a partial folder is never used).

    Args:
        seed: the generator's seed.
        train: training samples (None: 20,000); val and test then get a tenth each, at least 8.
        progress: called with the number of samples just generated (only when it generates).

    Returns:
        The dataset folder.
    """
    target, sizes = _world(seed, train)
    if (target / "meta.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / ".lock"):  # another process may be generating the same world
        if (target / "meta.json").is_file():
            return target
        # generate() refuses a non-empty folder, and meta.json is its last file: build in a fresh
        # temporary folder, then rename, so a killed generation never looks complete
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
        generate(tmp / "ds", MicroWorldConfig(seed=seed, **sizes), progress=progress)
        if target.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(target)
        (tmp / "ds").rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _train_size(spec: str) -> int:
    try:
        return int(spec.split(":", 1)[1])
    except ValueError:
        raise ValueError(f"data {spec!r}: expected microworld:N with N the number of training samples") from None


def resolve_data(spec: str | None, progress: Callable[[int], None] | None = None) -> Path:
    """A dataset folder, or the generated micro world: None (default size) or "microworld:N".

    Args:
        spec: the data field of a trial.
        progress: see ``default_data_dir``.

    Raises:
        ValueError: ``microworld:N`` with N not an integer.
    """
    if spec is None:
        return default_data_dir(progress=progress)
    if spec.startswith("microworld:"):
        return default_data_dir(train=_train_size(spec), progress=progress)
    return Path(spec)


def samples_to_generate(spec: str | None) -> int:
    """How many samples ``resolve_data(spec)`` would generate now (0: a folder, or a world already made).

    Raises:
        ValueError: as ``resolve_data``.
    """
    if spec is not None and not spec.startswith("microworld:"):
        return 0
    target, sizes = _world(0, None if spec is None else _train_size(spec))
    return 0 if (target / "meta.json").is_file() else sum(sizes.values())
