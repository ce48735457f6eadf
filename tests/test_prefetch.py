"""The batch prefetcher: the batches, their order and the errors are those of the synchronous loop."""
import threading

import pytest
import torch

from ntbench.train.prefetch import BatchStream
from ntbench.train.trainer import TrainConfig


def _counter(fail_at: int | None = None):
    calls = []

    def make():
        if fail_at is not None and len(calls) == fail_at:
            raise KeyError("sample 7: bad mask")
        calls.append(len(calls))
        return calls[-1]
    return make, calls


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_batches_come_in_order_and_stop_after_steps(depth):
    make, calls = _counter()
    with BatchStream(make, steps=25, depth=depth) as stream:
        got = list(stream)
    assert got == list(range(25))
    assert len(calls) == 25  # never a batch more than the loop asked for


@pytest.mark.parametrize("depth", [0, 2])
def test_an_error_in_batch_building_reaches_the_step_that_needed_that_batch(depth):
    make, _ = _counter(fail_at=3)
    with BatchStream(make, steps=10, depth=depth) as stream:
        assert [next(stream) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(KeyError, match="bad mask"):
            next(stream)


def test_stopping_early_ends_the_producer_without_hanging():
    make, calls = _counter()
    before = threading.active_count()
    stream = BatchStream(make, steps=1000, depth=2)
    assert next(stream) == 0
    stream.close()
    assert threading.active_count() == before  # the producer thread is gone
    # it stopped near where the consumer did: one served, at most depth queued, one in flight
    assert len(calls) <= 1 + 2 + 1 + 1


def test_prefetch_depth_defaults_by_device_and_explicit_values_win():
    assert TrainConfig().prefetch_depth(torch.device("cpu")) == 0
    assert TrainConfig().prefetch_depth(torch.device("cuda")) == 2
    assert TrainConfig(prefetch=3).prefetch_depth(torch.device("cpu")) == 3
    assert TrainConfig(prefetch=0).prefetch_depth(torch.device("cuda")) == 0
    with pytest.raises(ValueError):
        TrainConfig(prefetch=-1)
    with pytest.raises(ValueError):
        BatchStream(lambda: 0, steps=3, depth=-1)


def test_an_error_in_the_step_stops_a_producer_blocked_on_a_full_queue():
    make, calls = _counter()
    before = threading.active_count()
    with pytest.raises(FloatingPointError):
        with BatchStream(make, steps=1000, depth=1) as stream:
            next(stream)
            while len(calls) < 3:  # the producer has filled the queue and waits to put the next batch
                threading.Event().wait(0.01)
            raise FloatingPointError("non-finite loss at step 1")
    assert threading.active_count() == before
