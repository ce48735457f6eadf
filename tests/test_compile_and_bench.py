"""torch.compile on an adapted LLaMA (no graph break, same numbers) and the paper-scale benchmarks
at tiny shapes: the code paths the GPU runs in results/gpu/ take, checked on CPU."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ntbench.adapters import apply_adapter
from ntbench.strategies import Draws, keep_count, make_strategy, top_k_mask


def _llama(seed=0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=4, vocab_size=97))


def _adapted(threshold="hard", strategy="gaussian"):
    return apply_adapter(_llama(), "neural", dz=16, targets="qv", threshold=threshold, strategy=strategy)


@pytest.mark.parametrize("threshold", ["hard", "soft"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_dynamo_traces_the_adapted_model_in_one_graph(threshold, mode):
    model = _adapted(threshold).train(mode == "train")
    ids = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(1))
    explanation = torch._dynamo.explain(lambda x: model(input_ids=x, use_cache=False).logits)(ids)
    reasons = [str(b.reason)[:200] for b in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("threshold", ["hard", "soft"])
def test_compiled_training_steps_match_eager(threshold):
    """Three training steps (forward, backward, AdamW) through torch.compile's AOT-autograd path give
    the eager losses and weights: the per-pass mask draws are data to the graph, so each pass gets
    its own masks without a recompilation. Tolerance 1e-5 relative (fused kernels may reorder sums)."""
    torch._dynamo.reset()
    ids = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(2))
    runs = []
    for compiled in (False, True):
        model = _adapted(threshold).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2)
        forward = torch.compile(model, backend="aot_eager", fullgraph=False) if compiled else model
        losses = []
        for _ in range(3):
            loss = forward(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        runs.append((losses, [p.detach().clone() for p in params]))
    (eager_losses, eager_w), (comp_losses, comp_w) = runs
    assert comp_losses == pytest.approx(eager_losses, rel=1e-5)
    assert eager_losses[0] != eager_losses[1]  # the adapter trains: the steps differ
    for a, b in zip(eager_w, comp_w):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_tensor_keep_count_equals_the_python_one():
    for rate in (0.0, 0.0123, 0.25, 0.4, 0.5, 0.74, 1.0, 1.3):
        for dz in (1, 7, 16, 128):
            assert int(keep_count(torch.tensor(rate, dtype=torch.float64), dz)) == keep_count(rate, dz)


def test_tensor_k_mask_is_the_topk_mask():
    """rank < k from one sort keeps exactly the k largest entries, as topk does (no ties here)."""
    z = torch.randn(5, 7, 32, generator=torch.Generator().manual_seed(3))
    for k in (1, 5, 13, 31, 32):
        by_rank = top_k_mask(z, torch.tensor(k))
        assert torch.equal(by_rank, top_k_mask(z, k))
        assert (by_rank.sum(-1) == k).all()


def test_a_drawn_rate_noise_gives_the_same_masks_as_a_layer_drawing_itself():
    """The adapter draws each layer's rate normal at the start of a pass; the masks must be those
    of the layer drawing it itself (same seed), top2beta's per-entry noise included."""
    from ntbench.strategies import rate_normal

    z = torch.randn(3, 4, 20, generator=torch.Generator().manual_seed(4))
    for name in ("gaussian", "top2beta", "level"):
        strategy = make_strategy(name, beta=0.4)
        own = strategy.keep_mask(z, Draws(1234, True))
        noise = rate_normal(1234)
        ahead = strategy.keep_mask(z, Draws(1234, True, rate_noise=torch.tensor(noise, dtype=torch.float64),
                                            rate_noise_value=noise))
        assert torch.equal(own, ahead), name


