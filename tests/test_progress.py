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
