"""Atomic writes: a reader (or a rerun after a kill) sees the old file or the whole new one, never half.

Every writer goes through a ``.partial`` sibling that is renamed over the target when complete;
a rename within one folder is atomic on POSIX. A folder is built the same way and appears at once.
"""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open ``path.partial`` for writing; on a clean exit it replaces ``path``, on an error it is removed.

    Args:
        path: the file the finished content ends up in.
        mode: ``"w"`` (text, UTF-8) or ``"wb"``.
    """
    path = Path(path)
    tmp = _partial(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any, **dumps) -> Path:
    """Write ``data`` as JSON atomically (indented, sorted keys unless ``dumps`` says otherwise)."""
    options = {"indent": 2, "sort_keys": True, "default": str} | dumps
    return write_text(path, json.dumps(data, **options) + "\n")


def write_csv(path: str | Path, frame) -> Path:
    """Write a pandas DataFrame as CSV (no index) atomically."""
    with atomic_open(path) as fh:
        frame.to_csv(fh, index=False)
    return Path(path)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Build a folder in ``target.partial`` (made anew) and move it to ``target`` on a clean exit.

    An existing ``target`` is replaced only once the new folder is complete; on an error the
    partial folder stays for inspection and is cleared by the next attempt.
    """
    target = Path(target)
    work = _partial(target)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    yield work
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
