import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ntbench.data import DataError, SampleDataset, collate_samples, decode_mask, read_split
from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.data.language import plural, referring_expressions
from ntbench.data.render import COLOURS, SHAPES, SceneObject

SMALL = MicroWorldConfig(seed=3, train=120, val=20, test=60)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("mw") / "ds", SMALL, workers=2)


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_byte_identical_other_seed_differs(world, tmp_path):
    again = generate(tmp_path / "again", SMALL, workers=1)  # other worker count, same bytes
    assert tree_digest(again) == tree_digest(world)
    other = generate(tmp_path / "other", MicroWorldConfig(seed=4, train=120, val=20, test=60), workers=2)
    assert tree_digest(other) != tree_digest(world)


def test_meta_records_version_and_params(world):
    meta = json.loads((world / "meta.json").read_text())
    assert meta["generator_version"] >= 1 and meta["params"]["seed"] == 3 and meta["counts"]["test"] == 60


def test_masks_are_the_objects_pixels(world):
    """Each mask is exactly the pixels painted in the object's colour (±10% shade) and not the
    background, and every tag in every answer has one."""
    for s in read_split(world, "train")[:60]:
        image = np.asarray(Image.open(world / "train" / s.image)).astype(int)
        assert s.tags() and all(1 <= t <= len(s.answer_objects) for t in s.tags())
        union = np.zeros(image.shape[:2], bool)
        for obj in s.objects:
            m = decode_mask(obj.mask).astype(bool)
            assert m.sum() >= 8
            colour = np.array(COLOURS[obj.attributes["colour"]])
            ratio = image[m] / np.maximum(colour, 1)
            assert np.all(np.abs(image[m] - (colour * ratio.mean(0)).round()) <= 3)
            union |= m
        # outside every mask: background, i.e. no pixel exactly equals a painted object's colour run
        outside = image[~union]
        for obj in s.objects:
            m = decode_mask(obj.mask).astype(bool)
            painted = image[m][0]
            assert not np.all(outside == painted, axis=1).any()


def solve_from_scene(sample):
    """Answer the question from the object list alone (what a viewer of the image knows)."""
    objs = [o.attributes for o in sample.objects]
    q = sample.question
    size = {"small": 0, "medium": 1, "large": 2}
    if "same colour as" in q:
        ref = q.split("same colour as ", 1)[1].rstrip("?")
        scene = [SceneObject(o["shape"], o["colour"], o["size"], *o["center"], 0.0) for o in objs]
        a = [i for i in range(len(scene)) if ref in referring_expressions(scene, i)]
        assert len(a) == 1
        return sorted([i for i, o in enumerate(objs) if o["colour"] == objs[a[0]]["colour"]])
    if "largest" in q:
        return [max(range(len(objs)), key=lambda i: size[objs[i]["size"]])]
    if "smallest" in q:
        return [min(range(len(objs)), key=lambda i: size[objs[i]["size"]])]
    if "left" in q:
        return [min(range(len(objs)), key=lambda i: objs[i]["center"][0])]
    if "right" in q:
        return [max(range(len(objs)), key=lambda i: objs[i]["center"][0])]
    if "top" in q:
        return [min(range(len(objs)), key=lambda i: objs[i]["center"][1])]
    if "different colour" in q:
        colours = [o["colour"] for o in objs]
        return [i for i, c in enumerate(colours) if colours.count(c) == 1]
    if "How many" in q:
        shape = next(sh for sh in SHAPES if f"How many {plural(sh)} " in q)
        return [i for i, o in enumerate(objs) if o["shape"] == shape]
    raise AssertionError(q)


def union_mask(sample, indices):
    masks = [decode_mask(sample.objects[i].mask).astype(bool) for i in indices]
    return np.logical_or.reduce(masks)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_no_text_only_shortcut(world):
    """Per question template, the best question-only answer (the pixel-wise majority of the
    training answers' masks) scores far below answering from the scene."""
    train, test = read_split(world, "train"), read_split(world, "test")
    prior = {}
    for tpl in {s.template for s in train}:
        masks = [union_mask(s, s.target_objects()) for s in train if s.template == tpl]
        prior[tpl] = np.mean(masks, axis=0) >= 0.5
    shortcut, scene = [], []
    for s in test:
        truth = union_mask(s, s.target_objects())
        guess = prior.get(s.template, np.zeros_like(truth))
        shortcut.append(iou(guess, truth))
        scene.append(iou(union_mask(s, solve_from_scene(s)), truth))
    assert np.mean(scene) == pytest.approx(1.0)
    assert np.mean(shortcut) < 0.25


def test_referring_expressions_and_groups(world):
    for s in read_split(world, "train")[:60]:
        assert all(o.refs for o in s.objects)
        for g in s.groups:
            assert len(g["objects"]) >= 2 and g["text"].startswith("segment")
        assert s.caption and s.t2i_prompt.startswith("Draw")


def test_dataset_and_loader(world):
    import torch
    ds = SampleDataset(world, "val")
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.uint8
    assert item["masks"].shape[0] == len(ds.samples[0].objects)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_samples)))
    assert batch["image"].shape == (4, 3, 64, 64) and len(batch["masks"]) == 4


def rewrite_line(world, tmp_path, mutate):
    """Copy the val split with its first annotation line changed by ``mutate``."""
    import shutil
    root = tmp_path / "broken"
    shutil.copytree(world, root)
    path = root / "val" / "annotations.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = mutate(lines[1])
    path.write_text("\n".join(lines) + "\n")
    return root


def test_truncated_line_names_file_and_line(world, tmp_path):
    root = rewrite_line(world, tmp_path, lambda l: l[: len(l) // 2])
    with pytest.raises(DataError, match=r"val/annotations.jsonl:2: invalid JSON.*truncated"):
        read_split(root, "val")


def test_tag_without_mask(world, tmp_path):
    def add_tag(line):
        d = json.loads(line)
        d["answer"] += " <OBJ-9>"
        return json.dumps(d)
    root = rewrite_line(world, tmp_path, add_tag)
    with pytest.raises(DataError, match=r"annotations.jsonl:2 \(sample val-000001\): answer tag <OBJ-9> has no object"):
        read_split(root, "val")


def test_undecodable_rle(world, tmp_path):
    def corrupt(line):
        d = json.loads(line)
        d["objects"][0]["mask"]["counts"] = "\x7f\x7f\x7f"
        return json.dumps(d)
    root = rewrite_line(world, tmp_path, corrupt)
    with pytest.raises(DataError, match=r"sample val-000001\): object 0 mask is not decodable"):
        read_split(root, "val")


def test_missing_image(world, tmp_path):
    import shutil
    root = tmp_path / "noimg"
    shutil.copytree(world, root)
    (root / "val" / "images" / "val-000003.png").unlink()
    with pytest.raises(DataError, match=r"annotations.jsonl:4 \(sample val-000003\): image .*val-000003.png not found"):
        read_split(root, "val")


def test_make_refuses_to_overwrite(world):
    with pytest.raises(FileExistsError, match="not empty"):
        generate(world, SMALL)
