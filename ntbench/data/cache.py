"""The data cache: the generated micro world, made once under ``$NTBENCH_HOME/data`` and reused.

A trial, a suite, the evidence run and the micro backbone's preparation all name their data
the same way (:func:`resolve_data`): a folder, ``None`` for the default world, or
``microworld:N`` for a smaller one.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from ntbench.data.microworld import GENERATOR_VERSION, MicroWorldConfig, generate
from ntbench.paths import data_cache_dir

DEFAULT_DATA = {"train": 20000, "val": 500, "test": 500}


def default_data_dir(seed: int = 0, train: int | None = None) -> Path:
    """The default micro world (generated once if missing; a partial folder is never used).

    Args:
        seed: the generator's seed.
        train: training samples (None: 20,000); val and test then get a tenth each, at least 8.

    Returns:
        The dataset folder.
    """
    sizes = dict(DEFAULT_DATA)
    if train is not None:  # a smaller world, e.g. "data: microworld:200" in the smoke suite
        sizes = {"train": train, "val": max(8, train // 10), "test": max(8, train // 10)}
    target = data_cache_dir() / f"microworld-v{GENERATOR_VERSION}-seed{seed}-n{sizes['train']}"
    if (target / "meta.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / ".lock"):  # another process may be generating the same world
        if (target / "meta.json").is_file():
            return target
        # generate() refuses a non-empty folder, and meta.json is its last file: build in a fresh
        # temporary folder, then rename, so a killed generation never looks complete
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
        generate(tmp / "ds", MicroWorldConfig(seed=seed, **sizes))
        if target.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(target)
        (tmp / "ds").rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_data(spec: str | None) -> Path:
    """A dataset folder, or the generated micro world: None (default size) or "microworld:N".

    Raises:
        ValueError: ``microworld:N`` with N not an integer.
    """
    if spec is None:
        return default_data_dir()
    if spec.startswith("microworld:"):
        try:
            return default_data_dir(train=int(spec.split(":", 1)[1]))
        except ValueError:
            raise ValueError(f"data {spec!r}: expected microworld:N with N the number of training samples") from None
    return Path(spec)
