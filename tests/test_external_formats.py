"""MMUD and RefCOCO loaders on small fixtures written in the official formats."""
import json
import pickle

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ntbench.data import DataError, decode_mask, read_split
from ntbench.data.external import convert_mmud, load_mmud, load_refer

H, W = 20, 30
SQUARE = [5.0, 5.0, 15.0, 5.0, 15.0, 12.0, 5.0, 12.0]  # polygon x1,y1,... covering x 5-15, y 5-12


def rle_of(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"]}  # bytes, as pycocotools gives them


def poly_mask():
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([SQUARE], H, W)))


@pytest.fixture
def mmud(tmp_path):
    disk = np.zeros((H, W), np.uint8)
    disk[2:6, 20:28] = 1
    rec = ("images/a.jpg", "a cat on a mat", "##Question: which one is soft? ##Answer <SEP> the cat<LCL-1> near the lamp<LCL-2>",
           [["the cat"], ["the lamp", "lamp on the left"]], [SQUARE, rle_of(disk)], [[5, 5, 10, 7], [20, 2, 8, 4]],
           H, W, [17, 3], ["cat", "lamp"], 5, 12)
    for stem in ("train", "valid"):
        with open(tmp_path / f"{stem}.pkl", "wb") as fh:
            pickle.dump([rec, rec], fh)
    return tmp_path, disk


def test_mmud_needs_trust(mmud):
    root, _ = mmud
    with pytest.raises(DataError, match="executes code.*trust_pickle=True"):
        load_mmud(root / "train.pkl", root, "train")


def test_a_missing_pickle_is_not_found_even_without_trust(tmp_path):
    """A wrong path says "not found", not "pass --trust-pickle" (which would not help)."""
    with pytest.raises(DataError, match="not found"):
        load_mmud(tmp_path / "nope" / "train.pkl", tmp_path, "train")
    with pytest.raises(DataError, match="not found"):
        load_refer(tmp_path / "nope", "refcoco", "unc", "val")


def test_mmud_round_trip_through_open_layout(mmud, tmp_path):
    root, disk = mmud
    samples = load_mmud(root / "train.pkl", "/imgs", "train", trust_pickle=True)
    s = samples[0]
    assert s.question == "which one is soft?"
    assert s.answer == "the cat<OBJ-1> near the lamp<OBJ-2>"
    assert s.target_objects() == [0, 1] and [o.category for o in s.objects] == ["cat", "lamp"]
    assert np.array_equal(decode_mask(s.objects[0].mask), poly_mask())
    assert np.array_equal(decode_mask(s.objects[1].mask), disk)
    counts = convert_mmud(root, tmp_path / "open", "/imgs", trust_pickle=True)
    assert counts == {"train": 2, "val": 2}
    back = read_split(tmp_path / "open", "val", check_images=False)
    assert back[0].answer == s.answer and back[0].objects[1].mask == s.objects[1].mask


def test_mmud_corrupt_record(tmp_path):
    with open(tmp_path / "train.pkl", "wb") as fh:
        pickle.dump([("only", "three", "fields")], fh)
    with pytest.raises(DataError, match=r"train.pkl\[0\]: expected a 12-tuple"):
        load_mmud(tmp_path / "train.pkl", tmp_path, "train", trust_pickle=True)


@pytest.fixture
def refer(tmp_path):
    folder = tmp_path / "refcoco"
    folder.mkdir()
    refs = [{"ref_id": 7, "ann_id": 70, "image_id": 1, "category_id": 1, "split": "val", "file_name": "x_1_70.jpg",
             "sent_ids": [1, 2], "sentences": [{"tokens": ["left", "dog"], "raw": "Left dog", "sent_id": 1, "sent": "left dog"},
                                                {"tokens": ["dog"], "raw": "dog", "sent_id": 2, "sent": "dog"}]},
            {"ref_id": 8, "ann_id": 71, "image_id": 1, "category_id": 1, "split": "testA", "file_name": "x_1_71.jpg",
             "sent_ids": [3], "sentences": [{"tokens": ["right"], "raw": "right", "sent_id": 3, "sent": "right"}]}]
    with open(folder / "refs(unc).p", "wb") as fh:
        pickle.dump(refs, fh)
    instances = {"images": [{"id": 1, "file_name": "COCO_1.jpg", "height": H, "width": W}],
                 "annotations": [{"id": 70, "image_id": 1, "category_id": 1, "segmentation": [SQUARE], "bbox": [5, 5, 10, 7]},
                                 {"id": 71, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": [100, 20, 480]},
                                  "bbox": [0, 0, 1, 1]}],
                 "categories": [{"id": 1, "name": "dog"}]}
    (folder / "instances.json").write_text(json.dumps(instances))
    return tmp_path


def test_refcoco_splits_and_masks(refer):
    val = load_refer(refer, "refcoco", "unc", "val", image_root="/coco", trust_pickle=True)
    assert [s.id for s in val] == ["refcoco-unc-7"]
    assert val[0].objects[0].refs == ["left dog", "dog"] and val[0].objects[0].category == "dog"
    assert np.array_equal(decode_mask(val[0].objects[0].mask), poly_mask())
    test_a = load_refer(refer, "refcoco", "unc", "testA", trust_pickle=True)
    m = decode_mask(test_a[0].objects[0].mask)
    assert m.sum() == 20 and m.flatten(order="F")[100:120].all()  # uncompressed RLE is column-major


def test_refcoco_bad_split(refer):
    with pytest.raises(DataError, match="split 'test' does not exist for splitBy 'unc'; allowed values: train, val, testA, testB"):
        load_refer(refer, "refcoco", "unc", "test", trust_pickle=True)


def test_refcoco_converts_every_split_through_the_cli(refer, tmp_path):
    from typer.testing import CliRunner

    from ntbench.cli import app
    from ntbench.data.io import read_meta

    dst = tmp_path / "open-refcoco"
    result = CliRunner().invoke(app, ["data", "convert", "refcoco", str(refer), str(dst), "--image-root", "/coco",
                                      "--trust-pickle"])
    assert result.exit_code == 0, result.output
    assert read_meta(dst)["counts"] == {"train": 0, "val": 1, "testA": 1, "testB": 0}
    val = read_split(dst, "val", check_images=False)
    assert val[0].id == "refcoco-unc-7" and val[0].objects[0].refs == ["left dog", "dog"]
    bad = CliRunner().invoke(app, ["data", "convert", "refcoco", str(refer), str(tmp_path / "x"), "--split-by", "xyz",
                                   "--trust-pickle"])
    assert bad.exit_code == 2 and "unc, umd" in bad.output


@pytest.mark.parametrize("content", [pickle.dumps([]), b"", b"\x80\x04 not a pickle"], ids=["empty-list", "zero-bytes", "corrupt"])
@pytest.mark.parametrize("fmt", ["mmud", "refcoco"])
def test_convert_an_empty_or_corrupt_pickle_is_one_line_naming_the_file(tmp_path, fmt, content):
    from typer.testing import CliRunner

    from ntbench.cli import app

    if fmt == "mmud":
        src, bad = tmp_path / "src", tmp_path / "src" / "train.pkl"
    else:
        src, bad = tmp_path / "src", tmp_path / "src" / "refcoco" / "refs(unc).p"
        bad.parent.mkdir(parents=True)
        (bad.parent / "instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(content)
    result = CliRunner().invoke(app, ["data", "convert", fmt, str(src), str(tmp_path / "dst"), "--trust-pickle"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], result.stderr
    assert not (tmp_path / "dst").exists()
