"""`ntbench verify`: a stored trial rerun with the code checked out now gives its numbers back, and the
report's staleness banner believes a rerun only when it was identical and made with HEAD's trial code."""
import json
import subprocess

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

import ntbench.verify as verify
from ntbench.runner import run_suite
from ntbench.suite import load_suite

FAST = {"backbone": "tiny-random", "data": "microworld:24", "adapter": "neural", "adapter_options": {"dz": 8},
        "eval_samples": 2, "eval_generated": False,
        "train": {"steps": 2, "batch_size": 2, "warmup": 1, "tasks": {"reasoning": 1}}}
CLEAN = {"git_commit": "c" * 40, "git_dirty": False}


@pytest.fixture(scope="module")
def suite_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    mp = pytest.MonkeyPatch()
    mp.setenv("NTBENCH_HOME", str(root / "home"))
    path = root / "v.yaml"
    path.write_text(yaml.safe_dump({"name": "v", "defaults": FAST, "axes": {"adapter_options.beta": [0.3, 0.7],
                                    "train.seed": [0]}, "objective": "reasoning.tf_paper_oIoU"}))
    run_suite(load_suite(path), root / "res")
    yield root / "res" / "v"
    mp.undo()


@pytest.fixture
def env(suite_folder, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(suite_folder.parent.parent / "home"))
    monkeypatch.setattr(verify, "code_git_state", lambda: CLEAN)
    threads = torch.get_num_threads()
    (suite_folder / verify.VERIFIED).unlink(missing_ok=True)
    yield suite_folder
    torch.set_num_threads(threads)


def test_a_stored_trial_reruns_identically_and_is_recorded(env):
    entry = verify.verify_trial(env, 1)
    assert entry["identical"] and entry["differing"] == [] and entry["trial"] == 1
    assert entry["compared"] > 10 and entry["commit"] == CLEAN["git_commit"]
    rows = pd.read_csv(env / "trials.csv")
    assert entry["row_commit"] == rows.loc[rows.trial == 1, "prov.git_commit"].item()
    assert json.loads((env / verify.VERIFIED).read_text()) == [entry]
    again = verify.verify_trial(env)  # default: the quickest complete trial; appended, not replaced
    assert again["identical"] and len(json.loads((env / verify.VERIFIED).read_text())) == 2


def test_a_moved_number_is_named_and_the_cli_exits_1(env, monkeypatch):
    from ntbench.cli import app
    from ntbench.train.trial import run_trial

    def nudged(cfg, progress=None):
        out = run_trial(cfg, progress=progress)
        out["metrics"]["reasoning"]["tf_paper_oIoU"] += 1e-12  # the smallest change still counts
        return out
    entry = verify.verify_trial(env, 0, run=nudged)
    assert not entry["identical"] and entry["differing"] == ["metrics.reasoning.tf_paper_oIoU"]

    def other_map(cfg, progress=None):  # the activation map is stored beside the journal, and compared too
        out = run_trial(cfg, progress=progress)
        freq = out["metrics"]["activation_frequency"]
        task = next(iter(freq))
        freq[task][0][0] = 1.0 - freq[task][0][0]
        return out
    assert verify.verify_trial(env, 0, run=other_map)["differing"] == ["metrics.activation_frequency"]
    import ntbench.train.trial as trial_mod
    monkeypatch.setattr(trial_mod, "run_trial", nudged)
    result = CliRunner().invoke(app, ["verify", str(env), "--trial", "0"])
    assert result.exit_code == 1 and "1 of" in result.output and "tf_paper_oIoU" in result.output


def test_what_cannot_be_rerun_here_is_refused_with_the_reason(env, monkeypatch):
    with pytest.raises(verify.VerifyError, match="complete: 0, 1"):
        verify.verify_trial(env, 7)
    monkeypatch.setattr(verify, "current_setup", lambda: "NVIDIA H200, 1 thread, torch 2.11.0+cu130")
    with pytest.raises(verify.VerifyError, match="this machine is NVIDIA H200"):
        verify.verify_trial(env, 0)
    monkeypatch.undo()
    monkeypatch.setattr(verify, "code_git_state", lambda: {**CLEAN, "git_dirty": True})
    with pytest.raises(verify.VerifyError, match="uncommitted"):
        verify.verify_trial(env, 0)
    with pytest.raises(verify.VerifyError, match="optuna.journal"):
        verify.verify_trial(env.parent, 0)
    assert not (env / verify.VERIFIED).exists()  # nothing recorded for a refused check


def _git(root, *args):
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_banner_trusts_only_identical_reruns_made_with_heads_trial_code(tmp_path):
    from ntbench.freshness import banner

    repo = tmp_path / "repo"
    (repo / "ntbench").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    for i in range(3):  # three commits, each changing the trial code
        (repo / "ntbench" / "trainer.py").write_text(f"x = {i}\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", f"c{i}")
    old, mid, head = _git(repo, "rev-list", "--reverse", "HEAD").split()
    rows = pd.DataFrame({"status": "COMPLETE", "prov.git_commit": [old, old, mid], "prov.git_dirty": False})
    folder = tmp_path / "suite"
    folder.mkdir()

    def recorded(*entries):
        (folder / "verified.json").write_text(json.dumps([{"trial": t, "row_commit": r, "commit": c, "identical": same}
                                                          for t, r, c, same in entries]))
        return "\n".join(banner(rows, "tiny-random", repo, folder))

    text = recorded()
    assert "**Stale results.**" in text and "Rechecked" not in text
    text = recorded((0, old, head, True))  # old's rows rechecked at HEAD; mid's row still stale
    assert f"2 rows by {old[:10]}, rerun: trial 0" in text and f"1 by {mid[:10]}" in text and "Stale" in text
    assert "Rechecked" not in recorded((0, old, mid, True))  # rerun with code that is not HEAD's: no evidence
    text = recorded((0, old, head, True), (1, mid, head, True))
    assert "**Rechecked.**" in text and "Stale" not in text
    text = recorded((0, old, head, False), (1, mid, head, True))  # a rerun that differed keeps the rows stale
    assert "reran trial 0 of commit" in text and "got different numbers" in text and f"2 by {old[:10]}" in text
