"""The real CLI, end to end, on tiny inputs."""
import json

from typer.testing import CliRunner

from ntbench.cli import app

runner = CliRunner()


def test_list_json_names_everything():
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data["adapters"]) == {"neural", "lora", "prefix", "ia3", "frozen", "full"}
    assert {"gaussian", "top2beta", "level", "distribution", "dense"} <= set(data["strategies"])


def test_cost_on_a_config_file(tmp_path):
    from transformers import LlamaConfig
    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=100).save_pretrained(tmp_path)
    result = runner.invoke(app, ["cost", "--config", str(tmp_path), "--adapters", "neural,lora",
                                 "--batch", "1", "--seq-len", "8", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["adapter"]: r for r in json.loads(result.stdout)}
    assert rows["neural"]["trainable_params"] == 2 * (64 * 128 + 128 * 128)
    assert rows["lora"]["trainable_params"] == 2 * 2 * 8 * (64 + 64)


def test_cost_unknown_adapter_exits_2():
    result = runner.invoke(app, ["cost", "--adapters", "neural,lorra"])
    assert result.exit_code == 2
    assert "Did you mean 'lora'" in result.output


def test_data_make_and_stats(tmp_path):
    out = tmp_path / "mw"
    result = runner.invoke(app, ["data", "make", "--out", str(out), "--train", "30", "--val", "5", "--test", "5",
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "train" / "images").glob("*.png"))) == 30
    result = runner.invoke(app, ["data", "stats", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "stats.png").stat().st_size > 1000
    again = runner.invoke(app, ["data", "make", "--out", str(out)])
    assert again.exit_code == 2 and "not empty" in again.output


def test_data_stats_on_a_non_dataset(tmp_path):
    result = runner.invoke(app, ["data", "stats", str(tmp_path)])
    assert result.exit_code == 2 and "meta.json not found" in result.output


def test_evidence_task_mix_is_checked_before_any_training(tmp_path):
    bad = runner.invoke(app, ["evidence", "--seeds", "0", "--steps", "1", "--tasks", "referring:x", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "must be a number" in bad.output
    unknown = runner.invoke(app, ["evidence", "--seeds", "0", "--steps", "1", "--tasks", "refering:2",
                                  "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "referring" in unknown.output
    assert not (tmp_path / "trials.csv").exists()


def test_train_passes_the_segmentation_loss_and_whitening_options(tmp_path):
    from safetensors.torch import load_file

    from ntbench.data.microworld import MicroWorldConfig, generate
    data = generate(tmp_path / "mw", MicroWorldConfig(seed=3, train=8, val=4, test=0), workers=1)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data), "--steps", "2", "--batch-size", "2",
                                 "--eval-samples", "2", "--tasks", "referring", "--lambda-bce", "1.5",
                                 "--no-whiten-state", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["lambda_bce"] == 1.5 and config["whiten_state"] is False
    assert not any("whiten" in k for k in load_file(str(out / "heads.safetensors")))
    result = runner.invoke(app, ["train", "--data", str(data), "--steps", "1", "--lambda-bce", "-1", "--out", str(out)])
    assert result.exit_code != 0 and "lambda-bce" in result.output


def test_train_takes_any_field_by_dotted_key_and_a_config_file(tmp_path):
    from ntbench.data.microworld import MicroWorldConfig, generate
    data = generate(tmp_path / "mw", MicroWorldConfig(seed=3, train=8, val=2, test=4), workers=1)
    cfg = tmp_path / "trial.yaml"
    cfg.write_text("eval_samples: 2\ntrain: {steps: 2, batch_size: 2, tasks: {referring: 1}}\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data), "--config", str(cfg), "-s", "eval_split=test",
                                 "-s", "train.warmup=1", "-s", "eval_generated=false", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["config"]["eval_split"] == "test" and summary["config"]["train"]["warmup"] == 1
    assert summary["config"]["train"]["steps"] == 2 and summary["metrics"]["referring"]["n_samples"] == 2
    bad = runner.invoke(app, ["train", "--data", str(data), "-s", "train.stepz=3", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "stepz" in bad.output and not (tmp_path / "x").exists()
    missing = runner.invoke(app, ["train", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_version_bad_flag_and_missing_paths_exit_cleanly(tmp_path):
    from importlib.metadata import version

    v = runner.invoke(app, ["--version"])
    assert v.exit_code == 0 and version("ntbench") in v.output
    assert runner.invoke(app, ["train", "--no-such-flag"]).exit_code == 2
    for args, named in ((["--backbone", "/nonexistent/llm"], "/nonexistent/llm"), (["--data", str(tmp_path / "nope")], "nope")):
        result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "run")])
        assert result.exit_code == 2 and named in result.output and "not found" in result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, not pydantic's dump
        assert "preset" not in result.output and not (tmp_path / "run").exists()


def test_suite_names_are_identifiers_and_beta_must_be_a_number(tmp_path):
    import pytest
    from pydantic import ValidationError

    from ntbench.adapters.options import NeuralOptions
    from ntbench.suite import Suite

    with pytest.raises(ValidationError, match="name"):
        Suite(name="../escaped")
    with pytest.raises(ValidationError, match="beta"):
        NeuralOptions(beta=True)  # YAML's `true` is not β = 1.0
    assert NeuralOptions(beta=1).beta == 1.0


def test_train_bad_inputs_give_one_line_errors_before_any_work(tmp_path):
    """Issue 15 part 4: a file as --out, a device this machine lacks, a missing strategy plugin file
    and an empty dataset each exit 2 with the value named, before any training; nothing is written."""
    import torch

    from ntbench.data.microworld import MicroWorldConfig, generate

    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    result = runner.invoke(app, ["train", "--steps", "1", "--out", str(a_file)])
    assert result.exit_code == 2 and "is not a folder" in result.output and a_file.read_text() == "keep me"
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["train", "--steps", "1", "--device", "cuda", "--out", str(tmp_path / "r1")])
        assert result.exit_code == 2 and "no CUDA GPU" in result.output and not (tmp_path / "r1").exists()
    result = runner.invoke(app, ["train", "--steps", "1", "-o", f"strategy={tmp_path / 'missing.py'}",
                                 "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "missing.py" in result.output and "adapter_options.strategy" in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    generate(tmp_path / "empty", MicroWorldConfig(train=0, val=0, test=0))
    result = runner.invoke(app, ["train", "--steps", "1", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r3")])
    assert result.exit_code == 2 and "no samples in split 'train'" in result.output
    assert not any((tmp_path / r).exists() for r in ("r2", "r3"))


def test_train_that_diverges_says_so_and_exits_1(tmp_path):
    result = runner.invoke(app, ["train", "--steps", "3", "--lr", "1e12", "--eval-samples", "1",
                                 "--tasks", "referring", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "training diverged" in result.output and "non-finite loss" in result.output
    assert "Traceback" not in result.output


def test_data_make_refuses_an_empty_dataset(tmp_path):
    result = runner.invoke(app, ["data", "make", "--out", str(tmp_path / "d"), "--train", "0", "--val", "0", "--test", "0"])
    assert result.exit_code == 2 and "empty dataset" in result.output and not (tmp_path / "d").exists()


def test_bad_storage_is_one_line_naming_the_url_and_writes_nothing(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndefaults: {backbone: tiny-random, data: 'microworld:40', eval_samples: 2, "
                     "train: {steps: 1, tasks: {reasoning: 1}}}\naxes: {train.seed: [0]}\n"
                     "objective: reasoning.tf_paper_oIoU\n")
    (tmp_path / "notadb").write_text("not a database")
    cases = [("garbage", 2), ("nosuchdialect://x", 2), ("journal:", 2), ("sqlite://", 2), ("sqlite:///:memory:", 2),
             (f"journal:{tmp_path}", 2), (f"sqlite:///{tmp_path}/notadb", 1),
             (f"sqlite:///{tmp_path}/missing/dir/x.db", 1), (f"journal:{tmp_path}/missing/x.journal", 1),
             ("postgresql+psycopg2://u:secret@127.0.0.1:1/db", 1)]
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's default PostgreSQL driver)
    except ImportError:
        cases.append(("postgresql://u@127.0.0.1:1/db", 2))
    for url, code in cases:
        result = runner.invoke(app, ["run", str(suite), "--results", str(tmp_path / "res"), "--storage", url])
        assert result.exit_code == code, (url, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --storage"), (url, result.stderr)
        assert url.split("//")[0].split(":")[0] in lines[0] and "secret" not in lines[0]
        assert "Traceback" not in result.output
    assert not (tmp_path / "res").exists() and not (tmp_path / "missing").exists()


def _leaf_commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer's own click may not be the installed click)
            yield from _leaf_commands(cmd, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), cmd


def test_every_command_has_json():
    import typer
    commands = dict(_leaf_commands(typer.main.get_command(app)))
    assert {"run", "train", "data make", "bench step"} <= set(commands)  # the walk sees nested groups
    missing = [name for name, cmd in commands.items() if not any("--json" in p.opts for p in cmd.params)]
    assert missing == []


def test_json_mode_prints_only_json_on_stdout(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    mw = tmp_path / "mw"
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndefaults: {backbone: tiny-random, data: 'microworld:40', eval_samples: 2, "
                     "train: {steps: 1, tasks: {reasoning: 1}}}\naxes: {train.seed: [0, 1]}\n"
                     "objective: reasoning.tf_paper_oIoU\n")
    calls = {
        "data make": ["data", "make", "--out", str(mw), "--train", "6", "--val", "2", "--test", "0", "--workers", "1"],
        "data stats": ["data", "stats", str(mw)],
        "bench data": ["bench", "data", str(mw), "--workers", "0", "--batch", "4"],
        "validate": ["validate", str(suite)],
    }
    got = {}
    for name, args in calls.items():
        result = runner.invoke(app, args + ["--json"])
        assert result.exit_code == 0, (name, result.output)
        got[name] = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert got["data make"]["counts"] == {"train": 6, "val": 2, "test": 0}
    assert got["data stats"]["splits"]["train"]["samples"] == 6
    assert got["bench data"]["samples"] == 6
    assert got["validate"] == [{"path": str(suite), "name": "s", "trials": 2, "sampler": "grid",
                                "objective": "reasoning.tf_paper_oIoU", "direction": "maximize"}]


def test_compare_and_report_json(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    res = tmp_path / "res"
    result = runner.invoke(app, ["compare", "lora", "neural", "--backbone", "tiny-random", "--steps", "1", "--seeds", "0",
                                 "--data", "microworld:40", "--eval-samples", "2", "--tasks", "reasoning",
                                 "--results", str(res), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["table"]["reasoning.tf_paper_oIoU"]) == {"lora", "neural"}
    assert len(data["trials"]) == 2 and data["csv"].endswith("compare.csv")
    result = runner.invoke(app, ["report", "--results", str(res), "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    (suite,) = made["suites"].values()
    assert suite["report"].endswith("report.md") and suite["tables"] and made["index"].endswith("README.md")


def test_evidence_json(tmp_path, monkeypatch):
    import ntbench.evidence
    from tests.test_evidence_summary import _frame

    monkeypatch.setattr(ntbench.evidence, "run_evidence", lambda *a, **k: _frame([0.5, 0.55, 0.6], [0.3, 0.31, 0.29]))
    result = runner.invoke(app, ["evidence", "--seeds", "0,1,2", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["checks"]) == len(ntbench.evidence.CHECKS) == 13 and len(data["trials"]) == 12
    assert data["summary"] == str(tmp_path / "summary.md") and (tmp_path / "summary.md").is_file()


def test_known_third_party_warnings_stay_quiet_and_others_are_one_line(monkeypatch):
    import warnings

    def noisy():  # what torch, pycocotools and optuna say during a command, and one unknown warning
        warnings.warn("Converting a tensor with requires_grad=True to a scalar may lead to unexpected behavior.\n"
                      "Consider using tensor.detach() first.", UserWarning)
        warnings.warn("__array__ implementation doesn't accept a copy keyword, so passing copy=False failed.",
                      DeprecationWarning)
        warnings.warn("set_metric_names is experimental (supported from v3.2.0). The interface can change.",
                      type("ExperimentalWarning", (Warning,), {}))
        warnings.warn("something new\nsecond line", RuntimeWarning)
        return []
    monkeypatch.setattr("ntbench.strategies.discover_strategies", noisy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["list", "--json"])
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)
        after = list(warnings.filters)
    assert caught == []  # nothing reached the default handler (pytest's recorder here)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: RuntimeWarning: something new (") and "second" not in lines[0]
    assert after[0][0] == "always"  # the command's filters ended with it


def test_an_output_that_is_a_file_or_a_folder_the_wrong_way_round_exits_2_before_any_work(tmp_path):
    """Issue 15 part 4: every output path is checked before the work, one line naming it, nothing written."""
    a_file, a_dir = tmp_path / "a_file", tmp_path / "a_dir"
    a_file.write_text("keep me")
    a_dir.mkdir()
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndefaults: {backbone: tiny-random, data: 'microworld:40', eval_samples: 2, "
                     "train: {steps: 1, tasks: {reasoning: 1}}}\naxes: {train.seed: [0]}\n"
                     "objective: reasoning.tf_paper_oIoU\n")
    cases = [["run", str(suite), "--results", str(a_file)], ["run", str(suite), "--results", str(a_file / "sub")],
             ["evidence", "--seeds", "0", "--out", str(a_file)], ["prepare", "--record", str(a_file)],
             ["compare", "neural", "--backbone", "tiny-random", "--results", str(tmp_path / "res"), "--csv", str(a_dir)],
             ["eval", str(tmp_path / "run"), "--out", str(a_dir)], ["data", "make", "--out", str(a_file)],
             ["data", "convert", "mmud", str(tmp_path), str(a_file)], ["train", "--out", str(a_file / "x")]]
    for args in cases:
        result = runner.invoke(app, args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, (args, result.output)
        assert ("is not a folder" in lines[0] or "is a file" in lines[0] or "is a folder" in lines[0]), lines
        assert "Traceback" not in result.output
    assert a_file.read_text() == "keep me" and list(a_dir.iterdir()) == [] and not (tmp_path / "res").exists()


def test_bad_or_empty_seeds_exit_2_with_one_line_and_write_nothing(tmp_path):
    """Issue 15 part 3: `evidence --seeds a` was a traceback; `--seeds ,` (no seeds) crashed after
    writing a results folder (compare) or started the evidence (KeyError)."""
    for seeds in ("a", ",", " "):
        for args in (["evidence", "--out", str(tmp_path / "ev")],
                     ["compare", "neural", "--backbone", "tiny-random", "--results", str(tmp_path / "res")]):
            result = runner.invoke(app, [*args, "--seeds", seeds])
            lines = result.stderr.strip().splitlines()
            assert result.exit_code == 2 and len(lines) == 1 and "--seeds" in lines[0], (args, seeds, result.output)
    # a seed given twice would count one run as two independent ones (narrower intervals): refused
    for args in (["evidence", "--out", str(tmp_path / "ev")],
                 ["compare", "neural", "--backbone", "tiny-random", "--results", str(tmp_path / "res")]):
        result = runner.invoke(app, [*args, "--seeds", "0,1,0"])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and lines == ["error: --seeds '0,1,0': seed 0 given more than once"], result.output
    assert not (tmp_path / "ev").exists() and not (tmp_path / "res").exists()
