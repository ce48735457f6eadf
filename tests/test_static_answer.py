"""The static-cache answerer (the CUDA-graph latency path, run eagerly on CPU) against a full forward pass."""
import pytest
import torch

from ntbench.bench.static_answer import StaticAnswerer


def _model_and_batch(adapter: str, options: dict, prompt: int = 5):
    from ntbench.model.allintoken import AllInTokenModel
    from ntbench.model.backbone import load_backbone
    from ntbench.model.tasks import obj_token

    torch.manual_seed(0)
    model = AllInTokenModel(load_backbone("random-tiny"), adapter, options, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    size = model.image_size
    batch = {"images": torch.randint(0, 256, (1, 3, size, size), generator=g, dtype=torch.uint8),
             "input_ids": torch.randint(4, model.base_vocab, (1, prompt), generator=g),
             "text_mask": torch.ones(1, prompt, dtype=torch.long),
             "uses_image": torch.ones(1, dtype=torch.bool)}
    return model, batch, model.tokenizer.convert_tokens_to_ids(obj_token(1))


@pytest.mark.parametrize("adapter,options", [("neural", {"dz": 16}), ("frozen", {})])
def test_static_cache_answer_equals_a_full_forward_without_cache(adapter, options):
    model, batch, obj = _model_and_batch(adapter, options)
    n = 6
    with torch.no_grad():
        got = StaticAnswerer(model, batch, n, obj, graphs=False).answer()
        # reference: one forward pass over [image; prompt; answer] with no cache at all
        ids = torch.cat([batch["input_ids"], got["tokens"][None]], dim=1)
        vision = model.encode_images(batch["images"])
        logits, hidden, off = model.run_llm({**batch, "input_ids": ids, "text_mask": torch.ones_like(ids)}, vision)
    start = off + batch["input_ids"].shape[1] - 1  # the position whose logits choose answer token 0
    greedy = logits[0, start:start + n - 1].argmax(-1)
    assert torch.equal(got["tokens"][:-1], greedy)  # each step's token is the greedy choice given the ones before
    assert int(got["tokens"][-1]) == obj            # the last is forced to <OBJ-1>
    torch.testing.assert_close(got["hidden"][0, -1], hidden[0, -1], atol=1e-4, rtol=1e-4)
    rows = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        ref_mask = model.predict_masks(hidden, vision, rows, torch.tensor([hidden.shape[1] - 1]), got["masks"].shape[-2:])
    assert torch.equal(got["masks"], ref_mask)


def test_a_second_answer_restarts_the_cache_and_repeats_the_first():
    model, batch, obj = _model_and_batch("neural", {"dz": 16})
    answerer = StaticAnswerer(model, batch, 4, obj, graphs=False)
    with torch.no_grad():
        first, second = answerer.answer(), answerer.answer()
    assert torch.equal(first["tokens"], second["tokens"])
    assert torch.equal(first["hidden"], second["hidden"])
    assert int(answerer.cache.get_seq_length()) == answerer.max_len  # every position was written once, not twice


def test_graphs_need_cuda_and_batch_one():
    model, batch, obj = _model_and_batch("frozen", {})
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        StaticAnswerer(model, batch, 3, obj, graphs=True)
    two = {k: torch.cat([v, v]) for k, v in batch.items()}
    with pytest.raises(ValueError, match="batch 1"):
        StaticAnswerer(model, two, 3, obj, graphs=False)


def test_latency_static_mode_reports_matching_tokens():
    from ntbench.bench.paper_scale import latency_benchmark

    res = latency_benchmark("random-tiny", prompt_tokens=4, answer_tokens=3, repeats=1, warmup=0, dtype="float32",
                            adapter_options={"dz": 16}, mode="static")
    assert res["mode"] == "static" and res["tokens_match_eager"] is True
    with pytest.raises(ValueError, match="allowed: eager, static, graphs"):
        latency_benchmark("random-tiny", mode="cudagraph")
    with pytest.raises(ValueError, match="needs a static cache"):
        latency_benchmark("random-tiny", mode="eager", compile_prefill=True)
