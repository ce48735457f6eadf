"""`ntbench run --retry-failed`: a plain rerun leaves failed cells alone, the flag runs them again."""
import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ntbench.cli import app

runner = CliRunner()
FAST = {"backbone": "tiny-random", "data": "microworld:40", "adapter": "neural", "adapter_options": {"dz": 8},
        "eval_samples": 2, "eval_generated": False,
        "train": {"steps": 1, "batch_size": 2, "warmup": 0, "tasks": {"reasoning": 1}}}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))


@pytest.fixture
def flaky(monkeypatch):
    """run_trial fails for seed 1 while ``broken["on"]``; records the seeds it was called with."""
    import ntbench.train.trial as trial_module

    real, broken, calls = trial_module.run_trial, {"on": True}, []

    def run_trial(cfg, *args, **kwargs):
        calls.append(cfg.train.seed)
        if broken["on"] and cfg.train.seed == 1:
            raise FloatingPointError("non-finite loss at step 0: nan")
        return real(cfg, *args, **kwargs)
    monkeypatch.setattr(trial_module, "run_trial", run_trial)
    return broken, calls


def _run(path, res, *flags):
    return runner.invoke(app, ["run", str(path), "--results", str(res), *flags])


def test_retry_failed_reruns_only_the_failed_cell(tmp_path, flaky):
    broken, calls = flaky
    path = tmp_path / "rf.yaml"
    path.write_text(yaml.safe_dump({"name": "rf", "defaults": FAST, "axes": {"train.seed": [0, 1]},
                                    "objective": "reasoning.tf_paper_oIoU"}))
    assert _run(path, tmp_path / "res").exit_code == 3
    broken["on"] = False
    again = _run(path, tmp_path / "res")  # a plain rerun: nothing missing, the failure stays
    assert again.exit_code == 3 and "--retry-failed" in again.output
    assert sorted(calls) == [0, 1]
    done = pd.read_csv(tmp_path / "res" / "rf" / "trials.csv")
    seed0 = done[done["param.train.seed"] == 0].trial.item()
    result = _run(path, tmp_path / "res", "--retry-failed", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(calls) == [0, 1, 1]  # the completed cell did not run again
    rows = json.loads(result.stdout)
    assert sorted(r["param.train.seed"] for r in rows) == [0, 1]  # the failed attempt's row is replaced
    assert all(r["status"] == "COMPLETE" for r in rows)
    assert seed0 in {r["trial"] for r in rows}
    assert _run(path, tmp_path / "res", "--retry-failed").exit_code == 0 and len(calls) == 3


def test_retry_failed_in_a_sampled_suite_keeps_the_budget(tmp_path, flaky):
    from ntbench.runner import run_suite
    from ntbench.suite import load_suite

    broken, calls = flaky
    path = tmp_path / "rs.yaml"
    path.write_text(yaml.safe_dump({"name": "rs", "defaults": FAST, "sampler": {"type": "random", "n_trials": 2},
                                    "ranges": {"train.seed": {"type": "int", "low": 1, "high": 1}},
                                    "objective": "reasoning.tf_paper_oIoU"}))
    suite = load_suite(path)
    assert (run_suite(suite, tmp_path / "res").status == "FAIL").all()
    broken["on"] = False
    df = run_suite(suite, tmp_path / "res", retry_failed=True)
    assert len(df) == 2 and (df.status == "COMPLETE").all() and len(calls) == 4
    assert len(run_suite(suite, tmp_path / "res", retry_failed=True)) == 2 and len(calls) == 4
