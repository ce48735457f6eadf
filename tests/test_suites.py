"""Suites: validation, the runner (workers, resume after kill -9, failures), report, compare."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ntbench.cli import app
from ntbench.runner import make_storage, run_suite
from ntbench.suite import SuiteError, load_suite

SUITES = Path(__file__).resolve().parent.parent / "suites"
runner = CliRunner()

FAST = {"backbone": "tiny-random", "data": "microworld:40", "adapter": "neural", "adapter_options": {"dz": 8},
        "eval_samples": 2, "eval_generated": False,
        "train": {"steps": 2, "batch_size": 2, "warmup": 1, "tasks": {"reasoning": 1, "captioning": 1}}}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_suite(path: Path, **overrides) -> Path:
    data = {"name": path.stem, "defaults": FAST, "axes": {"adapter_options.beta": [0.3, 0.7], "train.seed": [0, 1]},
            "objective": "reasoning.tf_paper_oIoU", **overrides}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", sorted(SUITES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(SUITES)))
def test_every_shipped_suite_validates(path):
    suite = load_suite(path)
    assert suite.name and suite.objective


def test_bad_suite_lists_every_error_and_writes_nothing(tmp_path):
    bad = write_suite(tmp_path / "bad.yaml", axes={"adapter_options.beta": [0.2, 1.5], "adapter_options.strategy": ["gausian"]},
                      defaults={**FAST, "train": {**FAST["train"], "stepz": 3, "batch_size": "many"}})
    with pytest.raises(SuiteError) as exc:
        load_suite(bad)
    text = str(exc.value)
    assert "train.stepz" in text and "unknown key" in text
    assert "train.batch_size: 'many'" in text
    assert "axes.adapter_options.beta[1]" in text and "(0, 1]" in text
    assert "Did you mean 'gaussian'" in text and "Allowed values" in text
    for cmd in (["validate", str(bad)], ["run", str(bad), "--results", str(tmp_path / "res")]):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 2
        assert "train.stepz" in result.output and "axes.adapter_options.beta[1]" in result.output
    assert not (tmp_path / "res").exists()


def test_unknown_top_level_key(tmp_path):
    bad = write_suite(tmp_path / "k.yaml", axis={"x": [1]})
    with pytest.raises(SuiteError, match="axis: .*unknown key"):
        load_suite(bad)


def test_validate_checks_whole_cells_not_values_one_by_one(tmp_path):
    """neural takes dz and lora takes it too as an axis value on its own (the default adapter is
    neural), but the cell that combines lora with dz fails: validation must say so, naming the cell."""
    defaults = {k: v for k, v in FAST.items() if k != "adapter_options"}
    clash = write_suite(tmp_path / "clash.yaml", defaults=defaults,
                        axes={"adapter": ["neural", "lora"], "adapter_options.dz": [8]})
    with pytest.raises(SuiteError) as exc:
        load_suite(clash)
    text = str(exc.value)
    assert "cell {adapter = 'lora', adapter_options.dz = 8}" in text and "'dz'" in text
    assert "'neural'" not in text  # the neural cell is fine
    result = runner.invoke(app, ["validate", str(clash)])
    assert result.exit_code == 2 and "adapter = 'lora'" in result.output
    fine = write_suite(tmp_path / "fine.yaml", defaults=defaults,
                       axes={"adapter": ["neural"], "adapter_options.dz": [8]})
    assert load_suite(fine).axes["adapter"] == ["neural"]


def test_resolving_cells_leaves_the_axis_values_as_written():
    # activation_patterns lays adapter_options.beta on each adapter_options value: each cell's beta used to
    # be written into the suite's own axis value, so the value's label (the cell's name in the storage)
    # changed with every cell resolved, and a worker's next trial no longer found its cell
    from ntbench.suite import grid_cells, read_suite_file, trial_config

    path = SUITES / "activation_patterns.yaml"
    suite = load_suite(path)
    written = read_suite_file(path)["axes"]["adapter_options"]
    got = [trial_config(suite, cell).adapter_options for cell in grid_cells(suite)]
    assert suite.axes["adapter_options"] == written
    assert [(o["strategy"], o["beta"]) for o in got] == [
        (s["strategy"], b) for s in written for b in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] for _ in range(3)]


def test_a_mapping_axis_with_an_axis_inside_it_runs_every_cell(tmp_path):
    path = tmp_path / "inside.yaml"
    path.write_text(yaml.safe_dump({"name": "inside", "defaults": FAST, "objective": "reasoning.tf_paper_oIoU",
                                    "axes": {"adapter_options": [{"strategy": "gaussian"}, {"strategy": "level"}],
                                             "adapter_options.beta": [0.4, 1.0]}}, sort_keys=False))
    df = run_suite(load_suite(path), tmp_path / "runs")
    assert list(df.status) == ["COMPLETE"] * 4
    assert sorted(zip(df["param.adapter_options"], df["param.adapter_options.beta"])) == [
        ('{"strategy": "gaussian"}', 0.4), ('{"strategy": "gaussian"}', 1.0),
        ('{"strategy": "level"}', 0.4), ('{"strategy": "level"}', 1.0)]


def test_extends_merges_deeply_relative_to_the_file(tmp_path):
    (tmp_path / "base").mkdir()
    write_suite(tmp_path / "base" / "common.yaml", report={"rows": "train.seed", "plot": "bars"})
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "base/common.yaml", "name": "child",
                                     "defaults": {"train": {"steps": 3}}, "axes": {"train.seed": [5]},
                                     "report": {"plot": "lines"}}))
    suite = load_suite(child)
    assert suite.name == "child"
    assert suite.defaults["train"] == {**FAST["train"], "steps": 3}  # merged key by key, the child wins
    assert suite.defaults["adapter_options"] == {"dz": 8}  # inherited untouched
    assert suite.axes == {"adapter_options.beta": [0.3, 0.7], "train.seed": [5]}  # lists replace
    assert (suite.report.rows, suite.report.plot) == ("train.seed", "lines")


def test_extends_cycle_and_missing_parent_are_clear_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(SuiteError, match=r"extends: a cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_suite(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: nowhere.yaml\nname: c\n")
    with pytest.raises(SuiteError, match=r"c\.yaml: .*\n  - extends: .*nowhere\.yaml \(named by .*c\.yaml\): file not found"):
        load_suite(tmp_path / "c.yaml")
    with pytest.raises(SuiteError, match=r": 1 error\(s\)\n  - a folder, not a suite file"):
        load_suite(tmp_path)


def test_paper_suites_extend_one_base():
    for path in (SUITES / "paper").glob("*.yaml"):
        if path.name != "_base.yaml":
            assert yaml.safe_load(path.read_text())["extends"] == "_base.yaml", path


def cells(df):
    done = df[df.status == "COMPLETE"]
    return sorted(map(tuple, done[["param.adapter_options.beta", "param.train.seed"]].values.tolist()))


def test_two_workers_run_each_cell_once_and_rerun_runs_nothing(tmp_path):
    suite = load_suite(write_suite(tmp_path / "w2.yaml"))
    ticks = []  # the suite bar advances as the worker processes finish trials (it stood at 0/4)
    df = run_suite(suite, tmp_path / "res", workers=2, on_trial=lambda: ticks.append(1))
    assert cells(df) == [(0.3, 0), (0.3, 1), (0.7, 0), (0.7, 1)] and len(ticks) == 4
    assert len(df) == 4 and (df.status == "COMPLETE").all()
    totals = []
    again = run_suite(suite, tmp_path / "res", on_total=totals.append)
    assert totals == [0] and len(again) == 4
    csv = pd.read_csv(tmp_path / "res" / "w2" / "trials.csv")
    assert {"objective", "step_time_s", "peak_memory_mb", "trainable_params", "tflops_per_step",
            "prov.git_commit", "prov.torch", "reasoning.tf_lisa_gIoU"} <= set(csv.columns)
    assert (tmp_path / "res" / "w2" / "suite.resolved.yaml").is_file()


@pytest.mark.skipif(not os.environ.get("NTBENCH_TEST_POSTGRES"), reason="set NTBENCH_TEST_POSTGRES (.ci/run starts a server)")
def test_two_workers_on_postgresql(tmp_path):
    url = os.environ["NTBENCH_TEST_POSTGRES"]
    suite = load_suite(write_suite(tmp_path / f"pg{int(time.time() * 1000) % 10**8}.yaml"))
    df = run_suite(suite, tmp_path / "res", storage_url=url, workers=2)
    assert cells(df) == [(0.3, 0), (0.3, 1), (0.7, 0), (0.7, 1)] and len(df) == 4


def test_failing_trial_is_recorded_and_suite_goes_on(tmp_path):
    (tmp_path / "broken").mkdir()  # exists (so validation passes) but holds no dataset
    suite = load_suite(write_suite(tmp_path / "f.yaml", axes={"data": ["microworld:40", str(tmp_path / "broken")]}))
    df = run_suite(suite, tmp_path / "res")
    assert sorted(df.status) == ["COMPLETE", "FAIL"]
    assert "broken" in df[df.status == "FAIL"].fail_reason.iloc[0]


def test_a_missing_data_path_is_a_validation_error(tmp_path):
    with pytest.raises(SuiteError, match="missing.*not found"):
        load_suite(write_suite(tmp_path / "f.yaml", axes={"data": ["microworld:40", str(tmp_path / "missing")]}))


def test_a_missing_backbone_path_is_not_found_not_an_unknown_preset(tmp_path):
    with pytest.raises(SuiteError) as bad:
        load_suite(write_suite(tmp_path / "f.yaml", axes={"backbone": ["tiny-random", str(tmp_path / "nobb")]}))
    text = str(bad.value)
    assert "nobb': not found" in text and "preset" not in text and "Value error" not in text


def test_a_misspelt_backbone_preset_fails_validation_with_the_nearest_preset(tmp_path):
    with pytest.raises(SuiteError) as bad:
        load_suite(write_suite(tmp_path / "f.yaml", axes={"backbone": ["tiny-random", "mirco"]}))
    text = str(bad.value)
    assert "axes.backbone[1] = 'mirco'" in text and "Did you mean 'micro'?" in text
    assert "axes.backbone[0]" not in text  # the preset in the same axis is fine
    # an HF id with a vision encoder is loaded from the local cache at run time, not judged here
    load_suite(write_suite(tmp_path / "g.yaml", defaults={**FAST, "backbone": "org/llm", "vision": "org/clip"}))


def test_kill_9_then_rerun_runs_only_missing_cells(tmp_path):
    path = write_suite(tmp_path / "k9.yaml", axes={"adapter_options.beta": [0.2, 0.4, 0.6, 0.8]})
    suite = load_suite(path)
    proc = subprocess.Popen([sys.executable, "-m", "ntbench.cli", "run", str(path), "--results", str(tmp_path / "res")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    import optuna
    storage = None
    deadline = time.time() + 240
    completed = []
    while time.time() < deadline:
        time.sleep(0.5)
        if not (tmp_path / "res" / "k9" / "optuna.journal").exists():
            continue
        storage = storage or make_storage(None, tmp_path / "res" / "k9")
        try:
            study = optuna.load_study(study_name=suite.study_name(), storage=storage)
        except KeyError:
            continue
        completed = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
        if completed:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert completed, "no trial completed before the deadline"
    first_done = {t.number: t.params for t in completed}
    df = run_suite(suite, tmp_path / "res")
    assert len(df) == 4 and (df.status == "COMPLETE").all()
    assert sorted(df["param.adapter_options.beta"]) == [0.2, 0.4, 0.6, 0.8]  # no duplicated rows
    for number, params in first_done.items():  # completed cells were not rerun
        assert number in set(df.trial)


def test_report_and_index(tmp_path):
    suite = load_suite(write_suite(tmp_path / "r.yaml", report={"rows": "adapter_options.beta", "plot": "bars"}))
    run_suite(suite, tmp_path / "res")
    result = runner.invoke(app, ["report", "--results", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "res" / "r"
    report = (folder / "report.md").read_text()
    assert "± " in report and "reasoning.tf_paper_oIoU" in report
    assert (folder / "plot_reasoning.tf_paper_oIoU.png").stat().st_size > 1000
    assert (folder / "activation_maps.png").is_file() and (folder / "activation_overlap.png").is_file()
    assert "r/report.md" in (tmp_path / "res" / "README.md").read_text()


def test_ci95_by_hand():
    from ntbench.report import aggregate
    df = pd.DataFrame({"status": ["COMPLETE"] * 3, "param.x": [1, 1, 1], "m": [1.0, 2.0, 3.0]})
    agg = aggregate(df, "m", ["param.x"])
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.302653 -> 4.302653 / sqrt(3)
    assert agg["mean"].iloc[0] == 2.0 and agg["ci95"].iloc[0] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)


def test_smoke_suite_end_to_end_with_the_cli(tmp_path):
    result = runner.invoke(app, ["run", str(SUITES / "smoke.yaml"), "--results", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert "smoke" in result.output
    result = runner.invoke(app, ["report", "--results", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "res" / "smoke" / "trials.csv")
    assert len(df) == 4 and (df.status == "COMPLETE").all()
    assert (tmp_path / "res" / "smoke" / "report.md").is_file()


def test_run_exits_3_when_trials_fail_and_records_why(tmp_path, monkeypatch):
    import ntbench.train.trial as trial_module

    def broken(cfg, *args, **kwargs):
        if cfg.train.seed == 1:
            raise FloatingPointError("non-finite loss at step 0: nan")
        return real(cfg, *args, **kwargs)
    real = trial_module.run_trial
    monkeypatch.setattr(trial_module, "run_trial", broken)
    result = runner.invoke(app, ["run", str(SUITES / "smoke.yaml"), "--results", str(tmp_path / "res")])
    assert result.exit_code == 3, result.output
    assert "2 trial(s) failed" in result.output
    df = pd.read_csv(tmp_path / "res" / "smoke" / "trials.csv")
    assert (df.status == "FAIL").sum() == 2 and df[df.status == "FAIL"].fail_reason.str.contains("non-finite").all()


def test_compare_prints_side_by_side_and_writes_csv(tmp_path):
    result = runner.invoke(app, ["compare", "lora", "neural", "--backbone", "tiny-random", "--steps", "2",
                                 "--seeds", "0,1", "--data", "microworld:40", "--eval-samples", "2",
                                 "--tasks", "reasoning,captioning", "--results", str(tmp_path / "res")])
    assert result.exit_code == 0, result.output
    assert "lora" in result.output and "neural" in result.output and "reasoning.tf_paper_oIoU" in result.output
    table = pd.read_csv(tmp_path / "res" / "compare-lora-neural" / "compare.csv", index_col=0)
    assert list(table.columns) == ["lora", "neural"]
    assert "trainable_params" in table.index and "±" in str(table.loc["reasoning.tf_paper_oIoU", "lora"])


def test_validate_rejects_an_objective_no_trial_reports(tmp_path):
    """Issue 15 part 4: a misspelt metric, or a task the cells do not train, would fail every trial
    with an empty reason; validation names the objective and the allowed metrics instead."""
    from ntbench.suite import SuiteError, load_suite

    def suite(objective, extra=""):
        path = tmp_path / "s.yaml"
        path.write_text(f"name: s\ndefaults: {{backbone: tiny-random, train: {{steps: 1, tasks: {{referring: 1}}}}{extra}}}\n"
                        f"axes:\n  train.seed: [0]\nobjective: {objective}\n")
        return path

    with pytest.raises(SuiteError, match="does not train 'reasoning'"):
        load_suite(suite("reasoning.tf_paper_oIoU"))
    with pytest.raises(SuiteError, match=r"no 'tf_paper_oIOU'.*allowed: .*tf_paper_oIoU"):
        load_suite(suite("referring.tf_paper_oIOU"))
    with pytest.raises(SuiteError, match="no 'gen_paper_oIoU'"):  # generated answers are not evaluated
        load_suite(suite("referring.gen_paper_oIoU", ", eval_generated: false"))
    with pytest.raises(SuiteError, match="expected TASK.METRIC"):
        load_suite(suite("oIoU"))
    with pytest.raises(SuiteError) as bad:
        load_suite(suite("referring.nosuch"))
    assert "- objective: 'referring.nosuch'" in str(bad.value)  # the top-level key, not "defaults.objective"
    assert load_suite(suite("referring.tf_paper_oIoU")).objective == "referring.tf_paper_oIoU"


def test_budget_rule_fixes_total_steps_or_main_task_updates():
    """With total_steps (the default, the paper's design) every cell trains train.steps; with
    main_task_updates a cell's steps give the objective's task the updates it gets under the
    defaults' mix: 60 steps at reasoning share 2/6 = 20 updates -> 20 steps alone, 40 with referring."""
    from ntbench.suite import Suite, load_suite, trial_config

    spec = dict(name="b", objective="reasoning.tf_paper_oIoU",
                defaults={"backbone": "tiny-random", "train": {"steps": 60, "tasks": {
                    "reasoning": 2, "referring": 2, "captioning": 1, "t2i": 1}}},
                axes={"train.tasks": [{"reasoning": 1}, {"reasoning": 1, "referring": 1}]})
    fixed, scaled = Suite(**spec), Suite(**spec, budget="main_task_updates")
    cells = [{"train.tasks": t} for t in spec["axes"]["train.tasks"]]
    assert [trial_config(fixed, c).train.steps for c in cells] == [60, 60]
    assert [trial_config(scaled, c).train.steps for c in cells] == [20, 40]
    assert fixed.study_name() != scaled.study_name()
    # the default rule leaves the committed studies their names (results/paired_beta resumes)
    assert load_suite("suites/paired_beta.yaml").study_name() == "paired_beta-ec90e2bfe8"


def test_validate_rejects_a_report_layout_on_a_key_that_is_not_an_axis(tmp_path):
    from ntbench.suite import SuiteError, load_suite

    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndefaults: {backbone: tiny-random}\naxes:\n  train.seed: [0]\n"
                    "report: {rows: adapter_options.beta}\n")
    with pytest.raises(SuiteError, match=r"report.rows: 'adapter_options.beta' is not an axis.*allowed: train.seed"):
        load_suite(path)


