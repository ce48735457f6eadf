"""Stopping ``ntbench run`` part-way: SIGINT (Ctrl-C, ``kill -INT``) is the clean stop.

A clean stop records each running trial as interrupted (the next run queues its cell again) and leaves
every finished trial in the storage. Two things could spoil it, and this module handles both:

- A shell without job control (a script, ``bash -c '... &'``) starts background commands with SIGINT
  ignored, so ``kill -INT`` would do nothing. An ignored signal stays ignored across exec, a handled one
  does not, so :func:`listen_to_sigint`, called before any worker is spawned, gives the run and its
  workers Python's own Ctrl-C handling.
- ``kill -INT PID`` reaches the parent alone, Ctrl-C at a terminal reaches the whole process group. The
  parent then passes the signal on to workers that did not get it (after a grace period, so that a worker
  already recording its trial is not interrupted a second time), waits for them, and brings
  ``trials.csv`` up to date with the storage, which the run otherwise writes only when it ends.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

GRACE_S = 10.0  # a worker that got the signal records its trial and exits well within this
WAIT_S = 120.0


def listen_to_sigint() -> bool:
    """Let SIGINT stop this process (and the workers it will spawn) if it was started with SIGINT ignored;
    return whether it was."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return False
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return True


def stop_workers(grace_s: float = GRACE_S, wait_s: float = WAIT_S) -> list[int]:
    """After this process got SIGINT: send it to the worker processes still alive after ``grace_s``
    (they did not get it), then wait up to ``wait_s`` for all of them. Returns the pids signalled."""
    kids = multiprocessing.active_children()
    deadline = time.monotonic() + grace_s
    while any(p.is_alive() for p in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    told = []
    for p in kids:
        if p.is_alive() and p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGINT)
                told.append(p.pid)
            except ProcessLookupError:  # it ended meanwhile
                pass
    deadline = time.monotonic() + wait_s
    for p in kids:
        p.join(max(0.0, deadline - time.monotonic()))
    return told


def stopped(folder: Path, storage_url: str | None) -> str:
    """Stop the workers, bring ``folder/trials.csv`` up to date (journal storage), and say what is where."""
    stop_workers()
    alive = [p.pid for p in multiprocessing.active_children()]
    if alive:
        return (f"worker process(es) {alive} did not stop within {WAIT_S:.0f} s; stop them with kill -INT, "
                "then `ntbench run` again resumes the suite")
    resume = "the finished trials are stored; `ntbench run` again resumes with the missing cells"
    if storage_url and not storage_url.startswith("journal:"):
        return resume + f" (`ntbench report` writes {folder / 'trials.csv'} from the database)"
    from ntbench.refresh import refresh_trials_csv

    try:
        written = refresh_trials_csv(folder)
    except Exception as exc:  # noqa: BLE001  (the trials are safe in the storage whatever happens here)
        return resume + f"; {folder / 'trials.csv'} was not updated ({type(exc).__name__}: {exc})"
    return resume + (f"; {folder / 'trials.csv'} now has {written} rows" if written else "")
