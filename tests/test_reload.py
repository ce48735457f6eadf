"""Runs you can reload: a trial's output folder gives back the trained model and its metrics."""
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from ntbench.cli import app
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.model.allintoken import AllInTokenModel
from ntbench.train import trial
from ntbench.train.trial import RunFolderError, TrialConfig, evaluate_run, run_trial

runner = CliRunner()
TASKS = {"referring": 2, "reasoning": 2, "captioning": 1, "t2i": 1}  # every metric family, FID included
ADAPTERS = {"neural": {"dz": 8}, "lora": {"r": 2}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("mw") / "mw", MicroWorldConfig(seed=3, train=8, val=4, test=4), workers=1)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """Two-step trials on tiny-random, with the trained models kept in memory to compare against."""
    root, trained = tmp_path_factory.mktemp("runs"), {}
    build = trial.build_model
    with pytest.MonkeyPatch.context() as patch:
        for adapter, options in ADAPTERS.items():
            patch.setattr(trial, "build_model", lambda cfg, a=adapter: trained.setdefault(a, build(cfg)))
            cfg = TrialConfig(backbone="tiny-random", data=str(data), adapter=adapter, adapter_options=options,
                              eval_samples=2, train={"steps": 2, "batch_size": 4, "lr": 1e-2, "tasks": TASKS})
            run_trial(cfg, root / adapter)
    return {a: (root / a, trained[a].eval(), cfg) for a, cfg in ((a, _config(root / a)) for a in ADAPTERS)}


def _config(run_dir):
    return TrialConfig(**json.loads((run_dir / "metrics.json").read_text())["config"])


def _as_saved(metrics):
    return json.dumps(metrics, sort_keys=True, default=str)


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_eval_of_a_saved_run_gives_the_trials_metrics(adapter, runs):
    run_dir, _, _ = runs[adapter]
    result = runner.invoke(app, ["eval", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    saved = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert _as_saved(got["metrics"]) == _as_saved(saved)
    assert got["reproduces_trial"] is True
    assert {"referring", "reasoning", "captioning", "t2i"} <= set(saved) and "FID" in saved["t2i"]
    assert "gen_paper_oIoU" in saved["reasoning"]


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_reloaded_model_equals_the_trained_one(adapter, runs):
    """Every tensor, frozen backbone included; and training moved them, so this compares something."""
    run_dir, trained, cfg = runs[adapter]
    loaded = AllInTokenModel.from_pretrained(run_dir)
    want, got = trained.state_dict(), loaded.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    fresh = trial.build_model(cfg).state_dict()
    assert any(not torch.equal(fresh[k], want[k]) for k in want if "lora_B" in k or "w_b" in k)
    assert want["mask_decoder.whiten.batches_seen"] > 0  # the whitening statistics are saved as trained
    assert not torch.equal(fresh["mask_decoder.whiten.transform"], want["mask_decoder.whiten.transform"])


def test_peft_loads_the_runs_lora(runs):
    from peft import PeftModel, get_peft_model_state_dict

    from ntbench.model.backbone import load_backbone

    run_dir, trained, _ = runs["lora"]
    peft_model = PeftModel.from_pretrained(load_backbone("tiny-random").llm, run_dir / "adapter")
    theirs = {k.removeprefix("base_model.model."): v
              for k, v in get_peft_model_state_dict(peft_model, save_embedding_layers=False).items()}
    ours = get_peft_model_state_dict(trained.llm, save_embedding_layers=False)
    assert len(ours) == 8 and set(theirs) == set(ours)  # lora_A and lora_B on q and v, in 2 layers
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


def test_eval_overrides_change_the_evaluation(runs, tmp_path):
    run_dir, _, _ = runs["neural"]
    out = tmp_path / "eval.json"
    cli = runner.invoke(app, ["eval", str(run_dir), "--split", "test", "--samples", "2", "--no-generated",
                              "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    result = json.loads(out.read_text())
    assert result["evaluation"]["split"] == "test" and result["reproduces_trial"] is None
    assert result["metrics"]["referring"]["n_samples"] == 2
    assert "tf_paper_oIoU" in result["metrics"]["reasoning"]
    assert not any(k.startswith("gen_") for k in result["metrics"]["reasoning"])


def test_eval_errors_exit_2(runs, tmp_path):
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    not_a_run = runner.invoke(app, ["eval", str(tmp_path)])
    assert not_a_run.exit_code == 2 and "not a trial's output folder" in not_a_run.output
    old = tmp_path / "old"  # a finished run from before models were saved whole
    old.mkdir()
    shutil.copy(runs["neural"][0] / "metrics.json", old)
    result = runner.invoke(app, ["eval", str(old)])
    assert result.exit_code == 2 and "model_config.json not found" in result.output
    with pytest.raises(RunFolderError, match="no such folder"):
        evaluate_run(tmp_path / "nope")
    moved = tmp_path / "moved"  # the dataset the trial read is gone
    shutil.copytree(runs["neural"][0], moved)
    summary = json.loads((moved / "metrics.json").read_text())
    (moved / "metrics.json").write_text(json.dumps({**summary, "data": str(tmp_path / "gone")}))
    result = runner.invoke(app, ["eval", str(moved)])
    assert result.exit_code == 2 and "gone" in result.output and "not found" in result.output


def test_a_different_backbone_is_refused(runs, tmp_path):
    from ntbench.model.backbone import BackboneError

    run_dir = tmp_path / "run"
    shutil.copytree(runs["neural"][0], run_dir)
    config = json.loads((run_dir / "model_config.json").read_text())
    (run_dir / "model_config.json").write_text(json.dumps({**config, "backbone": {"name": "tiny-random", "seed": 1}}))
    with pytest.raises(BackboneError, match="differs from the one the model was trained on"):
        AllInTokenModel.from_pretrained(run_dir)
    result = runner.invoke(app, ["eval", str(run_dir)])
    assert result.exit_code == 2 and "fingerprint" in result.output


@pytest.mark.parametrize("adapter,options,extra", [
    ("ia3", {}, {"train_embeddings": True, "pixel_refiner": True}),  # trained LLM embeddings are saved too
    ("prefix", {"num_virtual_tokens": 2}, {"whiten_state": False, "max_objects": 3, "decoder_width": 32}),
    ("frozen", {}, {"lambda_bce": 0.5}),
])
def test_save_and_reload_every_model_option(adapter, options, extra, tmp_path):
    from ntbench.model.backbone import load_backbone

    model = AllInTokenModel(load_backbone("tiny-random"), adapter, options, seed=5, **extra)
    with torch.no_grad():  # stands for training: every trainable tensor moves
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path)
    loaded = AllInTokenModel.from_pretrained(tmp_path)
    want, got = model.state_dict(), loaded.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert loaded.init_options == model.init_options and not loaded.training
    assert len(loaded.tokenizer) == len(model.tokenizer)
