"""A reduced `prepare` (tiny sizes, seconds), loaded through the normal backbone loader."""
import json

import pytest
import torch

from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.micro import MANIFEST, MicroSizes, cache_is_complete, ensure_micro, load_micro

TINY = MicroSizes.tiny()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro")
    data = generate(root / "mw", MicroWorldConfig(seed=2, train=40, val=8, test=0), workers=1)
    folder, built = ensure_micro(seed=0, sizes=TINY, home=root / "home", data=data)
    return root, data, folder, built


def test_prepare_then_load_through_normal_loader(prepared):
    _, _, folder, built = prepared
    assert built and cache_is_complete(folder)
    bb = load_micro(folder)
    assert bb.image_decoder is not None and bb.vision.config.num_hidden_layers == 3
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["params"]["llm"] == sum(p.numel() for p in bb.llm.parameters())
    assert set(manifest["losses"]) >= {"clip_first", "lm_first", "decoder_first"}
    # the LLM never saw task tokens (images yes, in the alignment stage): no <OBJ-i> / <GEN> in its vocabulary
    assert "<OBJ-1>" not in bb.tokenizer.get_vocab() and "<GEN>" not in bb.tokenizer.get_vocab()
    assert set(manifest["losses"]) >= {"align_first", "align_last50"}
    assert manifest["params"]["projector"] == sum(p.numel() for p in bb.projector.parameters())
    # the alignment's words are in the vocabulary (an <unk> answer would teach nothing)
    assert bb.tokenizer.unk_token_id not in bb.tokenizer("Describe the image. The small red circle, top left.").input_ids
    ids = bb.tokenizer("the red circle", return_tensors="pt").input_ids
    assert torch.isfinite(bb.llm(ids).logits).all()


def test_second_prepare_finds_the_cache(prepared):
    root, data, folder, _ = prepared
    again, built = ensure_micro(seed=0, sizes=TINY, home=root / "home", data=data)
    assert again == folder and not built


def test_prepare_is_deterministic(prepared, tmp_path):
    root, data, folder, _ = prepared
    other, _ = ensure_micro(seed=0, sizes=TINY, home=tmp_path, data=data)
    a = json.loads((folder / MANIFEST).read_text())["files"]
    b = json.loads((other / MANIFEST).read_text())["files"]
    assert a["llm/model.safetensors"] == b["llm/model.safetensors"]
    assert a["vision/model.safetensors"] == b["vision/model.safetensors"]


def test_corrupt_or_partial_cache_is_rebuilt(prepared):
    root, data, folder, _ = prepared
    weights = folder / "llm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # an interrupted copy
    assert not cache_is_complete(folder)
    with pytest.raises(FileNotFoundError, match="not a complete micro backbone"):
        load_micro(folder)
    again, built = ensure_micro(seed=0, sizes=TINY, home=root / "home", data=data)
    assert built and cache_is_complete(again)
    (again / MANIFEST).unlink()  # prepare killed before its last write
    assert not cache_is_complete(again)
    _, built = ensure_micro(seed=0, sizes=TINY, home=root / "home", data=data)
    assert built


def test_patch_labels_are_pixel_fractions_per_patch():
    """A 16x16 image, 8-px patches: a red square over the whole top-left patch and half of the
    top-right one. Worked by hand: patch 0 is all square/red, patch 1 half background and half
    square/red, patches 2 and 3 all background."""
    import numpy as np

    from ntbench.data.render import COLOURS, SHAPES
    from ntbench.data.schema import ObjectAnnotation, Sample, encode_mask, mask_box
    from ntbench.micro.recipe import _patch_labels

    mask = np.zeros((16, 16), bool)
    mask[:8, :12] = True
    obj = ObjectAnnotation(category="square", refs=["the square"], mask=encode_mask(mask), box=mask_box(mask),
                           attributes={"shape": "square", "colour": "red"})
    sample = Sample(id="s", image="images/s.png", width=16, height=16, caption="", question="", answer="",
                    answer_objects=[], objects=[obj])
    labels = _patch_labels(type("DS", (), {"samples": [sample]})(), 1, 16, 8)[0]
    n_shape = 1 + len(SHAPES)
    square, red = 1 + SHAPES.index("square"), n_shape + 1 + list(COLOURS).index("red")
    expected = np.zeros((4, n_shape + 1 + len(COLOURS)), np.float32)
    expected[0, [square, red]] = 1.0
    expected[1, [0, n_shape]] = 0.5
    expected[1, [square, red]] = 0.5
    expected[2:, [0, n_shape]] = 1.0
    assert np.allclose(labels.numpy(), expected)
    # data without the generator's attributes gets no dense labels (and no dense loss)
    obj.attributes = {}
    assert _patch_labels(type("DS", (), {"samples": [sample]})(), 1, 16, 8) is None


