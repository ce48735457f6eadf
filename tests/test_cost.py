"""Parameter and FLOP counts against hand-computed values."""
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
