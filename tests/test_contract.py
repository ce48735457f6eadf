"""Contract matrix over (adapter x model family), in the spirit of PEFT's own tests."""
import pytest
import torch

from ntbench.adapters import apply_adapter, trainable_parameters
from tests.conftest import FAMILIES, model_for

ADAPTER_OPTIONS = {
    "neural": {"dz": 16},
    "lora": {"r": 4},
    "prefix": {"num_virtual_tokens": 4},
    "ia3": {},
    "frozen": {},
    "full": {},
}
FUSED = {"phi3", "gpt_neox"}


def options(adapter, family):
    opts = dict(ADAPTER_OPTIONS[adapter])
    if family in FUSED and adapter in ("lora", "ia3"):
        opts["targets"] = "qkv"  # a fused projection is adapted as a whole
    if adapter == "ia3" and family == "gpt_neox":
        opts["feedforward"] = "dense_4h_to_h"
    return opts


def base_params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("adapter", list(ADAPTER_OPTIONS))
def test_contract(adapter, family, ids):
    model = apply_adapter(model_for(family), adapter, **options(adapter, family))
    adapter_ids = {id(p) for p in trainable_parameters(model)}
    # exactly the adapter's parameters require grad
    assert {id(p) for p in model.parameters() if p.requires_grad} == adapter_ids
    if adapter == "frozen":
        assert not adapter_ids
        return
    assert adapter_ids
    before = base_params(model)
    model.train()
    opt = torch.optim.AdamW(trainable_parameters(model), lr=1e-2)
    losses = []
    for _ in range(3):
        out = model(input_ids=ids, labels=ids)
        assert torch.isfinite(out.logits).all()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    after = dict(model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    trainable_names = {n for n, p in after.items() if id(p) in adapter_ids}
    assert changed and changed <= trainable_names
    if adapter in ("lora", "full", "neural"):
        assert changed == trainable_names
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("adapter", ["neural", "lora", "ia3"])
def test_zero_init_is_identity(adapter, family, ids):
    want = model_for(family)(ids).logits
    model = apply_adapter(model_for(family), adapter, **options(adapter, family))
    got = model(input_ids=ids).logits
    assert torch.equal(got, want)


def test_neural_exposes_w_z_w_b_with_gqa_widths():
    model = apply_adapter(model_for("mistral", hidden=64, heads=4, kv_heads=2), "neural", dz=8, targets="qkv")
    for layer in model.model.layers:
        nt = layer.self_attn.neural_tuning
        assert nt.w_z.in_features == 64 and nt.w_z.out_features == 8 and nt.w_z.bias is None
        assert nt.w_b.in_features == 8 and nt.w_b.out_features == 64 + 32 + 32 and nt.w_b.bias is None


@pytest.mark.parametrize("family", ["phi3", "gpt_neox"])
def test_fused_projection_gets_columns_in_qkv_order(family, ids):
    """Only the v columns of a fused projection move when targets='v'."""
    model = apply_adapter(model_for(family), "neural", dz=8, targets="v", init_wb="default")
    attn = [m for m in model.modules() if hasattr(m, "neural_tuning")][0]
    proj_name = "qkv_proj" if family == "phi3" else "query_key_value"
    wrapped = getattr(attn, proj_name)
    h = torch.randn(1, 3, wrapped.in_features)
    attn.neural_tuning._state.start_pass()
    diff = (wrapped(h) - wrapped.base_layer(h)).abs().sum(dim=(0, 1))
    from ntbench.adapters.sites import find_attention_sites
    cols = find_attention_sites(model_for(family))[0].fused_columns
    assert diff[cols["v"]].gt(0).all()
    assert diff[cols["q"]].eq(0).all() and diff[cols["k"]].eq(0).all()


def test_prefix_works_with_inputs_embeds(ids):
    model = apply_adapter(model_for("llama"), "prefix", num_virtual_tokens=4)
    embeds = model.get_input_embeddings()(ids)
    a = model(inputs_embeds=embeds, attention_mask=torch.ones_like(ids)).logits
    b = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    a.float().mean().backward()
    assert all(p.grad is not None for p in trainable_parameters(model))
