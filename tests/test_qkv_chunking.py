"""`chunking: reference` reproduces the released code's split of W_b's output over q/k/v.

Reference (kiva12138/NeuralTuning, ModelEMA.py): 'qv' -> q chunk 0, v chunk 1; 'kv' -> k chunk 0,
v chunk 1; 'qkv' -> q chunk 0, k chunk 1, v chunk 1 (chunk 2 is never read). The paper gives
each target its own chunk. Checked on layer 0, where both models see the same input H and, with
the dense strategy and no previous layer, Z^b = W_b W_z H exactly.
"""
import pytest
import torch

from ntbench.adapters import apply_adapter, neural_layers
from ntbench.adapters.neural import chunk_sources
from ntbench.adapters.sites import find_attention_sites
from tests.conftest import model_for

OPTS = dict(dz=16, init_wb="default", strategy="dense")


def _adapted(family, chunking, targets="qkv"):
    torch.manual_seed(5)  # the same W_z, W_b in both layouts
    return apply_adapter(model_for(family), "neural", targets=targets, chunking=chunking, **OPTS)


def test_chunk_sources_by_hand():
    assert chunk_sources("qkv", [8, 4, 4], "paper") == {"q": slice(0, 8), "k": slice(8, 12), "v": slice(12, 16)}
    assert chunk_sources("qkv", [8, 4, 4], "reference") == {"q": slice(0, 8), "k": slice(8, 12), "v": slice(8, 12)}
    for targets, widths in (("qv", [8, 4]), ("kv", [4, 4]), ("q", [8])):
        assert chunk_sources(targets, widths, "reference") == chunk_sources(targets, widths, "paper")


def _layer0_deltas(model, family):
    """What each projection of layer 0 adds to its frozen output, and that layer's Z^b."""
    attn = next(m for n, m in model.named_modules() if n.endswith(("self_attn", "attention")))
    layer = neural_layers(model)[0]
    got = {}
    if family == "phi3":  # fused contiguous qkv_proj: the columns of each target from an unadapted copy
        cols = find_attention_sites(model_for(family))[0].fused_columns
        hooks = [attn.qkv_proj.register_forward_hook(
            lambda m, a, out: got.update({t: (out - m.base_layer(a[0]))[..., cols[t]] for t in "qkv"} | {"h": a[0]}))]
    else:
        hooks = [getattr(attn, f"{t}_proj").register_forward_hook(
            lambda m, a, out, t=t: got.update({t: out - m.base_layer(a[0]), "h": a[0]})) for t in "qkv"]
    with torch.no_grad():
        model(torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1)))
    for h in hooks:
        h.remove()
    zb = layer.w_b(layer.w_z(got["h"]))
    return got, zb, layer.widths


@pytest.mark.parametrize("family", ["llama", "mistral", "phi3"])
def test_reference_gives_v_the_k_chunk_and_paper_its_own(family):
    paper, zb_p, (wq, wk, wv) = _layer0_deltas(_adapted(family, "paper"), family)
    ref, zb_r, _ = _layer0_deltas(_adapted(family, "reference"), family)
    assert torch.equal(zb_p, zb_r)  # same weights, same input: only the split differs
    q, k, v = zb_p[..., :wq], zb_p[..., wq:wq + wk], zb_p[..., wq + wk:]
    close = lambda a, b: torch.allclose(a, b, atol=1e-6)  # noqa: E731
    assert close(paper["q"], q) and close(paper["k"], k) and close(paper["v"], v)
    assert close(ref["q"], q) and close(ref["k"], k) and close(ref["v"], k)  # V adds the K chunk
    assert not close(ref["v"], v)


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_reference_never_trains_chunk_2(family, ids):
    for chunking, unused_grad_zero in (("paper", False), ("reference", True)):
        model = _adapted(family, chunking)
        model(ids).logits.square().mean().backward()
        for layer in neural_layers(model):
            wq, wk, _ = layer.widths
            grad = layer.w_b.weight.grad
            assert (grad[wq + wk:].abs().max() == 0) == unused_grad_zero
            assert grad[:wq + wk].abs().max() > 0


@pytest.mark.parametrize("family", ["llama", "phi3"])
@pytest.mark.parametrize("targets", ["qv", "kv", "q"])
def test_layouts_are_equal_where_the_reference_splits_as_the_paper(family, targets, ids):
    a, b = _adapted(family, "paper", targets), _adapted(family, "reference", targets)
    assert torch.equal(a(ids).logits, b(ids).logits)
    n = lambda m: sum(p.numel() for l in neural_layers(m) for p in l.parameters())  # noqa: E731,E741
    assert n(_adapted(family, "paper")) == n(_adapted(family, "reference"))  # W_b keeps all three chunks
