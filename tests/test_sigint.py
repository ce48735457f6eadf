"""`ntbench run` listens to SIGINT (the clean stop) even when started with it ignored, as a shell script's
background job is, and so do the workers it spawns."""
import signal
import subprocess
import sys

PROBE = """
import multiprocessing as mp, signal
from ntbench.cli.suites import listen_to_sigint

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
