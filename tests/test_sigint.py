"""`ntbench run` listens to SIGINT (the clean stop) even when started with it ignored, as a shell script's
background job is, and so do the workers it spawns."""
import signal
import subprocess
import sys

PROBE = """
import multiprocessing as mp, signal
from ntbench.cli.stopping import listen_to_sigint

def child(q):
    q.put(signal.getsignal(signal.SIGINT) is signal.default_int_handler)

if __name__ == "__main__":
    before = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    changed = listen_to_sigint()
    ctx = mp.get_context("spawn")  # as the suite runner starts its workers
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    print(before, changed, q.get(timeout=100), listen_to_sigint())
    p.join()
"""


def _run_with(disposition, tmp_path) -> list[str]:
    def pre():
        signal.signal(signal.SIGINT, disposition)
    script = tmp_path / "probe.py"  # a file: a spawned child imports its target from the parent's __main__
    script.write_text(PROBE)
    out = subprocess.run([sys.executable, str(script)], preexec_fn=pre, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_an_ignored_sigint_is_listened_to_again_in_the_run_and_its_spawned_workers(tmp_path):
    # started ignoring SIGINT; listen_to_sigint changes that; the spawned worker gets Python's handler;
    # a second call has nothing left to change
    assert _run_with(signal.SIG_IGN, tmp_path) == ["True", "True", "True", "False"]


def test_a_run_started_normally_is_left_as_it_is(tmp_path):
    assert _run_with(signal.SIG_DFL, tmp_path) == ["False", "False", "True", "False"]


# the first cell finishes at once; the other two train until stopped
SUITE = {"name": "stopme", "axes": {"train.steps": [2, 100000, 100001]}, "objective": "reasoning.tf_paper_oIoU",
         "defaults": {"backbone": "tiny-random", "data": "microworld:40", "adapter": "neural",
                      "adapter_options": {"dz": 8}, "eval_samples": 2, "eval_generated": False,
                      "train": {"steps": 100000, "batch_size": 2, "warmup": 0, "tasks": {"reasoning": 1}}}}


def test_kill_int_to_the_parent_alone_stops_the_workers_and_writes_trials_csv(tmp_path):
    """A background run (SIGINT ignored, as a script starts it) gets SIGINT at its own pid only: it passes
    the signal on, its workers record their trials interrupted, trials.csv says so, and nothing is left."""
    import os
    import time

    import optuna
    import pandas as pd
    import yaml

    from ntbench.storage import make_storage
    from ntbench.suite import load_suite

    path = tmp_path / "stopme.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    env = {**os.environ, "NTBENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ntbench.cli", "run", str(path), "--results",
                             str(tmp_path / "runs"), "--workers", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                                                   signal.SIG_IGN))
    folder = tmp_path / "runs" / "stopme"
    name = load_suite(path).study_name()
    states, deadline = [], time.monotonic() + 240
    while sorted(states) != ["COMPLETE", "RUNNING", "RUNNING"] and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if (folder / "optuna.journal").is_file():
            study = optuna.load_study(study_name=name, storage=make_storage(None, folder))
            states = [t.state.name for t in study.get_trials()]
    assert sorted(states) == ["COMPLETE", "RUNNING", "RUNNING"], states
    time.sleep(1)  # into training
    proc.send_signal(signal.SIGINT)  # the parent alone: the workers do not get it from the terminal
    output = proc.communicate(timeout=240)[0]
    assert proc.returncode == 130, output
    assert "stopped" in output and "resumes" in output
    assert (folder / "trials.csv").is_file(), output
    # trials.csv holds the finished trial (an interrupted attempt is not a row: its cell runs again)
    rows = pd.read_csv(folder / "trials.csv")
    assert list(rows.status) == ["COMPLETE"] and list(rows["param.train.steps"]) == [2]
    study = optuna.load_study(study_name=name, storage=make_storage(None, folder))
    stopped = [t.user_attrs.get("fail_reason") for t in study.get_trials() if t.state.name == "FAIL"]
    assert stopped == ["interrupted", "interrupted"]
    assert "now has 1 rows" in output
