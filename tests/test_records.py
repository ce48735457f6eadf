"""A suite's records: small user attributes, large per-trial data in files, the activation map file."""
import json

import optuna
import yaml

from ntbench.runner import make_storage, run_suite
from ntbench.suite import load_suite


def test_user_attributes_keep_paths_and_the_files_hold_the_maps(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump({
        "name": "rec", "objective": "reasoning.tf_paper_oIoU", "axes": {"train.seed": [0]},
        "defaults": {"backbone": "tiny-random", "data": "microworld:40", "eval_samples": 2, "eval_generated": False,
                     "adapter_options": {"dz": 8},
                     "train": {"steps": 2, "batch_size": 2, "warmup": 0, "eval_every": 1, "tasks": {"reasoning": 1}}}}))
    suite = load_suite(path)
    run_suite(suite, tmp_path / "res")
    folder = tmp_path / "res" / "rec"
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