def test_an_empty_mapping_axis_value_is_labelled_default_and_survives_trials_csv(tmp_path):
    """``{}`` (run on the defaults) was labelled "", which trials.csv gives back as NaN."""
    from ntbench.suite import label

    assert label({}) == "default"
    assert [label(v) for v in ({"reasoning": 1}, {"strategy": "gaussian"}, {"ema": False}, 0.4)] == \
        ["reasoning", '{"strategy": "gaussian"}', '{"ema": false}', 0.4]  # a flag is not a task mix ("ema:0")
    pd.DataFrame({"param.adapter_options": [label({}), label({"ema": False})]}).to_csv(tmp_path / "t.csv", index=False)
    back = pd.read_csv(tmp_path / "t.csv")["param.adapter_options"].tolist()
    assert back == ["default", '{"ema": false}']
    path = write_suite(tmp_path / "s.yaml", axes={"adapter_options": [{}, {"strategy": "dense"}], "train.seed": [0]})
    assert load_suite(path).axes["adapter_options"][0] == {}


def test_axis_values_that_share_a_label_are_rejected(tmp_path):
    """trials.csv and Optuna know a value by its label: two values with one label would run as one."""
    path = write_suite(tmp_path / "s.yaml", axes={"train.tasks": [{"reasoning": 1}, {"reasoning": 1.0}]})
    with pytest.raises(SuiteError, match="axes.train.tasks: two values share the label 'reasoning'"):
        load_suite(path)


