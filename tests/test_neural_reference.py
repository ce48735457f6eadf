"""Neural tuning against an independent, hand-written computation of Eq. 1-5.

The reference attaches plain forward hooks to an *unadapted* copy of the model and computes
Z = W_z H, the EMA across layers, a top-k mask found by sorting, and W_b Z^a by hand.
"""
import math

import pytest
import torch

from ntbench.adapters import apply_adapter, neural_layers
from tests.conftest import model_for


def reference_logits(model, ids, weights, alpha, beta, targets, ema=True, soft=False):
    """Eq. 1-5 on ``model`` (unadapted) with hooks; ``weights`` = [(W_z, W_b), ...] per layer."""
    attns = [m for n, m in model.named_modules() if n.endswith("self_attn")]
    state = {"prev": None, "delta": None}
    hooks = []
    dz = weights[0][0].shape[0]
    k = max(1, min(dz, math.floor(beta * dz + 0.5)))

    def pre_q(layer):
        def hook(module, args):
            h = args[0]
            w_z, w_b = weights[layer]
            z = h @ w_z.T
            if ema and state["prev"] is not None:
                z = alpha * state["prev"] + (1 - alpha) * z
            state["prev"] = z
            thresh = z.sort(dim=-1, descending=True).values[..., k - 1: k]
            keep = z >= thresh
            if soft and k < dz:
                below = z.sort(dim=-1, descending=True).values[..., k: k + 1]
                za = torch.relu(z - below) * keep
            else:
                za = z * keep
            state["delta"] = za @ w_b.T
        return hook

    def post(offset, width):
        def hook(module, args, out):
            return out + state["delta"][..., offset: offset + width]
        return hook

    for layer, attn in enumerate(attns):
        hooks.append(attn.q_proj.register_forward_pre_hook(pre_q(layer)))
        offset = 0
        for t in targets:
            proj = getattr(attn, f"{t}_proj")
            hooks.append(proj.register_forward_hook(post(offset, proj.out_features)))
            offset += proj.out_features
    try:
        return model(ids).logits
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("family", ["llama", "mistral"])
@pytest.mark.parametrize("targets,ema,threshold", [("qv", True, "hard"), ("qkv", False, "hard"),
                                                   ("kv", True, "soft")])
def test_matches_hand_written_equations(family, targets, ema, threshold, ids):
    alpha, beta = 0.9, 0.4
    adapted = apply_adapter(model_for(family), "neural", dz=16, alpha=alpha, beta=beta, targets=targets,
                            ema=ema, threshold=threshold, init_wb="default",
                            strategy_options={"std_ratio": 0.0})
    adapted.train()  # masks are drawn in training mode; with std_ratio 0, r = beta exactly
    got = adapted(ids).logits
    weights = [(l.w_z.weight.detach(), l.w_b.weight.detach()) for l in neural_layers(adapted)]
    plain = model_for(family).train()
    want = reference_logits(plain, ids, weights, alpha, beta, targets, ema=ema, soft=threshold == "soft")
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    # and the adapter really changes the model
    assert not torch.allclose(got, plain(ids).logits, atol=1e-3)


def test_soft_threshold_hand_example():
    """z = [3, 1, 2, 0], β = 0.5: hard keeps [3, 0, 2, 0]; soft subtracts the largest dropped (1)."""
    from ntbench.adapters.neural import NeuralTuningLayer
    model = model_for("llama")
    for threshold, want in [("hard", [3.0, 0.0, 2.0, 0.0]), ("soft", [2.0, 0.0, 1.0, 0.0])]:
        adapted = apply_adapter(model_for("llama"), "neural", dz=4, beta=0.5, threshold=threshold,
                                ema=False, strategy_options={"std_ratio": 0.0})
        layer: NeuralTuningLayer = neural_layers(adapted)[0]
        with torch.no_grad():
            layer.w_z.weight.zero_()
            layer.w_z.weight[:, 0] = torch.tensor([3.0, 1.0, 2.0, 0.0])
        h = torch.zeros(1, 1, model.config.hidden_size)
        h[..., 0] = 1.0
        layer._state.start_pass()
        assert layer.sparse_vector(h).flatten().tolist() == want


def test_first_layer_and_inference_switch(ids):
    adapted = apply_adapter(model_for("llama", layers=3), "neural", dz=8, first_layer=1,
                            sparsify_at_inference=False, init_wb="default")
    layers = neural_layers(adapted)
    assert len(layers) == 2 and [l.index for l in layers] == [0, 1]
    assert not hasattr(adapted.model.layers[0].self_attn, "neural_tuning")
    # eval without sparsity: Z^a = Z^u (dense), so all Dz entries are non-zero
    adapted.eval()
    seen = []
    layers[0]._state.observer = lambda i, mask: seen.append(mask)
    adapted(ids)
    assert seen == []  # no mask drawn at all at inference with the switch off