def test_model_starts_from_the_backbone_projector(prepared):
    """The shipped vision->LLM projection (trained with the LLM) is where the model's projection starts;
    a backbone without one gets the BOS start (init_projector_as_bos)."""
    from ntbench.model.allintoken import AllInTokenModel

    _, _, folder, _ = prepared
    bb = load_micro(folder)
    model = AllInTokenModel(bb, "frozen", seed=0)
    assert torch.equal(model.projector.weight, bb.projector.weight)
    assert torch.equal(model.projector.bias, bb.projector.bias)
    assert model.projector.weight.requires_grad  # still tuned, like the paper's projection
    bb2 = load_micro(folder)
    bb2.projector = None
    fresh = AllInTokenModel(bb2, "frozen", seed=0)
    bos = bb2.llm.get_input_embeddings().weight[bb2.tokenizer.bos_token_id]
    assert torch.equal(fresh.projector.bias, bos.float())


def test_model_decoder_starts_from_the_segmentation_prior(prepared):
    """v5 ships a mask decoder pretrained on prompt codes: every tensor but the whitening statistics
    and the refiner; the model's decoder starts from it for any adapter, and a decoder of another
    width stays as initialised."""
    from ntbench.model.allintoken import AllInTokenModel

    _, _, folder, _ = prepared
    manifest = json.loads((folder / MANIFEST).read_text())
    assert set(manifest["losses"]) >= {"seg_prior_first", "seg_prior_last50"}
    assert "mask_decoder/model.safetensors" in manifest["files"]
    bb = load_micro(folder)
    prior = bb.mask_decoder_prior
    assert prior and not any(k.startswith(("whiten.", "refiner.")) for k in prior)
    assert manifest["params"]["mask_decoder"] == sum(v.numel() for v in prior.values())
    for adapter in ("frozen", "neural"):
        model = AllInTokenModel(load_micro(folder), adapter, seed=3)
        assert model.decoder_prior
        own = model.mask_decoder.state_dict()
        assert all(torch.equal(own[k], v) for k, v in prior.items())
        assert torch.equal(own["whiten.transform"], torch.eye(bb.llm_width))  # fresh statistics
        assert all(p.requires_grad for p in model.mask_decoder.parameters())  # still tuned
    other = AllInTokenModel(load_micro(folder), "frozen", decoder_width=32, seed=3)
    assert not other.decoder_prior
    assert not torch.equal(other.mask_decoder.state_dict()["film.weight"][:32], prior["film.weight"][:32])


def test_prepare_compares_weights_with_the_committed_reference(prepared, tmp_path):
    from dataclasses import asdict

    from ntbench.backbone_record import reference_manifest, weights_differing
    root, data, folder, _ = prepared
    mine = json.loads((folder / MANIFEST).read_text())
    assert weights_differing(mine, mine) == []
    other = json.loads(json.dumps(mine))
    other["files"]["llm/model.safetensors"] = "0" * 64  # another CPU's arithmetic: other weights
    other["files"]["llm/config.json"] = "1" * 64  # a library version string: not a difference in training
    assert weights_differing(mine, other) == ["llm/model.safetensors"]
    assert weights_differing(mine, {**mine, "seed": 1}) is None  # another seed: nothing to compare
    # the committed reference is found from a source checkout and was made by today's recipe sizes,
    # so a default `ntbench prepare` is compared with it
    reference = json.loads(reference_manifest().read_text())
    assert reference["sizes"] == asdict(MicroSizes()) and reference["seed"] == 0
