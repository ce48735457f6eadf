"""optuna-dashboard (the [test] extra) opens a suite's storage: named objective, intermediate values."""
import io
import json
import wsgiref.util

import pytest
import yaml

from ntbench.runner import make_storage, run_suite
from ntbench.suite import load_suite

optuna_dashboard = pytest.importorskip("optuna_dashboard")  # pip install -e '.[test]'


def _get(app, path: str) -> dict:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    wsgiref.util.setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


def test_the_dashboard_shows_a_suite_s_named_objective_and_intermediate_values(tmp_path, monkeypatch):
    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "dash.yaml"
    path.write_text(yaml.safe_dump({
        "name": "dash", "objective": "reasoning.tf_paper_oIoU", "axes": {"train.seed": [0]},
        "defaults": {"backbone": "tiny-random", "data": "microworld:40", "eval_samples": 2, "eval_generated": False,
                     "adapter_options": {"dz": 8},
                     "train": {"steps": 2, "batch_size": 2, "warmup": 0, "eval_every": 1, "tasks": {"reasoning": 1}}}}))
    suite = load_suite(path)
    run_suite(suite, tmp_path / "res")
    app = optuna_dashboard.wsgi(make_storage(None, tmp_path / "res" / "dash"))
    (study,) = _get(app, "/api/studies")["study_summaries"]
    assert study["study_name"] == suite.study_name()
    detail = _get(app, f"/api/studies/{study['study_id']}")
    assert detail["objective_names"] == ["reasoning.tf_paper_oIoU"]  # from study.set_metric_names
    (trial,) = detail["trials"]
    assert trial["state"] == "Complete" and [v["step"] for v in trial["intermediate_values"]] == [1]
    assert "activation_frequency_file" in {a["key"] for a in trial["user_attrs"]}
