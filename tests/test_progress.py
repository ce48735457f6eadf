"""Progress that tells the truth: the trial bar knows its total, generated data gets its own bar."""
import yaml
from rich.progress import Progress

from ntbench.cli.ui import make_data_with_bar
from ntbench.data.cache import resolve_data, samples_to_generate
from ntbench.runner import run_suite
from ntbench.suite import load_suite


def test_a_missing_micro_world_is_generated_on_its_own_bar(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    assert samples_to_generate(None) == 21000 and samples_to_generate("microworld:8") == 24
    assert samples_to_generate(str(tmp_path)) == 0  # a dataset folder is never generated
    bar = Progress(disable=True)
    folder = make_data_with_bar(bar, info="")("microworld:8")
    (task,) = bar.tasks
    assert "generating the micro world microworld:8 (24 samples" in task.description
    assert task.total == 24 and task.completed == 24 and (folder / "meta.json").is_file()
    assert samples_to_generate("microworld:8") == 0
    make_data_with_bar(bar, info="")("microworld:8")  # cached: no second bar
    assert len(bar.tasks) == 1


def test_the_trial_bar_gets_the_trial_s_step_count(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "name": "p", "objective": "reasoning.tf_paper_oIoU", "axes": {"train.steps": [2, 3]},
        "defaults": {"backbone": "tiny-random", "data": "microworld:40", "eval_samples": 2, "eval_generated": False,
                     "train": {"batch_size": 2, "warmup": 0, "tasks": {"reasoning": 1}}}}))
    seen, made = [], []
    run_suite(load_suite(path), tmp_path / "res", progress=lambda s, rec: seen.append((s, rec["total_steps"])),
              make_data=lambda spec: made.append(spec) or resolve_data(spec))
    assert sorted(seen) == [(1, 2), (1, 3), (2, 2), (2, 3), (3, 3)]
    assert set(made) == {"microworld:40"}


def test_train_says_it_generates_missing_data(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ntbench.cli import app

    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["train", "--data", "microworld:8", "--steps", "1", "--batch-size", "2",
                                      "--tasks", "reasoning", "--eval-samples", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert "generating the micro world microworld:8 (24 samples, once)" in result.stderr
    assert result.stdout.lstrip().startswith("{")


def _screen(data: str) -> list[str]:
    """What a terminal shows after ``data``: text, CR, LF, cursor up/down/column, erase in line/display
    (the codes rich's live display uses); colours and cursor visibility are ignored."""
    import re

    rows, r, c, i = [[]], 0, 0, 0
    while i < len(data):
        m = re.match(r"\x1b\[\??([0-9;]*)([A-Za-z])", data[i:])
        if m:
            arg, code = m.group(1), m.group(2)
            n = int(arg) if arg.isdigit() else None
            if code == "A":
                r = max(0, r - (n or 1))
            elif code == "B":
                r += n or 1
            elif code == "G":
                c = (n or 1) - 1
            elif code == "K":
                rows[r] = [] if n == 2 else rows[r][:c] if not n else [" "] * c + rows[r][c:]
            elif code == "J" and n == 2:
                rows = [[] for _ in rows]
            i += m.end()
        else:
            ch, i = data[i], i + 1
            if ch == "\r":
                c = 0
            elif ch == "\n":
                r, c = r + 1, 0
            elif ch >= " ":
                row = rows[r]
                row.extend(" " * (c + 1 - len(row)))
                row[c], c = ch, c + 1
        rows.extend([] for _ in range(r + 1 - len(rows)))
    return [line for line in ("".join(row).rstrip() for row in rows) if line]


def test_finished_bars_leave_no_partial_bar_line(monkeypatch):
    """A suite run ends with its trial bar reset after the last trial (0/N): on a terminal no bar
    line, finished or not, remains once the command is done; it prints its own result."""
    import io

    from rich.console import Console

    from ntbench.cli import ui

    screen = io.StringIO()
    monkeypatch.setattr(ui, "err", Console(file=screen, force_terminal=True, width=100, color_system=None))
    with ui.progress_bar("{task.fields[info]}") as bar:
        suite = bar.add_task("suite smoke", total=2, info="")
        trial = bar.add_task("trial", total=4, info="")
        for _ in range(2):
            bar.update(trial, completed=4, info="loss 1.000")
            bar.refresh()
            bar.advance(suite)
            bar.reset(trial)
            bar.refresh()
    ui.err.print("2 trials in runs/smoke/trials.csv")
    assert _screen(screen.getvalue()) == ["2 trials in runs/smoke/trials.csv"]


def test_a_suite_that_another_run_shared_ends_its_bar_complete_and_says_so(tmp_path, monkeypatch):
    """Two `ntbench run` on one folder: each counts only its own trials. The log's last bar state was
    "suite conc 2/4" and a reset "trial 0/10" after a finished suite; now it is 4/4, "2 by another run"."""
    import io

    import pandas as pd
    from rich.console import Console

    from ntbench import runner
    from ntbench.cli import suites as suites_cli
    from ntbench.cli import ui
    from ntbench.suite import Suite

    def fake_run_suite(suite, results, storage, workers, progress, on_trial, on_total, **kw):
        on_total(4)
        for _ in range(2):  # this run's two trials; the other two ran elsewhere
            progress(5, {"loss": 1.0, "total_steps": 10})
            on_trial()
        return pd.DataFrame()

    screen = io.StringIO()
    monkeypatch.setattr(ui, "err", Console(file=screen, force_terminal=False, width=100, color_system=None))
    monkeypatch.setattr(runner, "run_suite", fake_run_suite)
    suites_cli._run_suite_with_bars(Suite(name="conc", axes={"train.seed": [0, 1, 2, 3]}), tmp_path, None, 1)
    text = screen.getvalue()
    assert "4/4" in text and "2 by another run" in text and "trial" not in text, text
