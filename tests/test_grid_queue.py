"""`ntbench run` resumes a grid where it stopped (a stopped cell keeps its place in the queue),
`--claims-first` queues the cells a suite's paper claims compare before the rest of its grid,
and `ntbench validate` refuses axes whose order would silently drop a value."""
import json

import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from ntbench.cli import app
from ntbench.cli.grid_queue import ClaimsFirstError, claim_cells_first, keep_places
from ntbench.records import INTERRUPTED
from ntbench.runner import _suggest, prepare_study, suite_dir
from ntbench.storage import make_storage
from ntbench.suite import load_suite

runner = CliRunner()
FAST = {"backbone": "tiny-random", "data": "microworld:40", "adapter": "neural", "adapter_options": {"dz": 8},
        "eval_samples": 2, "eval_generated": False,
        "train": {"steps": 1, "batch_size": 2, "warmup": 0, "tasks": {"reasoning": 1}}}
# in the grid's own order (beta outermost) the claims' cells, beta 0.5 and 0.3, come last and second
CLAIMS = {"table": "T", "claims": [
    {"says": "0.5 beats 0.3", "a": {"adapter_options.beta": 0.5}, "b": {"adapter_options.beta": 0.3},
     "paper": {"a": 2, "b": 1}},
    {"says": "0.5 beats a printed value", "a": {"adapter_options.beta": 0.5}, "b": 0.2, "paper": {"a": 2, "b": 1}}]}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))


def _suite(tmp_path, paper=CLAIMS, name="cf"):
    path = tmp_path / f"{name}.yaml"
    body = {"name": name, "defaults": FAST,
            "axes": {"adapter_options.beta": [0.1, 0.3, 0.5], "train.seed": [0, 1]},
            "objective": "reasoning.tf_paper_oIoU"}
    path.write_text(yaml.safe_dump({**body, "paper": paper} if paper else body))
    return path


def _waiting_order(suite, results):
    folder = suite_dir(suite, results)
    study, todo = prepare_study(suite, make_storage(None, folder), folder)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return todo, [(t.system_attrs["fixed_params"]["adapter_options.beta"],
                   t.system_attrs["fixed_params"]["train.seed"]) for t in trials]


def test_claim_cells_are_queued_first_in_claim_order_and_the_runner_adds_the_rest(tmp_path):
    suite = load_suite(_suite(tmp_path))
    assert claim_cells_first(suite, tmp_path / "runs", None).queued == 6  # the whole grid, claims' cells first
    again = claim_cells_first(suite, tmp_path / "runs", None)
    assert (again.queued, again.moved) == (0, 0)  # queued once, in order: a second call changes nothing
    todo, order = _waiting_order(suite, tmp_path / "runs")
    # claim 1: A (0.5) then B (0.3), seeds together; claim 2's cell is 0.5 again; then the rest, grid order
    assert todo == 6 and order == [(0.5, 0), (0.5, 1), (0.3, 0), (0.3, 1), (0.1, 0), (0.1, 1)]


def _waiting(study):
    """(beta, seed) of the waiting trials, oldest first (the order Optuna hands them out), checking that each
    trial's cell label names the parameters it will run."""
    waiting = sorted(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=lambda t: t.number)
    for t in waiting:
        assert json.loads(t.user_attrs["cell"]) == t.system_attrs["fixed_params"]
    return [(t.system_attrs["fixed_params"]["adapter_options.beta"], t.system_attrs["fixed_params"]["train.seed"])
            for t in waiting]


CLAIMS_ORDER = [(0.5, 0), (0.5, 1), (0.3, 0), (0.3, 1), (0.1, 0), (0.1, 1)]


