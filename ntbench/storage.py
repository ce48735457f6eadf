"""Optuna storages of a suite: the journal file in its results folder, or a database URL.

``check_storage`` finds a URL's faults before any work, as one line each: a malformed URL or one
whose database driver is not installed is a usage error; a database that cannot be opened (a server
that does not answer, an SQLite file in a missing folder) is a runtime failure.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from ntbench.claims import retry_callback

# (interval, grace period) in seconds: a killed worker's trial is taken over within ~grace + interval
HEARTBEAT = (60, 180)
DRIVERS = {"postgresql": "pip install 'ntbench[postgres]' and write postgresql+psycopg2://..."}


class StorageError(Exception):
    """A storage URL that cannot be used; ``usage`` tells a malformed URL from an unreachable database."""

    def __init__(self, message: str, usage: bool):
        super().__init__(message)
        self.usage = usage


def make_storage(url: str | None, folder: Path, heartbeat: tuple[int, int] = HEARTBEAT):
    """The journal in ``folder`` (default), ``journal:PATH``, or a database URL with heartbeats."""
    if url and not url.startswith("journal:"):
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat[0], grace_period=heartbeat[1],
                                              heartbeat_stale_trial_callback=retry_callback())
    if url:
        return _journal(Path(url[len("journal:"):]))
    folder.mkdir(parents=True, exist_ok=True)
    return _journal(folder / "optuna.journal")


def _journal(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    return JournalStorage(JournalFileBackend(str(path)))


def check_storage(url: str | None) -> None:
    """Check that ``url`` names a storage this machine can open, writing nothing.

    Args:
        url: ``None`` (the journal in the results folder), ``journal:PATH`` or an SQLAlchemy URL.

    Raises:
        StorageError: naming the URL (passwords hidden); ``usage`` is True for a malformed URL or
            a missing driver, False for a database that cannot be reached.
    """
    if url is None:
        return
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        if not url[len("journal:"):].strip():
            raise StorageError(f"--storage {url!r}: expected journal:PATH", usage=True)
        if not path.parent.is_dir():
            raise StorageError(f"--storage {url}: folder {path.parent} not found", usage=False)
        if path.is_dir():
            raise StorageError(f"--storage {url}: {path} is a folder; name a journal file in it", usage=True)
        return
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise StorageError(f"--storage {url!r}: not a storage URL ({_first_line(exc)}); expected journal:PATH, "
                           "sqlite:///PATH or postgresql+psycopg2://USER@HOST/DB", usage=True) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and (parsed.database or ":memory:") == ":memory:":
        raise StorageError(f"--storage {url}: an in-memory database is not shared by the workers and "
                           "is lost at exit; name a file, sqlite:///PATH", usage=True)
    try:
        dialect.import_dbapi()
    except ImportError:
        hint = DRIVERS.get(parsed.get_backend_name(), "install its database driver")
        raise StorageError(f"--storage {shown}: the driver {parsed.get_driver_name()!r} is not installed; "
                           f"{hint}", usage=True) from None
    engine = create_engine(parsed)
    try:
        with engine.connect() as connection:
            inspect(connection).get_table_names()  # reads the schema: an SQLite file that is no database fails here
    except SQLAlchemyError as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        raise StorageError(f"--storage {shown}: cannot open the database ({reason})", usage=False) from None
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
