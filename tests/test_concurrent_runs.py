"""Runs that share a study: a killed worker's cell is re-run by a live worker (no flag), and two
`ntbench run` on one results folder run each cell once and both exit 0."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from ntbench.claims import superseded
from ntbench.runner import make_storage
from ntbench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
FAST = {"backbone": "tiny-random", "data": "microworld:40", "adapter": "neural", "adapter_options": {"dz": 8},
        "eval_samples": 2, "eval_generated": False,
        "train": {"steps": 4, "batch_size": 2, "warmup": 1, "tasks": {"reasoning": 1}}}
HEARTBEAT = (1, 2)  # (interval, grace) s: a dead worker's trial goes stale within ~3 s


@pytest.fixture
def env(tmp_path):
    env = {**os.environ, "NTBENCH_HOME": str(tmp_path / "home")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # this checkout's ntbench
    return env


def _storage_url(kind: str, tmp_path: Path) -> str | None:
    if kind == "journal":
        return None  # the default: <results>/<suite>/optuna.journal, leases by flock
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    if not os.environ.get("NTBENCH_TEST_POSTGRES"):
        pytest.skip("set NTBENCH_TEST_POSTGRES (.ci/run starts a server)")
    return os.environ["NTBENCH_TEST_POSTGRES"]


def _worker(path: Path, results: Path, url: str | None, env: dict) -> subprocess.Popen:
    """`ntbench run` as its own process, with a short heartbeat so the test need not wait minutes."""
    code = ("import sys; from pathlib import Path; from ntbench.runner import run_suite; "
            "from ntbench.suite import load_suite; "
            f"run_suite(load_suite(Path(sys.argv[1])), Path(sys.argv[2]), storage_url={url!r}, heartbeat={HEARTBEAT})")
    return subprocess.Popen([sys.executable, "-c", code, str(path), str(results)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _study(suite, results: Path, url: str | None) -> optuna.Study | None:
    folder = results / suite.name
    if url is None and not (folder / "optuna.journal").exists():
        return None
    try:
        return optuna.load_study(study_name=suite.study_name(), storage=make_storage(url, folder, HEARTBEAT))
    except KeyError:  # not created yet
        return None


@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgresql"])
def test_a_killed_workers_cell_is_rerun_by_a_live_worker_without_a_flag(kind, tmp_path, env):
    # the PostgreSQL database outlives the test: a unique suite name keeps its study apart
    path = tmp_path / f"kill{kind}{int(time.time() * 1000) % 10**8}.yaml"
    # one cell: the live worker has nothing else to do, so it must wait for the dead one's trial
    # a trial long enough (seconds, also on an idle machine) to be killed while it runs
    slow = {**FAST, "train": {**FAST["train"], "steps": 150}}
    path.write_text(yaml.safe_dump({"name": path.stem, "defaults": slow, "axes": {"train.seed": [0]}}))
    suite, url, results = load_suite(path), _storage_url(kind, tmp_path), tmp_path / "res"
    doomed = _worker(path, results, url, env)
    victim, deadline = None, time.time() + 240
    while victim is None and time.time() < deadline and doomed.poll() is None:
        time.sleep(0.2)
        study = _study(suite, results, url)
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if study else []
        # killed while it trains, not between its creation and its cell's parameters (a race seen in CI on a
        # journal); on a database, also wait for the heartbeat thread to have beaten: a trial that never beat
        # is never stale
        running = [t for t in running if t.params]
        if running and (time.time() - running[0].datetime_start.timestamp() > 1.5 or url is None):
            victim = running[0]
    if doomed.poll() is None:
        os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    assert victim is not None, f"no RUNNING trial to kill: {doomed.stderr.read()[-2000:]}"

    live = _worker(path, results, url, env)  # a plain run: nothing tells it a worker died
    _, err = live.communicate(timeout=300)
    assert live.returncode == 0, err[-3000:]

    trials = _study(suite, results, url).get_trials()
    killed = trials[victim.number]
    assert killed.state == optuna.trial.TrialState.FAIL  # taken over, not left RUNNING
    retries = [t for t in trials if killed.number in t.system_attrs.get("retry_history", [])]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state == optuna.trial.TrialState.COMPLETE
    assert superseded(trials) == {killed.number}
    df = pd.read_csv(results / suite.name / "trials.csv")
    assert df["param.train.seed"].tolist() == [0] and df.status.tolist() == ["COMPLETE"]  # the cell, once
    assert killed.number not in set(df.trial)


def _overlap(trials) -> bool:
    """Two trials ran at the same time: only two processes can do that (each runs one at a time)."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_two_runs_on_one_folder_run_each_cell_once_and_both_exit_0(tmp_path, env):
    """Before leases, a second run failed the first one's live trial and re-enqueued it: cells ran
    twice and the first run crashed with "Cannot tell a FAIL trial"."""
    smoke = yaml.safe_load((ROOT / "suites" / "smoke.yaml").read_text())
    # the smoke suite's grid on a small budget, the objective's task only: trials of a few seconds,
    # so the second run (seconds to start) still finds cells to share on an idle machine
    smoke["defaults"]["train"].update(steps=30, tasks={"reasoning": 1})
    smoke["defaults"].update(data="microworld:40", eval_generated=False)
    smoke["report"]["metrics"] = []
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(smoke))
    suite = load_suite(path)
    cmd = [sys.executable, "-m", "ntbench.cli", "run", str(path), "--results", str(tmp_path / "res")]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    deadline = time.time() + 240
    while time.time() < deadline and procs[0].poll() is None:  # the second starts while a trial runs
        time.sleep(0.2)
        study = _study(suite, tmp_path / "res", None)
        if study and study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            break
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
        assert "Traceback" not in err

    trials = _study(suite, tmp_path / "res", None).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    cells = sorted((t.params["adapter_options.beta"], t.params["train.seed"]) for t in done)
    assert cells == [(0.3, 0), (0.3, 1), (0.8, 0), (0.8, 1)]  # every cell, none twice
    assert len(trials) == 4  # nothing failed, taken over or left waiting
    assert _overlap(done), "the two runs did not overlap: this test checked nothing concurrent"
    df = pd.read_csv(tmp_path / "res" / "smoke" / "trials.csv")
    assert len(df) == 4 and (df.status == "COMPLETE").all()


