"""`ntbench eval-noise`: how much the evaluation set alone moves the difference between two saved trials."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ntbench.cli import app
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.eval_noise import paired_bootstrap
from ntbench.train.trial import TrialConfig, run_trial

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two two-step neural trials on tiny-random (β 0.3 and 0.7, one seed) scoring 12 samples of each task."""
    data = generate(tmp_path_factory.mktemp("mw") / "mw", MicroWorldConfig(seed=3, train=8, val=12, test=16), workers=1)
    out = {}
    for beta in (0.3, 0.7):
        cfg = TrialConfig(backbone="tiny-random", data=str(data), adapter="neural",
                          adapter_options={"dz": 8, "beta": beta}, eval_samples=12, eval_generated=False,
                          train={"steps": 2, "batch_size": 4, "lr": 1e-2, "tasks": {"reasoning": 1, "referring": 1}})
        out[beta] = tmp_path_factory.mktemp("run") / f"b{beta}"
        run_trial(cfg, out[beta])
    return out, data


def test_the_samples_add_up_to_each_trials_own_oiou(runs, tmp_path):
    import pandas as pd

    out, _ = runs
    table = tmp_path / "per_sample.csv.gz"
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(out[0.7]), "--json", "--resamples", "500",
                                 "--per-sample", str(table)])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    rows = pd.read_csv(table)  # the per-sample values, summed per task, give the same oIoUs
    assert sorted(rows.task.unique()) == ["reasoning", "referring"] and (rows.groupby("task").size() == 12).all()
    for task, part in rows.groupby("task"):
        assert part.inter_a.sum() / part.union_a.sum() == got["tasks"][task]["oIoU_a"]
        assert part.inter_b.sum() / part.union_b.sum() == got["tasks"][task]["oIoU_b"]
    assert set(got["tasks"]) == {"reasoning", "referring"} and got["own_samples"]
    for row in got["tasks"].values():
        # the per-sample intersections and unions, summed, give each trial's own teacher-forced oIoU
        assert row["oIoU_a"] == pytest.approx(row["trial_a"], abs=1e-9)
        assert row["oIoU_b"] == pytest.approx(row["trial_b"], abs=1e-9)
        assert row["delta"] == pytest.approx(row["trial_a"] - row["trial_b"], abs=1e-9)
        assert row["samples"] == 12 and row["sd"] >= 0 and row["low"] <= row["high"]
    only = runner.invoke(app, ["eval-noise", str(out[0.3]), str(out[0.7]), "--task", "reasoning", "--json"])
    assert only.exit_code == 0 and list(json.loads(only.stdout)["tasks"]) == ["reasoning"]
    table = runner.invoke(app, ["eval-noise", str(out[0.3]), str(out[0.7])])
    said = " ".join(table.output.split())
    assert table.exit_code == 0 and "another evaluation set of this size" in said and "identical" in said


def test_a_trial_against_itself_differs_by_nothing_on_every_resample(runs):
    out, data = runs
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(out[0.3]), "--json", "--data", str(data),
                                 "--split", "test", "--samples", "16"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert not got["own_samples"] and got["split"] == "test"
    for row in got["tasks"].values():
        assert row["delta"] == row["sd"] == row["low"] == row["high"] == 0.0
        assert row["sd_a"] == row["sd_b"] > 0 and "trial_a" not in row  # other samples: no trial number to match


def test_the_bootstrap_sd_of_a_mean_difference_matches_the_textbook_one():
    # one-pixel unions: oIoU is the mean of 0/1 hits, so the resampled difference of two oIoUs on the same samples
    # has sd sqrt(var(a - b) / n) (population variance: the bootstrap's)
    rng = np.random.default_rng(7)
    n = 400
    a, b = rng.random(n) < 0.6, rng.random(n) < 0.5
    got = paired_bootstrap(a, np.ones(n), b, np.ones(n), resamples=20000, seed=1)
    assert got["delta"] == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert got["sd"] == pytest.approx(np.sqrt(np.var(a.astype(float) - b) / n), rel=0.03)
    assert got["sd_a"] == pytest.approx(np.sqrt(np.var(a.astype(float)) / n), rel=0.03)
    assert got["low"] < got["delta"] < got["high"]
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap(a, np.ones(n), b[:-1], np.ones(n - 1))


