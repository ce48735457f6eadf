"""A suite's records: small user attributes, large per-trial data in files, the activation map file."""
import json

import optuna

from ntbench.runner import make_storage
from tests.conftest import run_tiny_reasoning_suite


def test_user_attributes_keep_paths_and_the_files_hold_the_maps(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    suite, folder = run_tiny_reasoning_suite(tmp_path, "rec")
    study = optuna.load_study(study_name=suite.study_name(), storage=make_storage(None, folder))
    (trial,) = study.trials
    attrs = trial.user_attrs
    assert "activation_frequency" not in attrs["summary"]["metrics"] and "evaluations" not in attrs["summary"]["train"]
    assert attrs["activation_frequency_file"] == f"trials/{trial.number}/activation_frequency.json"
    freq = json.loads((folder / attrs["activation_frequency_file"]).read_text())
    assert len(freq["reasoning"]) >= 1 and len(freq["reasoning"][0]) == 8  # per layer, Dz neurons
    evaluations = json.loads((folder / attrs["evaluations_file"]).read_text())
    assert [e["step"] for e in evaluations] == [1]
    assert trial.intermediate_values.keys() == {1}  # the objective's value stays in Optuna too
    assert len(json.dumps(attrs)) < 4000
    assert json.loads((folder / "activation_frequency.json").read_text()) == {str(trial.number): freq}
