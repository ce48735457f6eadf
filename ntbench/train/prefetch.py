"""Build the next training batches on a background thread while the current step runs.

Why: on an H200 running 14 micro trials at once, a step took 0.151 s of which 0.060 s went to
building its batch (decoding PNGs and RLE masks, tokenising, padding) on the trainer's thread
while the GPU waited (results/gpu/README.md, 2026-11-28). Building batch k+1 while step k's
kernels run hides that time; PNG decoding, mask decoding and CUDA synchronisation all release the
GIL, so one thread is enough.

Same numbers with or without it: the producer is the only user of the batch function and calls it
in step order, so the batches (and the task mixer's seeded draws behind them) are the ones the
synchronous loop would make. Batch building uses only its own numpy generator, never torch's global
one, so the model's random draws (dropout, the neural adapter's mask noise) are untouched too.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

_DONE = object()  # the producer made every batch it was asked for


class _Failure:
    """An exception raised by the batch function, carried to the consumer's thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


class BatchStream:
    """``steps`` batches from ``make_batch``, built up to ``depth`` ahead on one background thread.

    ``depth`` 0 builds each batch when it is asked for, on the caller's thread. An exception in
    ``make_batch`` is raised by the ``next()`` that would have returned that batch. Use it as a
    context manager (or call :meth:`close`): a loop that stops early must not leave the producer
    blocked on a full queue.
    """

    def __init__(self, make_batch: Callable[[], Any], steps: int, depth: int):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self._make, self._steps, self._depth = make_batch, steps, depth
        self._served = 0
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._thread: threading.Thread | None = None
        if depth > 0 and steps > 0:
            self._thread = threading.Thread(target=self._produce, name="ntbench-batch-prefetch", daemon=True)
            self._thread.start()

    def _put(self, item: Any) -> bool:
        """Put unless stopped; False once the consumer has gone."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        for _ in range(self._steps):
            if self._stop.is_set():
                return
            try:
                batch = self._make()
            except BaseException as exc:  # handed to the consumer, who decides
                self._put(_Failure(exc))
                return
            if not self._put(batch):
                return
        self._put(_DONE)

    def _take(self) -> Any:
        """The next item; an error instead of a hang if the producer is gone without posting one."""
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    if self._queue.empty():
                        raise RuntimeError("the batch prefetch thread ended without a batch or an error") from None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._served >= self._steps:
            raise StopIteration
        if self._thread is None:
            item = self._make()
        else:
            item = self._take()
            if isinstance(item, _Failure):
                self.close()
                raise item.exc
            if item is _DONE:  # cannot happen before `steps` batches; kept as a guard
                raise StopIteration
        self._served += 1
        return item

    def close(self) -> None:
        """Stop the producer and wait for it (it may be finishing one batch)."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # make room, so a producer blocked on a full queue sees the stop
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=0.05)

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