def test_resampling_in_blocks_draws_what_one_draw_would(monkeypatch):
    # large evaluation sets resample in blocks of rows; the numbers must not depend on the block size
    import ntbench.eval_noise as eval_noise

    rng = np.random.default_rng(11)
    inter, union = rng.integers(0, 50, (2, 300)), rng.integers(50, 100, (2, 300))
    whole = paired_bootstrap(inter[0], union[0], inter[1], union[1], resamples=1000, seed=4)
    monkeypatch.setattr(eval_noise, "BLOCK_VALUES", 300 * 7)  # 7 resamples a block, the last one short
    assert paired_bootstrap(inter[0], union[0], inter[1], union[1], resamples=1000, seed=4) == whole
    # and what one draw of every index at once gives
    draw = np.random.default_rng(4).integers(0, 300, size=(1000, 300))
    d = inter[0][draw].sum(1) / union[0][draw].sum(1) - inter[1][draw].sum(1) / union[1][draw].sum(1)
    assert whole["sd"] == float(np.std(d, ddof=1))


def test_bad_input_is_refused_with_the_reason(runs, tmp_path):
    out, _ = runs
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(out[0.7]), "--task", "captioning"])
    assert result.exit_code == 2 and "allowed: reasoning, referring" in " ".join(result.output.split())
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(tmp_path)])
    assert result.exit_code == 2 and "no metrics.json" in " ".join(result.output.split())
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such folder" in " ".join(result.output.split())
    other = json.loads((out[0.7] / "metrics.json").read_text())
    other["config"]["eval_samples"] = 8  # scored another set than A: which one to use must be said
    (tmp_path / "metrics.json").write_text(json.dumps(other))
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(tmp_path)])
    assert result.exit_code == 2 and "--data, --split and --samples" in " ".join(result.output.split())


def test_each_samples_overlaps_are_its_own_across_batches(runs):
    # several batches (5 samples each): a mask credited to another sample, or an offset lost between batches,
    # breaks inter <= target area <= union for some sample (the target area from each sample's own masks alone)
    import torch

    from ntbench.data.io import SampleDataset
    from ntbench.eval.evaluate import build_items
    from ntbench.eval_noise import sample_overlaps
    from ntbench.model.batching import collate
    from ntbench.saved_trial import load_saved_model

    out, data = runs
    model = load_saved_model(out[0.3], torch.device("cpu"))
    dataset = SampleDataset(data, "test")
    for task in ("reasoning", "referring"):
        got = sample_overlaps(model, dataset, task, 16, batch_size=5)
        items = build_items(dataset, task, 16, 0)
        assert got["ids"] == [it.sample_id for it in items] and len(items) == 16
        areas = [float(collate([it], model.tokenizer)["seg_masks"].sum()) for it in items]
        assert len(set(areas)) > 3  # targets of different sizes, so a swap shows
        for inter, area, union in zip(got["inter"], areas, got["union"]):
            assert inter <= area <= union


def test_a_paired_resample_keeps_shared_samples_together():
    # B equals A but on 10 of 400 samples: the paired difference moves only through those, so its sd is far below
    # that of either oIoU (an unpaired resampling would give about sqrt(2) times theirs)
    rng = np.random.default_rng(3)
    a = (rng.random(400) < 0.5).astype(float)
    b = a.copy()
    b[:10] = 1 - b[:10]
    got = paired_bootstrap(a, np.ones(400), b, np.ones(400), resamples=4000)
    assert got["sd"] < 0.4 * got["sd_a"]
    assert got["sd"] == pytest.approx(np.sqrt(np.var(a - b) / 400), rel=0.05)


def test_what_cannot_be_scored_is_named(runs, tmp_path):
    out, _ = runs
    lacking = json.loads((out[0.7] / "metrics.json").read_text())
    del lacking["metrics"]["referring"]  # a trial that did not score referring
    (tmp_path / "metrics.json").write_text(json.dumps(lacking))
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(tmp_path), "--task", "referring"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "referring (scored by" in said and str(out[0.3]) in said
    result = runner.invoke(app, ["eval-noise", str(out[0.3]), str(out[0.7]), "--per-sample", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output