def test_a_sampled_suite_spends_its_budget_once_and_names_its_objective(tmp_path, monkeypatch):
    """TPE/random budgets count trials that are running or done, so a rerun samples nothing more."""
    from ntbench.runner import run_suite

    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "sampled.yaml"
    path.write_text(yaml.safe_dump({"name": "sampled", "defaults": {**FAST, "train": {**FAST["train"], "steps": 1}},
                                    "ranges": {"adapter_options.beta": {"low": 0.2, "high": 0.8}},
                                    "sampler": {"type": "random", "n_trials": 2}}))
    suite = load_suite(path)
    totals = []
    df = run_suite(suite, tmp_path / "res", on_total=totals.append)
    again = run_suite(suite, tmp_path / "res", on_total=totals.append)
    assert totals == [2, 0] and len(df) == len(again) == 2 and (again.status == "COMPLETE").all()
    study = _study(suite, tmp_path / "res", None)
    assert len(study.get_trials()) == 2
    assert study.metric_names == [suite.objective]  # what optuna-dashboard shows as the objective's name


def test_resuming_on_another_setup_warns_and_names_both(tmp_path, monkeypatch):
    """Cells pair by seed, and a seed repeats bit for bit only on one setup (device, threads, torch)."""
    import ntbench.runner as runner
    from ntbench.provenance import current_setup

    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({"name": "two", "defaults": {**FAST, "train": {**FAST["train"], "steps": 1}},
                                    "axes": {"train.seed": [0, 1]}}))
    suite = load_suite(path)

    def stop_after_one():
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(suite, tmp_path / "res", on_trial=stop_after_one)
    notices = []
    here = current_setup()
    runner.run_suite(suite, tmp_path / "res", on_notice=notices.append)  # the same setup: nothing to say
    assert notices == []
    # a suite half done here, finished on a GPU
    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(load_suite(path), tmp_path / "res2", on_trial=stop_after_one)
    monkeypatch.setattr(runner, "current_setup", lambda threads=None: "NVIDIA H200, 1 thread, torch 2.11.0+cu130")
    df = runner.run_suite(suite, tmp_path / "res2", on_notice=notices.append)
    assert (df.status == "COMPLETE").sum() == 2
    assert len(notices) == 1 and f"this suite's 1 completed trial ran on {here}" in notices[0]
    assert "this run is on NVIDIA H200, 1 thread, torch 2.11.0+cu130" in notices[0]


def test_setup_notice_from_rows():
    from ntbench.runner import setup_notice

    rows = pd.DataFrame({"status": ["COMPLETE", "COMPLETE", "FAIL"], "prov.cuda": [None, None, "A100"],
                         "prov.torch_threads": [1, 1, 1], "prov.torch": ["2.14.1"] * 3})
    assert setup_notice(rows, "cpu, 1 thread, torch 2.14.1") is None
    assert "ran on cpu, 1 thread, torch 2.14.1, and this run is on cpu, 2 threads" in \
        setup_notice(rows, "cpu, 2 threads, torch 2.14.1")
    assert setup_notice(rows.assign(**{"prov.torch_threads": float("nan")}), "x") is None  # older rows: unknown
    assert setup_notice(pd.DataFrame(), "x") is None
