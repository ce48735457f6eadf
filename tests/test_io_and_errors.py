import pytest
import torch
from torch import nn

from ntbench.adapters import (AdapterError, apply_adapter, load_adapter, load_adapter_weights, read_adapter_record,
                              save_adapter, trainable_parameters)
from ntbench.registry import UnknownNameError
from tests.conftest import model_for


def _trained(model: nn.Module) -> nn.Module:
    """Every adapter parameter moved away from its initialisation (LoRA's B starts at zero), in eval mode."""
    with torch.no_grad():
        for p in trainable_parameters(model):
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize("adapter,opts", [("neural", {"dz": 8, "beta": 0.3, "targets": "qkv", "norm": True}),
                                          ("lora", {"r": 2}), ("ia3", {}), ("prefix", {"num_virtual_tokens": 3}),
                                          ("full", {})])
def test_save_load_round_trip(adapter, opts, tmp_path, ids):
    model = _trained(apply_adapter(model_for("mistral"), adapter, **opts))
    want = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    save_adapter(model, tmp_path / "a")
    loaded = load_adapter(model_for("mistral"), tmp_path / "a").eval()
    got = loaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.equal(got, want)
    for a, b in zip(trainable_parameters(model), trainable_parameters(loaded)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("adapter,opts", [("lora", {"r": 2}), ("ia3", {}), ("prefix", {"num_virtual_tokens": 3})])
def test_peft_loads_a_saved_peft_adapter(adapter, opts, tmp_path, ids):
    """LoRA, IA3 and prefix tuning are saved in PEFT's format: PEFT's own loader gives the same model."""
    from peft import PeftModel, get_peft_model_state_dict

    model = _trained(apply_adapter(model_for("llama"), adapter, **opts))
    want = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    save_adapter(model, tmp_path / "a", base_model="tiny-llama")
    peft_model = PeftModel.from_pretrained(model_for("llama"), tmp_path / "a").eval()
    assert peft_model.peft_config["default"].base_model_name_or_path == "tiny-llama"
    theirs = {k.removeprefix("base_model.model."): v
              for k, v in get_peft_model_state_dict(peft_model, save_embedding_layers=False).items()}
    ours = get_peft_model_state_dict(model, save_embedding_layers=False)
    assert set(theirs) == set(ours) and all(torch.equal(theirs[k], ours[k]) for k in ours)
    assert torch.equal(peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, want)


def test_neural_adapter_record_names_its_base_model(tmp_path):
    model = apply_adapter(model_for("llama"), "neural", dz=8)
    save_adapter(model, tmp_path / "given", base_model="/models/llama")
    save_adapter(model, tmp_path / "default")
    assert read_adapter_record(tmp_path / "given")["base_model"] == "/models/llama"
    assert read_adapter_record(tmp_path / "default")["base_model"] == "LlamaForCausalLM"  # no HF name: its class


def test_loading_into_a_model_with_another_adapter_fails(tmp_path):
    save_adapter(apply_adapter(model_for("llama"), "lora", r=2), tmp_path / "lora")
    with pytest.raises(AdapterError, match="holds a 'lora' adapter; the model carries 'neural'"):
        load_adapter_weights(apply_adapter(model_for("llama"), "neural", dz=8), tmp_path / "lora")
    save_adapter(apply_adapter(model_for("llama"), "lora", r=4), tmp_path / "r4")
    with pytest.raises(AdapterError, match="has shape"):
        load_adapter_weights(apply_adapter(model_for("llama"), "lora", r=2), tmp_path / "r4")


def test_load_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(model_for("llama"), tmp_path)


def test_unknown_adapter_did_you_mean():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'lora'.*Allowed values: frozen, full, ia3, lora, neural, prefix"):
        apply_adapter(model_for("llama"), "lorra")


@pytest.mark.parametrize("opts,match", [
    ({"beta": 0.0}, r"option 'beta' = 0\.0.*\(0, 1\]"),
    ({"beta": 1.5}, r"option 'beta' = 1\.5"),
    ({"dz": 0}, r"option 'dz' = 0"),
    ({"targets": "qx"}, r"option 'targets'.*allowed values: any of q, k, v"),
    ({"targets": ""}, r"option 'targets'"),
    ({"threshold": "medium"}, r"option 'threshold'.*'hard' or 'soft'"),
    ({"bogus": 1}, r"unknown option 'bogus'; allowed options: dz, alpha, beta"),
    ({"strategy": "gausian"}, r"Did you mean 'gaussian'"),
    ({"strategy_options": {"q": 1}}, r"bad options for activation strategy 'gaussian'"),
    ({"first_layer": 5}, r"option 'first_layer': 5 is out of range; allowed values: 0\.\.1"),
])
def test_bad_neural_options(opts, match):
    with pytest.raises((AdapterError, UnknownNameError, ValueError), match=match):
        apply_adapter(model_for("llama"), "neural", **opts)


def test_fused_model_rejects_partial_lora():
    with pytest.raises(AdapterError, match=r"option 'targets' = 'qv'.*fused.*allowed values for this model: 'qkv'"):
        apply_adapter(model_for("phi3"), "lora", targets="qv")


def test_model_without_attention():
    with pytest.raises(AdapterError, match="no attention projections found in Sequential.*q_proj, k_proj, v_proj"):
        apply_adapter(nn.Sequential(nn.Linear(4, 4)), "neural")


def test_module_filter_that_matches_nothing():
    with pytest.raises(AdapterError, match="module_filter='vision'"):
        apply_adapter(model_for("llama"), "neural", module_filter="vision")


def test_adapting_twice_is_an_error():
    model = apply_adapter(model_for("llama"), "lora")
    with pytest.raises(AdapterError, match="already carries adapter 'lora'"):
        apply_adapter(model, "neural")


def test_ia3_feedforward_module_missing():
    with pytest.raises(AdapterError, match=r"option 'feedforward' = 'down_proj'.*dense_4h_to_h"):
        apply_adapter(model_for("gpt_neox"), "ia3", targets="qkv")


def test_git_state_counts_code_not_results(tmp_path):
    """A run rewriting its own committed results table must not mark the code dirty."""
    import subprocess

    from ntbench.provenance import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "trials.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_state(tmp_path)
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    (tmp_path / "results" / "trials.csv").write_text("a\nb\n")
    (tmp_path / "new_untracked.py").write_text("")
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["git_dirty"] is True
    assert git_state(tmp_path / "results")["git_commit"] == clean["git_commit"]
