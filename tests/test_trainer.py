"""The shared trainer, evaluation and trial runner on tiny-random with all four tasks."""
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ntbench.data.io import SampleDataset
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.eval.evaluate import build_items, evaluate
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.backbone import Backbone, BackboneError, load_backbone
from ntbench.model.batching import collate
from ntbench.train.trainer import TrainConfig, train

TASKS4 = ["referring", "reasoning", "captioning", "t2i"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("d") / "mw", MicroWorldConfig(seed=5, train=24, val=8, test=0), workers=1)


def fixed_batch(model, ds):
    items = [it for t in TASKS4 for it in build_items(ds, t, 2, seed=0)]
    return collate(items, model.tokenizer)


def finite(obj):
    if isinstance(obj, dict):
        return all(finite(v) for k, v in obj.items() if k not in ("examples",))
    if isinstance(obj, list):
        return all(finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


@pytest.mark.parametrize("adapter", ["neural", "lora", "prefix", "ia3", "frozen", "full"])
def test_each_adapter_trains_on_all_tasks(adapter, data):
    torch.manual_seed(0)
    ds = SampleDataset(data, "train")
    options = {"dz": 16} if adapter == "neural" else {}
    model = AllInTokenModel(load_backbone("tiny-random"), adapter, options)
    batch = fixed_batch(model, ds)
    model.eval()
    with torch.no_grad():
        before = model(batch)
    result = train(model, ds, TrainConfig(steps=15, batch_size=8, lr=3e-3, warmup=2, device="cpu"))
    model.eval()
    with torch.no_grad():
        after = model(batch)
    assert after["loss"] < before["loss"]
    assert result["step_time_s"] > 0 and result["peak_memory_mb"] > 0 and result["tokens_per_s"] > 0
    metrics = evaluate(model, SampleDataset(data, "val"), TASKS4, n_samples=4, batch_size=4, max_new_tokens=6)
    assert finite(metrics)
    for task in ("referring", "reasoning"):  # teacher-forced and generated, both conventions
        for key in ("tf_paper_oIoU", "tf_paper_mIoU", "tf_lisa_gIoU", "tf_lisa_cIoU", "gen_paper_oIoU", "gen_lisa_gIoU"):
            assert key in metrics[task]
        assert 0.0 <= metrics[task]["gen_answer_accuracy"] <= 1.0
    assert {"BLEU-4", "CIDEr", "ROUGE-L", "METEOR"} <= set(metrics["captioning"])
    assert {"FID", "KID", "embedding_mse"} <= set(metrics["t2i"])
    if adapter == "neural":  # per-task, per-layer activation frequency of every neuron
        freq = metrics["activation_frequency"]
        assert set(freq) == set(TASKS4) and len(freq["referring"]) == 2 and len(freq["referring"][0]) == 16
        assert all(0.0 <= f <= 1.0 for f in freq["t2i"][1])


def test_only_trainable_parts_change(data):
    torch.manual_seed(0)
    model = AllInTokenModel(load_backbone("tiny-random"), "lora")
    trainable = {id(p) for p in model.trainable_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, SampleDataset(data, "train"), TrainConfig(steps=3, batch_size=4, device="cpu"))
    for n, p in model.named_parameters():
        if id(p) not in trainable:
            assert torch.equal(p.detach(), before[n]), n
    assert not torch.equal(model.new_embed.detach(), before["new_embed"])


def test_task_ratio_zero_excludes_task(data):
    from ntbench.train.trainer import TaskMixer
    mixer = TaskMixer(SampleDataset(data, "train"), {"captioning": 1.0, "t2i": 0.0}, seed=0)
    assert {it.example.task for it in mixer.draw(20)} == {"captioning"}


def test_unknown_task_did_you_mean():
    with pytest.raises(Exception, match="Did you mean 'reasoning'"):
        TrainConfig(tasks={"reasonin": 1.0})


def test_backbone_not_available_offline():
    with pytest.raises(BackboneError, match="not available offline: it must be a local path or a model already"):
        load_backbone(llm="no-such-org/no-such-llm", vision="no-such-org/no-such-vision")
    with pytest.raises(BackboneError, match="/no/such/llm: not found"):  # a path is a path, not a hub id
        load_backbone(llm="/no/such/llm", vision="/no/such/vision")


def test_mismatched_backbone_parts():
    bb = load_backbone("tiny-random")
    with pytest.raises(BackboneError, match=r"seg_layers \[-1, -7\].*allowed: -3\.\.3"):
        Backbone("x", bb.llm, bb.tokenizer, bb.vision, seg_layers=(-1, -7)).check()
    bb.llm.resize_token_embeddings(10)
    with pytest.raises(BackboneError, match="tokenizer has .* tokens but the LLM's embedding has only 10 rows"):
        bb.check()


def test_backbone_from_local_paths(tmp_path):
    bb = load_backbone("tiny-random")
    bb.llm.save_pretrained(tmp_path / "llm")
    bb.tokenizer.save_pretrained(tmp_path / "llm")
    bb.vision.save_pretrained(tmp_path / "vision")
    loaded = load_backbone(llm=str(tmp_path / "llm"), vision=str(tmp_path / "vision"))
    ids = torch.tensor([[1, 5, 7]])
    assert torch.equal(loaded.llm(ids).logits, bb.llm(ids).logits)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_ddp_two_processes_end_identical(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [shutil.which("torchrun"), "--nproc_per_node", "2", "--master_port", "29533",
           os.path.join(os.path.dirname(__file__), "ddp_worker.py"), str(data), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["world_size"] == r1["world_size"] == 2
    for name, value in r0["state"].items():
        assert torch.equal(value, r1["state"][name]), name
    # the ranks drew different data, so without gradient averaging they would differ
    (tmp_path / "single").mkdir()
    single = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "ddp_worker.py"),
                             str(data), str(tmp_path / "single")], capture_output=True, text=True, timeout=300, env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    solo = torch.load(tmp_path / "single" / "rank0.pt")
    assert any(not torch.equal(v, solo["state"][k]) for k, v in r0["state"].items())


def test_evaluation_draw_does_not_follow_the_training_seed(data, monkeypatch):
    """Two training seeds are scored on the same samples and expressions (eval_seed), so their
    spread is the training's, not the evaluation draw's."""
    import ntbench.eval.evaluate as ev
    from ntbench.train.trial import TrialConfig, run_trial

    seen = []
    real = ev.evaluate
    monkeypatch.setattr(ev, "evaluate", lambda *a, **kw: seen.append(kw["seed"]) or real(*a, **kw))
    for seed, eval_seed in ((0, 0), (1, 0), (1, 7)):
        cfg = TrialConfig(data=str(data), adapter="frozen", eval_samples=4, eval_generated=False, eval_seed=eval_seed,
                          train=TrainConfig(steps=1, batch_size=2, seed=seed, tasks={"referring": 1.0}))
        run_trial(cfg)
    assert seen == [0, 0, 7]
    ds = SampleDataset(data, "val")  # and the seed does pick the expressions
    draws = {tuple(it.example.prompt for it in build_items(ds, "referring", 8, seed=s)) for s in range(4)}
    assert len(draws) > 1
