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
    import ntbench.provenance
    # the rows must come from a clean commit whatever state this checkout is in (workers=1: in process)
    mp.setattr(ntbench.provenance, "code_git_state", lambda: {"git_commit": "a" * 40, "git_dirty": False})
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
    import hashlib

    journal = lambda: hashlib.sha256((env / "optuna.journal").read_bytes()).hexdigest()  # noqa: E731
    before = journal()
    entry = verify.verify_trial(env, 1)
    assert entry["identical"] and entry["differing"] == [] and entry["trial"] == 1
    assert entry["compared"] > 10 and entry["commit"] == CLEAN["git_commit"]
    rows = pd.read_csv(env / "trials.csv")
    assert entry["row_commit"] == rows.loc[rows.trial == 1, "prov.git_commit"].item()
    assert json.loads((env / verify.VERIFIED).read_text()) == [entry]
    again = verify.verify_trial(env)  # default: the quickest complete trial; appended, not replaced
    assert again["identical"] and len(json.loads((env / verify.VERIFIED).read_text())) == 2
    assert journal() == before  # the stored study is read from a copy, never written


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
    monkeypatch.setattr(verify, "code_git_state", lambda: CLEAN)
    row_threads = pd.read_csv(env / "trials.csv")["prov.torch_threads"].iloc[0]
    torch.set_num_threads(int(row_threads) + 1)
    monkeypatch.setattr(verify, "current_setup", lambda: "NVIDIA H200, 1 thread, torch 2.11.0+cu130")
    with pytest.raises(verify.VerifyError):
        verify.verify_trial(env, 0)
    assert torch.get_num_threads() == row_threads + 1  # a refusal leaves the thread count as it found it
    monkeypatch.undo()
    monkeypatch.setattr(verify, "code_git_state", lambda: CLEAN)
    verify.check_rerunnable(env, 0)
    assert torch.get_num_threads() == row_threads  # a rerun runs at the row's thread count
    stored = verify.stored_trials(env)

    def dirty_rows(folder):
        for t in stored:
            t.user_attrs["summary"]["provenance"]["git_dirty"] = True
        return stored
    monkeypatch.setattr(verify, "stored_trials", dirty_rows)
    with pytest.raises(verify.VerifyError, match="trial 0 was made from a tree with uncommitted changes"):
        verify.verify_trial(env, 0)
    monkeypatch.undo()
    with pytest.raises(verify.VerifyError, match="optuna.journal"):
        verify.verify_trial(env.parent, 0)
    assert not (env / verify.VERIFIED).exists()  # nothing recorded for a refused check


def _git(root, *args):
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_banner_trusts_only_identical_clean_reruns_made_with_heads_trial_code_on_the_rows_setup(tmp_path, monkeypatch):
    import ntbench.freshness
    from ntbench.freshness import banner

    warned = []  # recorded directly: other tests may reconfigure the ntbench loggers' handlers
    monkeypatch.setattr(ntbench.freshness.log, "warning", lambda msg, *args: warned.append(msg % args))

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
    cpu = "cpu, 1 thread, torch 2.14.1"
    rows = pd.DataFrame({"status": "COMPLETE", "prov.git_commit": [old, old, mid, old, old],
                         "prov.git_dirty": [False, False, False, False, True],
                         "prov.cuda": [None, None, None, "NVIDIA H200", None], "prov.torch_threads": 1,
                         "prov.torch": ["2.14.1"] * 3 + ["2.11.0+cu130", "2.14.1"]})
    folder = tmp_path / "suite"
    folder.mkdir()

    def recorded(*entries, raw=None):
        (folder / "verified.json").write_text(raw if raw is not None else json.dumps(
            [{"trial": t, "row_commit": r, "commit": c, "identical": same, "setup": setup}
             for t, r, c, same, setup in entries]))
        return "\n".join(banner(rows, "tiny-random", repo, folder))

    text = recorded()
    assert "**Stale results.**" in text and "Rechecked" not in text
    # old's two clean CPU rows rechecked at HEAD; its H200 row and its dirty row, and mid's row, stay stale
    text = recorded((0, old, head, True, cpu))
    assert f"2 rows by {old[:10]}, rerun: trial 0" in text
    assert f"2 by {old[:10]}" in text and f"1 by {mid[:10]}" in text and "Stale" in text
    assert "Rechecked" not in recorded((0, old, mid, True, cpu))  # rerun with code that is not HEAD's
    assert "Rechecked" not in recorded((0, old, head, True, "cpu, 2 threads, torch 2.14.1"))  # another setup
    text = recorded((0, old, head, False, cpu), (1, mid, head, True, cpu))  # a rerun that differed
    assert "reran trial 0 of commit" in text and "got different numbers" in text and f"4 by {old[:10]}" in text
    assert f"1 rows by {mid[:10]}, rerun: trial 1" in text
    # malformed records vouch for nothing and stop no report
    for raw in ("{not json", json.dumps([{"trial": 0, "row_commit": old, "commit": head, "identical": "true",
                                          "setup": cpu}, {"row_commit": old}, 5])):
        text = recorded(raw=raw)
        assert "Rechecked" not in text and "Stale" in text
    assert len(warned) == 2 and all("ignored" in w for w in warned)