def test_step_benchmark_rows_at_a_tiny_shape():
    from ntbench.bench import StepBenchConfig, step_benchmark

    cfg = StepBenchConfig(shape="tiny", hidden=32, layers=2, heads=2, vocab=64, batch=2, seq_len=8, rounds=2,
                          steps_per_round=1, warmup=1, arms=("frozen", "lora", "prefix", "ia3", "neural", "neural-soft"))
    rows = step_benchmark(cfg)
    by = {r["adapter"]: r for r in rows}
    assert set(by) == set(cfg.arms)
    for r in rows:
        assert r["steps"] == 2 and r["q25_step_s"] <= r["median_step_s"] <= r["q75_step_s"]
        assert r["ratio_vs_frozen" if r["adapter"] != "frozen" else "ratio_vs_lora"] > 0
    # the ratio of the medians, within what rounding medians to 5 decimals and ratios to 3 allows
    m1, m2, h = by["neural"]["median_step_s"], by["lora"]["median_step_s"], 5e-6
    assert (m1 - h) / (m2 + h) - 5e-4 <= by["neural"]["ratio_vs_lora"] <= (m1 + h) / (m2 - h) + 5e-4


def test_an_arm_that_fails_to_compile_is_reported_and_the_others_are_measured(monkeypatch):
    from ntbench.bench import StepBenchConfig, step, step_benchmark

    def broken_compile(model):
        def forward(*args, **kwargs):
            raise RuntimeError("inductor failed")
        return forward
    monkeypatch.setattr(step.torch, "compile", broken_compile)
    cfg = StepBenchConfig(shape="tiny", hidden=32, layers=2, heads=2, vocab=64, batch=2, seq_len=8, rounds=1,
                          steps_per_round=1, warmup=1, arms=("frozen", "neural"), compiled=("neural",))
    by = {r["adapter"]: r for r in step_benchmark(cfg)}
    assert set(by) == {"frozen", "neural", "neural+compile"}
    assert by["neural+compile"]["error"] == "RuntimeError: inductor failed"
    assert "median_step_s" not in by["neural+compile"] and "ratio_vs_neural+compile" not in by["neural"]
    assert by["neural"]["ratio_vs_frozen"] > 0 and by["frozen"]["warmup_s"] >= 0


def test_step_benchmark_arms_share_the_frozen_weights():
    """Every arm wraps the same weight tensors (one copy in memory at 7B), and adapting one arm leaves
    the base model untouched."""
    import copy

    from ntbench.model.shapes import random_llm

    base = random_llm("tiny", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64)
    shared = {id(p): p for p in base.parameters()}
    arm = apply_adapter(copy.deepcopy(base, memo=shared), "lora", r=2)
    base_ptrs = {p.data_ptr() for p in base.parameters()}
    frozen_ptrs = {p.data_ptr() for p in arm.parameters() if not p.requires_grad}
    assert frozen_ptrs == base_ptrs
    assert not any("lora" in n for n, _ in base.named_parameters())


def test_unknown_arm_and_shape_are_clear_errors():
    from ntbench.bench import StepBenchConfig, step_benchmark
    from ntbench.model.shapes import llm_config

    with pytest.raises(ValueError, match="allowed: frozen, lora"):
        step_benchmark(StepBenchConfig(arms=("frozen", "loar")))
    with pytest.raises(ValueError, match="allowed: llama-2-7b"):
        llm_config("llama-3-8b")


def test_latency_parts_at_a_tiny_shape():
    from ntbench.bench.paper_scale import LATENCY_PARTS, latency_benchmark

    res = latency_benchmark("random-tiny", prompt_tokens=4, answer_tokens=3, repeats=2, warmup=1, dtype="float32",
                            adapter_options={"dz": 16})
    parts = {r["part"]: r for r in res["rows"]}
    assert set(parts) == {*LATENCY_PARTS, "total"}
    assert all(r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in res["rows"])
    assert res["image_tokens"] == (64 // 8) ** 2


def test_paper_trial_smoke_runs_each_adapter_of_the_suite(tmp_path):
    from ntbench.bench.paper_scale import paper_trial_smoke

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndefaults:\n  eval_samples: 2\n  train: {batch_size: 2, lr: 0.001}\n"
                     "axes:\n  adapter: [neural, frozen]\nobjective: reasoning.tf_paper_oIoU\n")
    rows = paper_trial_smoke(suite, backbone="random-tiny", steps=1, data="microworld:16", eval_samples=1)
    assert [r["adapter"] for r in rows] == ["neural", "frozen"]
    assert all(r["ok"] and r["steps"] == 1 for r in rows), rows
    assert rows[0]["trainable_params"] > rows[1]["trainable_params"]  # the adapter's own parameters
