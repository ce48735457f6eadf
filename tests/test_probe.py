"""The <OBJ-i> state probe: a linear probe that reads what is linearly there, and the per-layer table."""
import pytest
import torch

from ntbench.data.io import SampleDataset
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.eval.probe import linear_probe_accuracy, object_state_probe
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.backbone import load_backbone


def test_linear_probe_reads_a_linear_code_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=g)
    colour = ["red" if v > 0 else "blue" for v in (x[:, 3] - 0.5 * x[:, 7]).tolist()]
    assert linear_probe_accuracy(x[:300], colour[:300], x[300:], colour[300:]) > 0.95
    noise = ["a" if v > 0 else "b" for v in torch.randn(400, generator=g).tolist()]
    assert linear_probe_accuracy(x[:300], noise[:300], x[300:], noise[300:]) < 0.7


def test_object_state_probe_table(tmp_path):
    ds = SampleDataset(generate(tmp_path / "mw", MicroWorldConfig(seed=3, train=60, val=0, test=0), workers=1), "train")
    torch.manual_seed(0)
    model = AllInTokenModel(load_backbone("tiny-random"), "frozen", seed=0)
    rows = object_state_probe(model, ds, tasks=("referring",), n_items=40, batch_size=16)
    layers = model.llm.config.num_hidden_layers + 1  # the embeddings, then every layer
    assert len(rows) == layers * 2 * 2  # x offsets (-1, 0) x attributes (colour, shape)
    assert {(r["layer"], r["offset"], r["attribute"]) for r in rows} == \
        {(la, d, a) for la in range(layers) for d in (-1, 0) for a in ("colour", "shape")}
    for r in rows:
        assert r["n_train"] > 0 and r["n_test"] > 0 and 0 <= r["accuracy"] <= 1 and 0 < r["majority"] <= 1
    # the labels are the tagged objects' own: the majority rate is the same at every layer and offset
    assert len({r["majority"] for r in rows if r["attribute"] == "shape"}) == 1
