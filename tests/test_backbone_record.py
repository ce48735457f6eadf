"""`ntbench run` records which micro backbone made a suite's rows and refuses to add rows made with
other weights (another CPU's arithmetic makes another backbone from the same recipe and seed)."""
import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import ntbench.backbone_record as backbone_record
from ntbench.cli import app
from ntbench.suite import load_suite

runner = CliRunner()
FAST = {"backbone": "tiny-random", "data": "microworld:40", "adapter": "neural", "adapter_options": {"dz": 8},
        "eval_samples": 2, "eval_generated": False,
        "train": {"steps": 1, "batch_size": 2, "warmup": 0, "tasks": {"reasoning": 1}}}
MINE = {"seed": 0, "sizes": {"llm_layers": 4}, "losses": {"lm_last50": 1.0427, "clip_last50": 0.0897},
        "files": {"llm/model.safetensors": "a" * 64, "vision/model.safetensors": "b" * 64, "llm/config.json": "c" * 64}}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))


def _suite(tmp_path):
    path = tmp_path / "bb.yaml"
    path.write_text(yaml.safe_dump({"name": "bb", "defaults": FAST, "axes": {"train.seed": [0]},
                                    "objective": "reasoning.tf_paper_oIoU"}))
    return path


def _run_with(monkeypatch, manifest, path, res, *flags):
    monkeypatch.setattr(backbone_record, "suite_micro_manifest", lambda suite: manifest)
    return runner.invoke(app, ["run", str(path), "--results", str(res), *flags])


def test_a_suite_without_the_micro_backbone_records_nothing(tmp_path):
    assert backbone_record.suite_micro_manifest(load_suite(_suite(tmp_path))) is None


def test_run_records_the_backbone_and_refuses_other_weights(tmp_path, monkeypatch):
    path, res = _suite(tmp_path), tmp_path / "res"
    result = _run_with(monkeypatch, MINE, path, res)
    assert result.exit_code == 0, result.output
    kept = json.loads((res / "bb" / "backbone.json").read_text())
    # the weights' hashes and the losses; a config file carries library versions, not training
    assert kept["files"] == {"llm/model.safetensors": "a" * 64, "vision/model.safetensors": "b" * 64}
    assert kept["losses"] == MINE["losses"]
    rows = pd.read_csv(res / "bb" / "trials.csv")

    # a library upgrade rewrites config.json's version string: the same backbone, the run goes on
    upgraded = {**MINE, "files": {**MINE["files"], "llm/config.json": "d" * 64}}
    assert _run_with(monkeypatch, upgraded, path, res).exit_code == 0

    # another CPU's arithmetic: other LLM weights and losses. Refused, naming the file, the weights,
    # the losses and the way out; the rows on disk stay as they were
    other = {**MINE, "losses": {**MINE["losses"], "lm_last50": 1.0445},
             "files": {**MINE["files"], "llm/model.safetensors": "e" * 64}}
    result = _run_with(monkeypatch, other, path, res)
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "backbone.json" in said and "llm/model.safetensors" in said and "vision" not in said.split("(")[1]
    assert "lm 1.0427 (here 1.0445)" in said and "--other-backbone" in said
    pd.testing.assert_frame_equal(pd.read_csv(res / "bb" / "trials.csv"), rows)
    assert json.loads((res / "bb" / "backbone.json").read_text()) == kept  # the record is not overwritten

    result = _run_with(monkeypatch, other, path, res, "--other-backbone")
    assert result.exit_code == 0 and "warning" in result.output
    assert json.loads((res / "bb" / "backbone.json").read_text()) == kept


def test_rows_from_before_the_records_get_no_record_of_this_machines_weights(tmp_path, monkeypatch):
    # a folder with rows but no backbone.json predates the records: which weights made its rows is unknown, so
    # a resume must not write this machine's weights as theirs (a later resume would be checked against them)
    path, res = _suite(tmp_path), tmp_path / "res"
    assert _run_with(monkeypatch, MINE, path, res).exit_code == 0
    (res / "bb" / "backbone.json").unlink()
    rows = pd.read_csv(res / "bb" / "trials.csv")
    result = _run_with(monkeypatch, MINE, path, res)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "holds rows from before ntbench recorded which micro backbone made them" in said
    assert not (res / "bb" / "backbone.json").exists()
    pd.testing.assert_frame_equal(pd.read_csv(res / "bb" / "trials.csv"), rows)