def test_paper_claims_are_typed_and_errors_name_the_file_and_key(tmp_path):
    claim = {"says": "x", "a": {"adapter_options.beta": 0.3}, "b": {"adapter_options.beta": 0.7},
             "paper": {"a": 62.8, "b": 62.0}}
    ok = write_suite(tmp_path / "ok.yaml", paper={"table": "Table 6 (top)", "claims": [claim]})
    suite = load_suite(ok)
    assert suite.paper.claims[0].expected() == "higher"
    # the claims change the report, not the cells: the study keeps its name
    assert suite.study_name() == load_suite(write_suite(tmp_path / "ok.yaml")).study_name()
    bad = write_suite(tmp_path / "bad.yaml", paper={"table": "T", "claims": [
        {**claim, "paper": {"a": 1, "b": 2, "delta": 3}, "colour": "red"}]})
    with pytest.raises(SuiteError) as exc:
        load_suite(bad)
    text = str(exc.value)
    assert text.startswith(f"{bad}: 2 error(s)")
    assert "paper.claims[0].paper.delta: 3: unknown key; allowed keys: a, b" in text
    assert "paper.claims[0].colour: 'red': unknown key; allowed keys: says, a, b, paper, expect, metric, note" in text
    bad = write_suite(tmp_path / "bad.yaml", paper={"table": "T", "claims": [
        {**claim, "a": {"adapter_options.beta": 0.5, "train.seed": 0}, "b": {"train.tasks": {"reasoning": 1}},
         "metric": "captioning.BLEU-4"}]})
    with pytest.raises(SuiteError) as exc:
        load_suite(bad)
    text = str(exc.value)
    assert "paper.claims[0].a.adapter_options.beta: 0.5 is not a value of this axis; allowed: 0.3, 0.7" in text
    assert "paper.claims[0].a.train.seed: a claim pairs its cells over the seeds; name no seed" in text
    assert "paper.claims[0].b.train.tasks: not an axis of this suite; allowed: adapter_options.beta" in text
    assert "paper.claims[0].b: names no value for the axis(es) adapter_options.beta" in text
    assert "paper.claims[0].metric: 'captioning.BLEU-4': the report shows only the objective" in text
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "paper.claims[0].a.train.seed" in result.output


