"""`ntbench breakdown`: a saved trial's teacher-forced oIoU by question template and by objects tagged."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ntbench.breakdown import _own_target_best
from ntbench.cli import app
from ntbench.data.io import SampleDataset
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.eval.evaluate import build_items
from ntbench.train.trial import TrialConfig, run_trial

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-step neural trial on tiny-random that scores 16 reasoning samples (every template the small world has)."""
    data = generate(tmp_path_factory.mktemp("mw") / "mw", MicroWorldConfig(seed=5, train=8, val=16, test=2), workers=1)
    cfg = TrialConfig(backbone="tiny-random", data=str(data), adapter="neural", adapter_options={"dz": 8},
                      eval_samples=16, eval_generated=True,
                      train={"steps": 2, "batch_size": 4, "lr": 1e-2, "tasks": {"reasoning": 1, "referring": 1}})
    out = tmp_path_factory.mktemp("run") / "neural"
    run_trial(cfg, out)
    return out, data


def test_breakdown_splits_the_trials_own_masks_and_adds_up_to_its_oiou(run):
    out, data = run
    result = runner.invoke(app, ["breakdown", str(out), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    # all templates together: the trial's own teacher-forced oIoU (computed there in batches, here one sample at a time)
    assert got["tf_oIoU"] == pytest.approx(got["trial_tf_oIoU"], abs=1e-9)
    # every target object of every scored sample is one mask, counted once per view
    items = build_items(SampleDataset(data, "val"), "reasoning", 16, 0)
    targets = sum(len(it.example.target_objects) for it in items)
    assert sum(r["masks"] for r in got["templates"]) == targets == sum(r["masks"] for r in got["by_objects"])
    assert sum(r["samples"] for r in got["templates"]) == len(items) == got["samples"] == 16
    templates = {s.id: s.template for s in SampleDataset(data, "val").samples}
    assert {r["template"] for r in got["templates"]} == {templates[it.sample_id] for it in items}
    per_template = {r["template"]: r["masks"] for r in got["templates"]}
    for name, masks in per_template.items():  # the second view splits each template's masks by objects tagged
        assert sum(r["masks"] for r in got["by_objects"] if r["template"] == name) == masks
    for row in got["by_objects"]:  # one object: no choice to make; k objects: chance is masks / k
        if row["objects"] == 1:
            assert row["own_target_best"] is None and row["chance"] is None
        else:
            assert 0 <= row["own_target_best"] <= row["masks"]
            assert row["chance"] == pytest.approx(row["masks"] / row["objects"])
    table = runner.invoke(app, ["breakdown", str(out)])
    assert table.exit_code == 0 and "identical to the trial's" in table.output and "count" in table.output


def test_own_target_best_counts_masks_nearest_their_own_target():
    left, right, middle = (np.zeros((4, 4), bool) for _ in range(3))
    left[:, :2], right[:, 2:], middle[1:3, 1:3] = True, True, True
    assert _own_target_best([left, right], [left, right]) == 2  # each on its own
    assert _own_target_best([right, left], [left, right]) == 0  # swapped: each nearest the other's target
    assert _own_target_best([left, left], [left, right]) == 1  # both on the first target
    # the middle square overlaps both halves equally (IoU 2/10): the first target wins the tie
    assert _own_target_best([middle, middle], [left, right]) == 1


def test_breakdown_names_the_tasks_a_trial_scored(run, tmp_path):
    out, _ = run
    result = runner.invoke(app, ["breakdown", str(out), "--task", "captioning"])
    assert result.exit_code == 2 and "scored no segmentation for task 'captioning'" in result.output
    assert "reasoning, referring" in result.output
    missing = runner.invoke(app, ["breakdown", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a trial's output folder" in missing.output


def test_breakdown_counts_generated_answers_per_template_as_the_trial_counts_them_all(run):
    from ntbench.breakdown import breakdown_run

    out, _ = run
    got = breakdown_run(out, generated=True)
    trial = json.loads((out / "metrics.json").read_text())["metrics"]["reasoning"]["gen_answer_accuracy"]
    right = sum(r["answer_accuracy"] * r["samples"] for r in got["templates"])
    assert right / got["samples"] == pytest.approx(trial)  # the templates' right answers add up to the trial's
    assert all(0 <= r["answer_accuracy"] <= 1 for r in got["templates"])


def test_breakdown_credits_each_generated_answer_to_its_own_template(run, monkeypatch):
    """With answers right exactly for the counting questions, every template but count scores 0 and count 1."""
    import ntbench.breakdown as breakdown

    out, data = run
    templates = {s.id: s.template for s in SampleDataset(data, "val").samples}

    def answers(model, items, batch_size, device, max_new_tokens):
        return [it.example.answer if templates[it.sample_id] == "count" else "no idea" for it in items], [], []

    monkeypatch.setattr(breakdown, "_generated", answers)
    got = breakdown.breakdown_run(out, generated=True)
    assert {r["template"]: r["answer_accuracy"] for r in got["templates"]} == \
        {r["template"]: float(r["template"] == "count") for r in got["templates"]}
    assert "count" in {r["template"] for r in got["templates"]}