def test_the_results_index_repeats_each_reports_banners(tmp_path):
    from ntbench.report import write_index

    for name, first in (("a", "> **Rechecked.** rows by x"), ("b", "> **Stale results.** rows by y"),
                        ("c", "> **Mixed machines.** two setups")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "suite.resolved.yaml").write_text("name: x\n")
        (folder / "trials.csv").write_text("trial\n")
        (folder / "report.md").write_text(f"# {name}\n\n{first}\n\nbody line\n")
    text = write_index(tmp_path).read_text()
    assert "**Rechecked.** rows by x" in text and "**Stale results.** rows by y" in text
    assert "**Mixed machines.** two setups" in text and "body line" not in text


def _prepared_micro(home, llm: bytes = b"llm weights") -> dict:
    """A stand-in prepared micro backbone under ``home``: two weight files and the manifest that hashes them."""
    import hashlib

    from ntbench.micro import MANIFEST, cache_dir
    folder = cache_dir(home=home)
    files = {"llm/model.safetensors": llm, "vision/model.safetensors": b"vision weights"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    manifest = {"seed": 0, "sizes": {"llm_layers": 4}, "losses": {"lm_last50": 1.0427},
                "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_a_micro_trial_is_not_rerun_on_other_weights(env, tmp_path, monkeypatch):
    # another CPU's arithmetic makes other micro weights from the same recipe, and the rows do not record the CPU:
    # a rerun there would differ whatever the code did, and its "not identical" would land in verified.json
    import ntbench.backbone_record as backbone_record

    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    reference = tmp_path / "reference.json"  # the committed results/micro/prepare.json, as this test sets it
    monkeypatch.setattr(backbone_record, "reference_manifest", lambda: reference)
    stored = verify.stored_trials(env)
    for t in stored:
        t.user_attrs["config"]["backbone"] = "micro"
    monkeypatch.setattr(verify, "stored_trials", lambda folder: stored)
    record = env / backbone_record.RECORD
    threads = torch.get_num_threads()
    try:
        made = {"seed": 0, "sizes": {"llm_layers": 4}, "files": {"llm/model.safetensors": "a" * 64}}
        record.write_text(json.dumps(made))
        with pytest.raises(verify.VerifyError, match="not prepared on this machine.*ntbench prepare"):
            verify.check_rerunnable(env, 0)
        made = _prepared_micro(tmp_path / "home")
        record.write_text(json.dumps(backbone_record.record(made)))
        verify.check_rerunnable(env, 0)  # the weights that made the rows: no refusal
        other = {**made, "losses": {"lm_last50": 1.0445}, "files": {**made["files"], "llm/model.safetensors": "e" * 64}}
        record.write_text(json.dumps(backbone_record.record(other)))
        with pytest.raises(verify.VerifyError) as refused:
            verify.verify_trial(env, 0)
        said = str(refused.value)
        assert str(record) in said and "llm/model.safetensors" in said and "vision" not in said
        assert "lm 1.0445 (here 1.0427)" in said and "kind of machine that made them" in said
        record.write_text(json.dumps({**backbone_record.record(other), "sizes": {"llm_layers": 8}}))
        with pytest.raises(verify.VerifyError, match="another seed or sizes"):
            verify.check_rerunnable(env, 0)
        record.write_text(json.dumps({**backbone_record.record(made), backbone_record.MIXED: True}))
        with pytest.raises(verify.VerifyError, match="--other-backbone"):  # rows of two backbones: none is rerun
            verify.check_rerunnable(env, 0)
        record.write_text("{not json")
        torch.set_num_threads(threads + 1)
        with pytest.raises(verify.VerifyError, match="cannot be read"):
            verify.check_rerunnable(env, 0)
        assert torch.get_num_threads() == threads + 1  # a refusal leaves the thread count as it found it

        # a folder from before the records: compared with the committed reference, and said so
        record.unlink()
        reference.write_text(json.dumps(other))
        with pytest.raises(verify.VerifyError, match=f"predate the records.*{reference.name}.*llm/model.safetensors"):
            verify.check_rerunnable(env, 0)
        reference.write_text(json.dumps(made))
        verify.check_rerunnable(env, 0)
        reference.unlink()  # no record and no reference (an installed package): nothing to compare
        verify.check_rerunnable(env, 0)
        assert not (env / verify.VERIFIED).exists()  # nothing recorded for a refused check
    finally:
        record.unlink(missing_ok=True)
        torch.set_num_threads(threads)


def test_only_micro_trials_of_the_current_micro_version_are_checked_for_their_backbone(tmp_path, monkeypatch):
    from ntbench.backbone_record import rerun_refusal
    from ntbench.micro import MICRO_VERSION

    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))  # nothing prepared
    (tmp_path / "backbone.json").write_text(json.dumps({"seed": 0, "files": {"llm/model.safetensors": "a" * 64}}))
    assert rerun_refusal(tmp_path, {"backbone": "tiny-random"}) is None
    assert "not prepared" in rerun_refusal(tmp_path, {"backbone": "micro"}, MICRO_VERSION)
    # a row of an older micro version reruns on HEAD's backbone by design: the difference is the code's to report
    assert rerun_refusal(tmp_path, {"backbone": "micro"}, MICRO_VERSION - 1) is None
