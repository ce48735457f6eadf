"""Take-off statistics (ntbench.bench.takeoff): the definition by hand, and a tiny run end to end."""
import pytest

from ntbench.bench.takeoff import takeoff_statistics, takeoff_step

TINY = {"backbone": "tiny-random", "data": "microworld:16", "eval_samples": 4,
        "train": {"steps": 6, "batch_size": 2}}


def _row(step, reasoning, base=0.3):
    return {"step": step, "reasoning_oIoU": reasoning, "reasoning_all_objects": base}


def test_takeoff_is_the_first_step_above_the_all_objects_mask_by_the_margin():
    rows = [_row(150, 0.45), _row(50, 0.30), _row(100, 0.41), _row(200, 0.39)]  # unordered on purpose
    assert takeoff_step(rows, 0.10) == 100       # 0.41 > 0.30 + 0.10; 0.30 is not
    assert takeoff_step(rows, 0.11) == 150       # 0.41 is not above 0.41
    assert takeoff_step(rows, 0.20) is None


def test_tiny_run_stops_one_evaluation_after_takeoff_and_reproduces():
    # margin -1: every evaluation is above the line, so each seed takes off at its first evaluation
    rows, summary = takeoff_statistics(TINY, [0, 1], every=2, max_steps=6, margin=-1.0, workers=1)
    assert summary["takeoff_step"] == {0: 2, 1: 2} and summary["took_off"] == 2
    assert summary["median_takeoff_step"] == 2
    assert sorted((r["seed"], r["step"]) for r in rows) == [(0, 2), (0, 4), (1, 2), (1, 4)]
    # two worker processes (one thread each) give the numbers of the in-process run: same seed, same numbers
    again, _ = takeoff_statistics(TINY, [1, 0], every=2, max_steps=6, margin=-1.0, workers=2)
    strip = lambda rs: sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rs),  # noqa: E731
                              key=lambda r: (r["seed"], r["step"]))
    assert strip(again) == strip(rows)


def test_no_takeoff_runs_to_max_steps_and_has_no_median():
    rows, summary = takeoff_statistics(TINY, [0], every=2, max_steps=4, margin=1.0, workers=1)
    assert summary["takeoff_step"] == {0: None} and summary["took_off"] == 0
    assert summary["median_takeoff_step"] is None
    assert [r["step"] for r in rows] == [2, 4]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_steps >= every"):
        takeoff_statistics(TINY, [0], every=10, max_steps=5)
