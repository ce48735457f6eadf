"""`ntbench bench trial`: a trial's wall time split into phases that add up."""
import pytest

from ntbench.bench import trial_benchmark
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.train.trial import TrialConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("bt") / "mw", MicroWorldConfig(seed=4, train=16, val=8, test=0), workers=1)


def test_phases_cover_the_trial_and_add_up(data):
    cfg = TrialConfig(backbone="tiny-random", data=str(data), eval_samples=3,
                      train={"steps": 3, "batch_size": 2, "tasks": {"referring": 1, "captioning": 1}})
    res = trial_benchmark(cfg)
    parts = {(r["phase"], r["part"]) for r in res["rows"]}
    assert ("setup", "data + backbone + model") in parts
    assert {("eval", "referring: teacher-forced"), ("eval", "referring: generated answers"),
            ("eval", "captioning: generated captions")} <= parts
    assert any(p == "train" and part.startswith("forward: llm") for p, part in parts)
    assert all(r["seconds"] >= 0 for r in res["rows"])
    measured = sum(r["seconds"] for r in res["rows"])
    assert measured <= res["total_s"]
    train = {r["part"]: r["seconds"] for r in res["rows"] if r["phase"] == "train"}
    # backward + optimizer is the remainder of the training time: the measured parts must leave one
    assert train["backward + optimizer + rest of forward"] > 0
    assert res["steps"] == 3 and res["threads"] >= 1
