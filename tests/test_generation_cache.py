"""Greedy decoding with a key/value cache gives what re-reading the whole sequence gives."""
import pytest
import torch

from ntbench.data.io import SampleDataset
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.eval.evaluate import build_items
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.backbone import load_backbone
from ntbench.model.batching import collate


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return SampleDataset(generate(tmp_path_factory.mktemp("g") / "mw", MicroWorldConfig(seed=8, train=4, val=8, test=0),
                                  workers=1), "val")


@pytest.mark.parametrize("adapter,options", [("neural", {"dz": 16, "init_wb": "default"}), ("lora", {}),
                                             ("ia3", {}), ("frozen", {})])
def test_cached_decoding_matches_full_rereads(ds, adapter, options):
    torch.manual_seed(0)
    model = AllInTokenModel(load_backbone("tiny-random"), adapter, options, seed=0).eval()
    with torch.no_grad():  # make the task-token rows likely, so <OBJ-i> states are exercised too
        model.new_out.mul_(40)
    items = build_items(ds, "reasoning", 6, seed=0)  # prompts of different lengths: left padding
    batch = collate(items, model.tokenizer, teacher_forced=False)
    lengths = []
    hook = model.llm.register_forward_pre_hook(lambda m, a, kw: lengths.append(kw["inputs_embeds"].shape[1]),
                                               with_kwargs=True)
    cached = model.generate(batch, max_new_tokens=10, use_cache=True)
    assert lengths[0] > 1 and set(lengths[1:]) == {1}  # the cache was really used: one position per step
    hook.remove()
    full = model.generate(batch, max_new_tokens=10, use_cache=False)
    assert torch.equal(cached["ids"], full["ids"])
    assert cached["offset"] == full["offset"]
    valid = torch.cat([batch["uses_image"][:, None].expand(-1, cached["offset"] - batch["input_ids"].shape[1]).bool(),
                       batch["text_mask"].bool()], dim=1)
    n = cached["answer_hidden_full"].shape[1]
    assert n == full["answer_hidden_full"].shape[1]
    # hidden states agree wherever a real token sits (pads may differ: nothing reads them)
    rows = valid[:, :cached["offset"]]
    torch.testing.assert_close(cached["answer_hidden_full"][:, :cached["offset"]][rows],
                               full["answer_hidden_full"][:, :cached["offset"]][rows], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached["answer_hidden_full"][:, cached["offset"]:],
                               full["answer_hidden_full"][:, cached["offset"]:], rtol=1e-4, atol=1e-5)


def test_prefix_tuning_decodes_without_the_cache(ds):
    torch.manual_seed(0)
    model = AllInTokenModel(load_backbone("tiny-random"), "prefix", {}, seed=0).eval()
    batch = collate(build_items(ds, "captioning", 3, seed=0), model.tokenizer, teacher_forced=False)
    auto = model.generate(batch, max_new_tokens=5)
    assert torch.equal(auto["ids"], model.generate(batch, max_new_tokens=5, use_cache=False)["ids"])


def test_prefix_tuning_decoding_reads_the_prefix(ds):
    """transformers >= 5.24's own generate drops a PEFT prefix; the all-in-token decoder must not: its
    first token is the argmax of a full forward pass through the prefix-tuned model."""
    def decode(adapter):
        torch.manual_seed(0)
        model = AllInTokenModel(load_backbone("tiny-random"), adapter, {}, seed=0).eval()
        batch = collate(build_items(ds, "captioning", 3, seed=0), model.tokenizer, teacher_forced=False)
        with torch.no_grad():
            first = model.run_llm(batch, model.encode_images(batch["images"]))[0][:, -1].argmax(-1)
        return model.generate(batch, max_new_tokens=5)["ids"], first

    prefixed, first = decode("prefix")
    assert torch.equal(prefixed[:, 0], first)
    assert not torch.equal(prefixed, decode("frozen")[0])  # the prefix changed what is generated
