"""Parameter and FLOP counts against hand-computed values."""
import pytest
from transformers import LlamaConfig

from ntbench.cost import adapter_cost, build_meta_model
from tests.conftest import model_for

B, S, H, I, L, HEADS, V = 2, 8, 64, 128, 2, 4, 128  # tiny_causal_lm("llama") defaults, intermediate = 2H
T = B * S


def linear_flops(n_in, n_out, tokens=T):
    return 2 * tokens * n_in * n_out


def base_linear_flops():
    return L * (4 * linear_flops(H, H) + 3 * linear_flops(H, I)) + linear_flops(H, V)


def attention_flops():
    return L * 2 * (2 * B * S * S * H)  # Q K^T and A V, all heads together (counted as full)


def base_forward_flops():
    return base_linear_flops() + attention_flops()


def test_frozen_forward_flops_by_hand():
    row = adapter_cost(model_for("llama"), "frozen", B, S)
    assert row["forward_flops"] == base_forward_flops()
    assert row["trainable_params"] == 0


def test_neural_params_and_flops_by_hand():
    dz = 16
    row = adapter_cost(model_for("llama"), "neural", B, S, dz=dz, targets="qv")
    assert row["trainable_params"] == L * (H * dz + dz * 2 * H)
    assert row["forward_flops"] == base_forward_flops() + L * (linear_flops(H, dz) + linear_flops(dz, 2 * H))
    assert row["train_step_flops"] > 2 * row["forward_flops"] * 0.9


def test_lora_params_and_flops_by_hand():
    r = 4
    row = adapter_cost(model_for("llama"), "lora", B, S, r=r, targets="qv")
    assert row["trainable_params"] == L * 2 * r * (H + H)
    assert row["forward_flops"] == base_forward_flops() + L * 2 * (linear_flops(H, r) + linear_flops(r, H))


def test_full_training_step_counts_weight_gradients():
    frozen = adapter_cost(model_for("llama"), "frozen", B, S)
    full = adapter_cost(model_for("llama"), "full", B, S)
    assert full["forward_flops"] == frozen["forward_flops"]
    # every Linear: forward + input gradient + weight gradient = 3 matmuls of one size;
    # attention backward: 5 matmuls of the forward's size (scores recomputed, then dV, dP, dQ, dK)
    assert full["train_step_flops"] == 3 * base_linear_flops() + attention_flops() * (2 + 5) // 2


def test_meta_device_counts_7b_shape_without_allocating():
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    model = build_meta_model(cfg)
    assert next(model.parameters()).is_meta
    row = adapter_cost(model, "neural", 1, 16, dz=128)
    assert row["trainable_params"] == 32 * (4096 * 128 + 128 * 2 * 4096)
    assert row["total_params"] > 6.7e9
    t, h, i = 16, 4096, 11008
    linear = 32 * 2 * t * (4 * h * h + 3 * h * i + h * 128 + 128 * 2 * h) + 2 * t * h * 32000
    attention = 32 * 2 * 2 * t * t * h
    assert row["forward_flops"] == linear + attention


def test_paper_setting_vision_projection_and_llm_by_hand():
    """ViT-L/14 at 224 px, the 1024->4096 projection of its 257 tokens, LLaMA-2-7B over 257 + 32 tokens."""
    from ntbench.cost import IMAGE_TOKENS, PAPER_TFLOPS, paper_inference_costs, vision_flops

    t, h, i, layers = 257, 1024, 4096, 24
    assert IMAGE_TOKENS == t
    patches = 2 * 256 * (3 * 14 * 14) * h  # the patch-embedding convolution, one output per patch
    per_layer = 2 * t * (4 * h * h + 2 * h * i) + 2 * 2 * t * t * h
    assert vision_flops() == patches + layers * per_layer
    rows = {r["adapter"]: r for r in paper_inference_costs(("frozen", "neural"), text_tokens=32)}
    s, H, I, dz = t + 32, 4096, 11008, 128
    llm = 32 * (2 * s * (4 * H * H + 3 * H * I) + 2 * 2 * s * s * H) + 2 * s * H * 32000
    assert rows["frozen"]["llm_tflops"] * 1e12 == llm
    assert rows["frozen"]["projection_tflops"] * 1e12 == 2 * t * 1024 * H
    added = 32 * 2 * s * (H * dz + dz * 2 * H)  # W_z and W_b (targets q, v) in every layer
    assert (rows["neural"]["total_tflops"] - rows["frozen"]["total_tflops"]) * 1e12 == pytest.approx(added, rel=1e-9)
    assert rows["neural"]["paper_tflops"] == PAPER_TFLOPS["neural"] == 2.47 and rows["frozen"]["paper_tflops"] is None
    assert rows["neural"]["total_tmacs"] == rows["neural"]["total_tflops"] / 2


def test_cli_cost_paper_writes_the_paper_setting_table(tmp_path):
    """`ntbench cost --paper --out F` writes what ntbench.cost.write_paper_table counts; the adapter's extra
    cost over the frozen model is positive and small (~1% of a 7B forward, the arithmetic of issue 17)."""
    import csv
    import json

    from typer.testing import CliRunner

    from ntbench.cli import app

    target = tmp_path / "cost" / "tflops.csv"
    res = CliRunner().invoke(app, ["cost", "--paper", "--out", str(target), "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["adapter"]: r for r in json.loads(res.stdout)}
    with target.open() as f:
        written = {r["adapter"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(written) >= {"frozen", "neural", "lora", "prefix", "ia3"}
    assert abs(float(written["neural"]["total_tflops"]) - rows["neural"]["total_tflops"]) < 1e-3
    extra = rows["neural"]["total_tflops"] / rows["frozen"]["total_tflops"] - 1
    assert 0 < extra < 0.02
    assert rows["neural"]["paper_tflops"] == 2.47