def test_a_dead_worker_is_one_line_and_exit_1(tmp_path, monkeypatch):
    """Issue 15: a worker process of --workers N that dies (SIGKILL, out of memory) was a traceback."""
    import ntbench.runner

    def dies(*args, **kwargs):
        raise ntbench.runner.WorkersFailed("1 worker process(es) exited with codes [-9]; "
                                           "rerun the suite to finish the missing cells")

    monkeypatch.setattr(ntbench.runner, "run_suite", dies)
    path = write_suite(tmp_path / "w.yaml")
    result = runner.invoke(app, ["run", str(path), "--results", str(tmp_path / "res"), "--workers", "2"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, ntbench.runner.WorkersFailed)  # handled, not a traceback
    assert lines[-1] == "error: 1 worker process(es) exited with codes [-9]; rerun the suite to finish the missing cells"


def test_linked_settings_follow_their_axis_value_and_bad_links_are_named(tmp_path):
    """The learning rate each adapter was tuned to: cells stay named by the axis, configs carry the lr."""
    from ntbench.suite import Suite, trial_config

    spec = dict(name="l", objective="reasoning.tf_paper_oIoU",
                defaults={**FAST, "adapter_options": {}, "train": {**FAST["train"], "lr": 0.002}},
                axes={"adapter": ["neural", "lora"], "train.seed": [0, 1]})
    plain = Suite(**spec)
    linked = Suite(**spec, linked={"adapter": {"lora": {"train.lr": 0.0005, "train.weight_decay": 0.1}}})
    lrs = {(a, s): trial_config(linked, {"adapter": a, "train.seed": s}).train.lr
           for a in ("neural", "lora") for s in (0, 1)}
    assert lrs == {("neural", 0): 0.002, ("neural", 1): 0.002, ("lora", 0): 0.0005, ("lora", 1): 0.0005}
    assert trial_config(linked, {"adapter": "lora", "train.seed": 0}).train.weight_decay == 0.1
    assert trial_config(linked, {"adapter": "neural", "train.seed": 0}).train.weight_decay == 0.0
    assert linked.study_name() != plain.study_name()  # other cells: another study
    # a suite without links keeps its study name (results/paired_beta resumes: see the budget test)

    bad = write_suite(tmp_path / "bad.yaml", axes={"adapter": ["neural", "lora"], "train.seed": [0]},
                      defaults={**FAST, "adapter_options": {}},
                      linked={"adapter": {"lorra": {"train.lr": 0.001}, "lora": {"train.seed": 3, "train.lr": -1}},
                              "train.lr": {"0.001": {"train.steps": 3}}})
    with pytest.raises(SuiteError) as err:
        load_suite(bad)
    text = str(err.value)
    assert "linked.adapter.lorra: not a value of axes.adapter; allowed: neural, lora" in text
    assert "linked.adapter.lora.train.seed: 'train.seed' is an axis or range" in text
    assert "linked.train.lr: not an axis of this suite; allowed: adapter, train.seed" in text
    assert "train.lr" in text and "greater than 0" in text  # a linked value is checked in its cells


def test_report_names_linked_settings(tmp_path):
    from ntbench.report import method_lines
    from ntbench.suite import Suite

    suite = Suite(name="l", axes={"adapter": ["neural", "lora"]}, linked={"adapter": {"lora": {"train.lr": 0.0005}}})
    df = pd.DataFrame({"status": ["COMPLETE"] * 2, "param.adapter": ["neural", "lora"],
                       "reasoning.tf_paper_oIoU": [0.5, 0.4]})
    assert "Linked settings (a cell takes them with its axis value): adapter = lora: train.lr = 0.0005." \
        in method_lines(suite, df)


def test_a_lower_is_better_objective_is_minimized_unless_the_suite_says_otherwise():
    from ntbench.suite import Suite

    assert Suite(name="s", objective="t2i.FID").direction == "minimize"
    assert Suite(name="s", objective="trainable_params").direction == "minimize"
    assert Suite(name="s", objective="reasoning.tf_paper_oIoU").direction == "maximize"
    assert Suite(name="s", objective="t2i.FID", direction="maximize").direction == "maximize"  # stated: kept
    # the resolved direction is what the suite's hash sees: leaving the usual direction out renames no study
    assert Suite(name="s", objective="t2i.FID").content_hash() == \
        Suite(name="s", objective="t2i.FID", direction="minimize").content_hash()


def test_misspelled_report_metrics_fail_validation_with_the_nearest_name(tmp_path):
    bad = write_suite(tmp_path / "m.yaml", report={"metrics": ["reasoning.tf_paper_IoU", "step_time", "captioning.BLEU-4"]})
    with pytest.raises(SuiteError) as exc:
        load_suite(bad)
    text = str(exc.value)
    assert "report.metrics[0]: 'reasoning.tf_paper_IoU': reasoning reports no 'tf_paper_IoU' " \
           "(did you mean reasoning.tf_paper_oIoU?)" in text
    assert "report.metrics[1]: 'step_time': not a metric (did you mean 'step_time_s'?)" in text
    assert "report.metrics[2]" not in text  # a real metric, though this suite does not train captioning
    ok = write_suite(tmp_path / "ok.yaml", report={"metrics": ["reasoning.gen_paper_oIoU", "tflops_per_step"]})
    assert load_suite(ok).report.metrics == ["reasoning.gen_paper_oIoU", "tflops_per_step"]


def test_every_row_metric_a_suite_may_report_is_a_column_of_trials_csv(tmp_path):
    import optuna

    from ntbench.records import trial_rows
    from ntbench.suite import ROW_METRICS, Suite

    study = optuna.create_study(storage=make_storage(None, tmp_path), study_name="s")
    trial = study.ask()
    trial.set_user_attr("summary", {"train": {"step_time_s": 0.1}, "metrics": {"reasoning": {"tf_paper_oIoU": 0.4}}})
    study.tell(trial, 0.4)
    assert set(ROW_METRICS) <= set(trial_rows(Suite(name="s"), study).columns)


def test_a_misspelled_key_gets_did_you_mean_and_its_value_and_comes_before_the_claims_it_breaks(tmp_path):
    claims = {"table": "T", "claims": [{"says": "x", "a": {"adapter_options.beta": 0.3}, "b": {"adapter_options.beta": 0.7},
                                        "paper": {"a": 1.0, "b": 2.0}}]}
    bad = write_suite(tmp_path / "typo.yaml", axes={"adapter_options.beta": [0.3, 0.7], "train.sed": [0, 1]}, paper=claims)
    with pytest.raises(SuiteError) as exc:
        load_suite(bad)
    errors = exc.value.errors
    # the value 1 shows although the allowed keys contain "bf16": only the value as a whole counts as quoted
    assert any(e.startswith("axes.train.sed[1] = 1 -> train.sed: 1: unknown key (did you mean 'seed'?)")
               for e in errors), errors
    first_claim = next(i for i, e in enumerate(errors) if e.startswith("paper."))
    assert all(not e.startswith("paper.") for e in errors[:first_claim]) and first_claim > 0
    assert "objectve: 'x': unknown key (did you mean 'objective'?)" in \
        str(pytest.raises(SuiteError, load_suite, write_suite(tmp_path / "o.yaml", objectve="x")).value)


def test_invalid_yaml_names_the_file_not_a_string(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\naxes: [unclosed\n")
    with pytest.raises(SuiteError) as exc:
        load_suite(bad)
    assert f'in "{bad}"' in str(exc.value) and "<unicode string>" not in str(exc.value)
