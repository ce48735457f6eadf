"""optuna-dashboard (the [test] extra) opens a suite's storage: named objective, intermediate values."""
import io
import json
import wsgiref.util

import pytest

from ntbench.runner import make_storage
from tests.conftest import run_tiny_reasoning_suite

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
    suite, folder = run_tiny_reasoning_suite(tmp_path, "dash")
    app = optuna_dashboard.wsgi(make_storage(None, folder))
    (study,) = _get(app, "/api/studies")["study_summaries"]
    assert study["study_name"] == suite.study_name()
    detail = _get(app, f"/api/studies/{study['study_id']}")
    assert detail["objective_names"] == ["reasoning.tf_paper_oIoU"]  # from study.set_metric_names
    (trial,) = detail["trials"]
    assert trial["state"] == "Complete" and [v["step"] for v in trial["intermediate_values"]] == [1]
    assert "activation_frequency_file" in {a["key"] for a in trial["user_attrs"]}