def test_a_grid_queued_in_its_own_order_is_reordered_claims_first(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    prepare_study(suite, make_storage(None, folder), folder)  # a plain run queued the grid: beta 0.1 first
    done = claim_cells_first(suite, tmp_path / "runs", None)
    # nothing to queue; (0.1,0)<->(0.5,0) and (0.1,1)<->(0.5,1) swap places, (0.3, s) stay: 4 trials move
    assert (done.queued, done.moved, done.not_moved) == (0, 4, "")
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    assert _waiting(study) == CLAIMS_ORDER
    trial = study.ask()  # the next trial a worker takes suggests the moved cell's values
    assert _suggest(trial, suite) == {"adapter_options.beta": 0.5, "train.seed": 0}
    assert trial.user_attrs["cell"] == json.dumps({"adapter_options.beta": 0.5, "train.seed": 0}, sort_keys=True)


def test_a_claim_cell_stopped_by_ctrl_c_runs_next_not_after_the_grid(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    claim_cells_first(suite, tmp_path / "runs", None)
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    trial = study.ask()  # a worker took (0.5, 0), then the run was stopped
    assert study.get_trials()[trial.number].system_attrs["fixed_params"] == {"adapter_options.beta": 0.5, "train.seed": 0}
    trial.set_user_attr("fail_reason", INTERRUPTED)
    study.tell(trial, state=TrialState.FAIL)
    study, _ = prepare_study(suite, make_storage(None, folder), folder)  # a plain resume queues it last
    assert _waiting(study) == CLAIMS_ORDER[1:] + [(0.5, 0)]
    done = claim_cells_first(suite, tmp_path / "runs", None)
    assert (done.queued, done.moved) == (0, 6)  # already queued again; every waiting trial shifts one place
    assert _waiting(study) == CLAIMS_ORDER


def test_a_stopped_cell_of_the_rest_goes_back_to_its_place_in_the_grid(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    claim_cells_first(suite, tmp_path / "runs", None)
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    for _ in range(4):  # the claims' four trials complete
        study.tell(study.ask(), 0.5)
    trial = study.ask()  # (0.1, 0) is stopped by Ctrl-C
    trial.set_user_attr("fail_reason", INTERRUPTED)
    study.tell(trial, state=TrialState.FAIL)
    done = claim_cells_first(suite, tmp_path / "runs", None)
    assert (done.queued, done.moved) == (1, 2)  # queued again, then moved ahead of (0.1, 1)
    study, todo = prepare_study(suite, make_storage(None, folder), folder)
    assert todo == 2 and _waiting(study) == [(0.1, 0), (0.1, 1)]


def test_a_dead_workers_retry_keeps_its_place_and_cell(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    prepare_study(suite, make_storage(None, folder), folder)  # the grid's own order: (0.1, 0) first
    study = prepare_study(suite, make_storage(None, folder), folder)[0]
    _suggest(study.ask(), suite)  # (0.1, 0) RUNNING, its worker killed: no lease holds it
    study, _ = prepare_study(suite, make_storage(None, folder), folder)  # recovered: retried at the end
    retry = max(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert retry.state == TrialState.WAITING and retry.params == {"adapter_options.beta": 0.1, "train.seed": 0}
    done = claim_cells_first(suite, tmp_path / "runs", None)
    assert (done.queued, done.moved) == (0, 5)  # all five plain waiting trials change cell; the retry is not one
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    after = {t.number: t for t in study.get_trials(deepcopy=False)}[retry.number]
    assert after.params == retry.params and after.user_attrs["cell"] == retry.user_attrs["cell"]
    assert after.system_attrs["fixed_params"] == retry.system_attrs["fixed_params"]
    plain = [(t.system_attrs["fixed_params"]["adapter_options.beta"], t.system_attrs["fixed_params"]["train.seed"])
             for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)), key=lambda t: t.number)
             if t.number != retry.number]
    assert plain == [(0.5, 0), (0.5, 1), (0.3, 0), (0.3, 1), (0.1, 1)]


def test_on_a_database_with_running_trials_the_queue_is_left_alone_and_says_why(tmp_path):
    suite = load_suite(_suite(tmp_path))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    folder = suite_dir(suite, tmp_path / "runs")
    study, _ = prepare_study(suite, make_storage(url, folder), folder)
    study.ask()  # (0.1, 0) runs, perhaps on another machine
    done = claim_cells_first(suite, tmp_path / "runs", url)
    assert done.moved == 0 and "not reordered" in done.not_moved and "running" in done.not_moved
    assert _waiting(study) == [(0.1, 1), (0.3, 0), (0.3, 1), (0.5, 0), (0.5, 1)]


def test_without_the_flag_the_grid_keeps_its_own_order(tmp_path):
    suite = load_suite(_suite(tmp_path))
    assert _waiting_order(suite, tmp_path / "runs")[1] == [(b, s) for b in (0.1, 0.3, 0.5) for s in (0, 1)]


GRID_ORDER = [(b, s) for b in (0.1, 0.3, 0.5) for s in (0, 1)]


def _stop_next(study):
    """A worker takes the next waiting trial, then the run is stopped by Ctrl-C; returns its (beta, seed)."""
    trial = study.ask()
    cell = study.get_trials(deepcopy=False)[trial.number].system_attrs["fixed_params"]
    trial.set_user_attr("fail_reason", INTERRUPTED)
    study.tell(trial, state=TrialState.FAIL)
    return cell["adapter_options.beta"], cell["train.seed"]


def test_a_plain_resume_runs_a_stopped_cell_in_its_place_not_last(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    study.tell(study.ask(), 0.5)  # (0.1, 0) completes
    assert _stop_next(study) == (0.1, 1)
    done = keep_places(suite, tmp_path / "runs", None)
    # (0.1, 1) queued again as the newest trial, then every waiting trial shifts one place back
    assert (done.queued, done.moved, done.not_moved) == (1, 5, "")
    study, todo = prepare_study(suite, make_storage(None, folder), folder)  # the runner finds nothing missing
    assert todo == 5 and _waiting(study) == GRID_ORDER[1:]
    assert keep_places(suite, tmp_path / "runs", None).moved == 0  # in place: a second resume moves nothing


def test_a_plain_resume_keeps_the_claims_first_order_a_claims_first_run_queued(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    claim_cells_first(suite, tmp_path / "runs", None)
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    assert _stop_next(study) == (0.5, 0)
    done = keep_places(suite, tmp_path / "runs", None)
    assert (done.queued, done.moved) == (1, 6)
    assert _waiting(study) == CLAIMS_ORDER  # not the grid's own order: each cell keeps its place


def test_a_cell_stopped_before_a_claims_first_run_keeps_the_place_that_run_gave_it(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    study, _ = prepare_study(suite, make_storage(None, folder), folder)  # a plain run, the grid's order
    study.tell(study.ask(), 0.5)  # (0.1, 0) completes
    assert _stop_next(study) == (0.1, 1)  # stopped as trial 1
    claim_cells_first(suite, tmp_path / "runs", None)  # (0.1, 1) queued again, now behind the claims' cells
    assert _stop_next(study) == (0.5, 0)
    keep_places(suite, tmp_path / "runs", None)
    # (0.1, 1)'s first attempt (trial 1) is older than all, but its place is the one claims-first gave it
    assert _waiting(study) == [(0.5, 0), (0.5, 1), (0.3, 0), (0.3, 1), (0.1, 1)]


def test_a_cell_stopped_twice_goes_back_to_where_it_was_handed_out_last(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    study.tell(study.ask(), 0.5)  # (0.1, 0)
    study.tell(study.ask(), 0.5)  # (0.1, 1)
    assert _stop_next(study) == (0.3, 0)
    keep_places(suite, tmp_path / "runs", None)
    assert _stop_next(study) == (0.3, 0)  # handed out first again, and stopped again
    keep_places(suite, tmp_path / "runs", None)
    assert _waiting(study) == GRID_ORDER[2:]


def test_a_retry_stopped_by_ctrl_c_gives_its_cell_back(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    trial = study.ask()  # (0.1, 0) fails for real
    trial.set_user_attr("fail_reason", "ValueError: boom")
    study.tell(trial, state=TrialState.FAIL)
    study, _ = prepare_study(suite, make_storage(None, folder), folder, retry_failed=True)  # retry at the end
    for _ in range(5):
        study.tell(study.ask(), 0.5)  # the rest of the grid completes
    retry = study.ask()
    assert study.get_trials()[retry.number].user_attrs["retry_of"] == trial.number
    retry.set_user_attr("fail_reason", INTERRUPTED)
    study.tell(retry, state=TrialState.FAIL)  # the retry is stopped by Ctrl-C
    # the failed original is replaced by its retry, the retry was stopped: without care no trial holds the cell
    assert keep_places(suite, tmp_path / "runs", None).queued == 1
    assert _waiting(study) == [(0.1, 0)]


def test_a_sampled_suite_has_no_cells_to_keep_in_place(tmp_path):
    path = tmp_path / "sampled.yaml"
    path.write_text(yaml.safe_dump({"name": "sampled", "defaults": FAST, "objective": "reasoning.tf_paper_oIoU",
                                    "ranges": {"adapter_options.beta": {"low": 0.1, "high": 0.9}},
                                    "sampler": {"type": "tpe", "n_trials": 2}}))
    assert keep_places(load_suite(path), tmp_path / "runs", None).queued == 0
    assert not (tmp_path / "runs" / "sampled").exists()  # not even a folder made


def test_the_cli_resumes_a_stopped_grid_in_place_and_says_so(tmp_path):
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    _stop_next(study)
    res = runner.invoke(app, ["run", str(_suite(tmp_path)), "--results", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "resuming: 6 waiting trial(s) reordered" in " ".join(res.output.split())
    rows = pd.read_csv(tmp_path / "runs" / "cf" / "trials.csv")
    assert len(rows) == 6 and set(rows.status) == {"COMPLETE"}


def test_the_cli_runs_the_claims_cells_first(tmp_path):
    res = runner.invoke(app, ["run", str(_suite(tmp_path)), "--results", str(tmp_path / "runs"), "--claims-first"])
    assert res.exit_code == 0, res.output
    assert "queued 6 trial(s)" in res.output
    # the closing summary names the axis in words, as the report does, not by its storage key
    assert "neuron activation rate β" in res.output and "param.adapter_options.beta" not in res.output
    rows = pd.read_csv(tmp_path / "runs" / "cf" / "trials.csv").sort_values("trial")
    assert list(rows["param.adapter_options.beta"]) == [0.5, 0.5, 0.3, 0.3, 0.1, 0.1]
    assert set(rows.status) == {"COMPLETE"}


def test_a_suite_without_claims_is_refused_with_its_name(tmp_path):
    path = _suite(tmp_path, paper=None, name="plain")
    with pytest.raises(ClaimsFirstError, match="plain judges no paper claims"):
        claim_cells_first(load_suite(path), tmp_path / "runs", None)
    res = runner.invoke(app, ["run", str(path), "--results", str(tmp_path / "runs"), "--claims-first"])
    assert res.exit_code == 2 and "judges no paper claims" in res.output
    assert not (tmp_path / "runs" / "plain" / "trials.csv").exists()  # nothing ran


def _validate(tmp_path, axes: dict):
    path = tmp_path / "order.yaml"
    path.write_text(yaml.safe_dump({"name": "order", "defaults": FAST, "objective": "reasoning.tf_paper_oIoU",
                                    "axes": axes}, sort_keys=False))
    return runner.invoke(app, ["validate", str(path)])


def test_an_axis_that_replaces_an_earlier_axis_value_is_refused(tmp_path):
    strategies, betas = [{"strategy": "gaussian"}, {"strategy": "level"}], [0.4, 1.0]
    # adapter_options after adapter_options.beta: every cell would train the strategy's default beta
    res = _validate(tmp_path, {"adapter_options.beta": betas, "adapter_options": strategies})
    assert res.exit_code == 2
    assert "axes.adapter_options: listed after axes.adapter_options.beta" in res.output
    # the other order lays beta on each strategy's options, and is fine
    assert _validate(tmp_path, {"adapter_options": strategies, "adapter_options.beta": betas}).exit_code == 0


def test_a_stopped_cell_the_runner_queued_again_at_the_end_goes_back_to_its_place(tmp_path):
    # a Python caller of run_suite (or an ntbench older than the placed mark) queues a stopped cell again
    # behind the whole grid; the next `ntbench run` must still run it where it was handed out
    suite = load_suite(_suite(tmp_path))
    folder = suite_dir(suite, tmp_path / "runs")
    study, _ = prepare_study(suite, make_storage(None, folder), folder)
    study.tell(study.ask(), 0.5)  # (0.1, 0) completes
    assert _stop_next(study) == (0.1, 1)  # stopped as trial 1
    study, _ = prepare_study(suite, make_storage(None, folder), folder)  # the runner alone: queued last
    assert _waiting(study) == GRID_ORDER[2:] + [(0.1, 1)]
    done = keep_places(suite, tmp_path / "runs", None)
    assert (done.queued, done.moved) == (0, 5)  # nothing missing; every waiting trial shifts one place
    assert _waiting(study) == GRID_ORDER[1:]
    assert keep_places(suite, tmp_path / "runs", None).moved == 0  # the places are now marked: they stay
