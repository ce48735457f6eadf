"""Who owns a RUNNING trial: runs sharing one study take each cell once and take over only the
trials of workers that died.

Optuna marks a trial RUNNING when a worker takes it, and records no owner. How a live owner is
told from a dead one depends on the storage:

- ``RDBStorage`` (PostgreSQL, SQLite): Optuna's heartbeat. ``study.optimize`` records it every
  ``heartbeat_interval`` seconds while the trial runs (it is only sent from ``optimize``, never
  for ``ask``/``tell``); ``optuna.storages.fail_stale_trials`` fails a trial whose heartbeat is
  older than ``grace_period``, and the storage's ``RetryHeartbeatStaleTrialCallback`` enqueues
  its cell again. Workers may sit on several machines.
- ``JournalStorage``: Optuna gives it no heartbeat. Its file is on one machine, so the owner holds
  an ``flock`` on ``<folder>/claims/<study>-<trial number>.lock`` while the trial runs. The kernel
  drops it when the process ends, however it ends (``kill -9`` too), so a RUNNING trial whose lock
  can be taken belongs to a dead process: known at once, with no grace period to wait out.

Taking a trial (recovery, the "is anything left?" check, ``ask``, the lease) happens under one
lock per results folder, so two processes on one folder never both enqueue a cell, never take
the same one, and never see a trial RUNNING before its owner holds its lease.
File locks are POSIX (``fcntl``), like the rest of the suite runner's process handling.
"""
from __future__ import annotations

import fcntl
import os
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

# a cell whose worker dies this often (say, killed for host memory) is left FAIL, not retried forever
MAX_RETRY = 3


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    """Optuna's callback that enqueues a stale trial's parameters and user attributes again.

    (``RetryFailedTrialCallback`` is its deprecated alias since Optuna 4.9.)
    """
    with warnings.catch_warnings():  # experimental since 2.8 and unchanged since: not news to a user
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of trials that died and were enqueued again: a later trial re-runs their cell."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


def has_heartbeat(storage) -> bool:
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


class Lease:
    """Held by the worker running a trial, from ``ask`` until after ``tell``."""

    def __init__(self, path: Path | None = None, fd: int | None = None):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd is not None:
            assert self.path is not None
            self.path.unlink(missing_ok=True)  # the trial is told: nobody needs to probe it again
            os.close(self.fd)  # closing drops the flock
            self.fd = None


class Claims:
    """The claim lock of one results folder and the leases of the trials run from it."""

    def __init__(self, folder: Path, storage):
        self.dir = folder / "claims"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.heartbeat = has_heartbeat(storage)
        self._retry = retry_callback()
        self._claim_fd: int | None = None

    def acquire(self) -> None:
        """Wait for the folder's claim lock (held for milliseconds: recovery, a check, ``ask``)."""
        if self._claim_fd is None:
            fd = os.open(self.dir / "claim.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._claim_fd = fd

    def release(self) -> None:
        """Let the claim lock go; safe to call when it is not held."""
        if self._claim_fd is not None:
            os.close(self._claim_fd)
            self._claim_fd = None

    def __enter__(self) -> "Claims":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _lock_path(self, study: optuna.Study, number: int) -> Path:
        return self.dir / f"{study.study_name}-{number}.lock"

    def lease(self, study: optuna.Study, number: int) -> Lease:
        """Own trial ``number``, just taken by ``ask`` under the claim lock.

        With heartbeats, ``study.optimize`` keeps the trial alive and no lock is needed.

        Raises:
            RuntimeError: another process holds the trial's lock (a trial number taken twice).
        """
        if self.heartbeat:
            return Lease()
        path = self._lock_path(study, number)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"trial {number} of {study.study_name} is already held by another process") from None
        return Lease(path, fd)

    def recover(self, study: optuna.Study, force: bool = False) -> list[int]:
        """Fail the RUNNING trials of dead workers and enqueue their cells again (call under the claim lock).

        Args:
            study: the suite's study.
            force: take over every RUNNING trial, live owner or not (for trials that no heartbeat
                vouches for, e.g. left on a server by an ntbench without heartbeats).

        Returns:
            The numbers of the trials taken over.
        """
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if self.heartbeat and not force:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)  # the storage's retry callback enqueues them again
            now = {t.number: t.state for t in study.get_trials(deepcopy=False)}
            return [n for n in running if now[n] == TrialState.FAIL]
        taken = []
        for number in running:
            path = self._lock_path(study, number)
            fd = None if self.heartbeat else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            locked = False
            try:
                if fd is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        locked = True
                    except BlockingIOError:
                        if not force:
                            continue  # a live process runs it
                # read again now that the lock is ours: an owner tells before it lets go
                if _trial(study, number).state != TrialState.RUNNING:
                    continue
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
                self._retry(study, _trial(study, number))
                taken.append(number)
            finally:
                if locked:  # only a lock we hold is ours to remove: the owner's must stay where it is
                    path.unlink(missing_ok=True)
                if fd is not None:
                    os.close(fd)
        return taken


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)
