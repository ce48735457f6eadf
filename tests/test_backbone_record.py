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
    # the first weights stay recorded, marked mixed: verify will not rerun a trial whose weights are unknown
    assert json.loads((res / "bb" / "backbone.json").read_text()) == {**kept, backbone_record.MIXED: True}
    assert _run_with(monkeypatch, other, path, res).exit_code == 0  # a mixed folder was let in on purpose


def test_rows_from_before_the_records_are_taken_as_the_committed_references(tmp_path, monkeypatch):
    # a folder with rows but no backbone.json predates the records: its rows are taken to come from the committed
    # reference (as verify takes them), and a resume never writes this machine's weights as theirs
    path, res = _suite(tmp_path), tmp_path / "res"
    assert _run_with(monkeypatch, MINE, path, res).exit_code == 0
    record, reference = res / "bb" / "backbone.json", tmp_path / "reference.json"
    record.unlink()
    rows = pd.read_csv(res / "bb" / "trials.csv")
    monkeypatch.setattr(backbone_record, "reference_manifest", lambda: reference)

    reference.write_text(json.dumps(MINE))  # the reference's weights: a resume goes on, records nothing
    result = _run_with(monkeypatch, MINE, path, res)
    assert result.exit_code == 0 and "warning" not in result.output and not record.exists()

    other = {**MINE, "losses": {**MINE["losses"], "lm_last50": 1.0445},
             "files": {**MINE["files"], "llm/model.safetensors": "e" * 64}}
    result = _run_with(monkeypatch, other, path, res)  # another CPU's weights: refused, as with a record
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "predate the records" in said and str(reference) in said
    assert "llm/model.safetensors" in said and not record.exists()

    reference.unlink()  # no committed reference (an installed package): nothing says, so a warning
    result = _run_with(monkeypatch, MINE, path, res)
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and "holds rows from before ntbench recorded which micro backbone" in said
    assert not record.exists()
    pd.testing.assert_frame_equal(pd.read_csv(res / "bb" / "trials.csv"), rows)


def test_a_run_killed_before_its_end_keeps_its_record(tmp_path, monkeypatch):
    # the record is written before the first trial, not only at the end: a killed first run (a journal, no
    # trials.csv, no `finally`) must not leave a folder that later reads as predating the records
    import ntbench.cli.suites as suites

    path, res = _suite(tmp_path), tmp_path / "res"
    seen = []

    def killed(*args, **kwargs):  # what is on disk when the trials start
        seen.append((res / "bb" / "backbone.json").is_file())
        raise SystemExit(137)
    monkeypatch.setattr(suites, "_run_suite_with_bars", killed)
    monkeypatch.setattr(backbone_record, "suite_micro_manifest", lambda suite: MINE)
    runner.invoke(app, ["run", str(path), "--results", str(res)])
    assert seen == [True]
