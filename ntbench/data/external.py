"""Loaders of the real datasets into the sample schema: MMUD (official pickles) and RefCOCO /
RefCOCO+ / RefCOCOg (the ``refer`` format). File formats: shared/notes/reference-code.md.

Both formats are Python pickles, and loading a pickle executes code: every loader here refuses
unless ``trust_pickle=True`` (``--trust-pickle`` on the command line).
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from ntbench.atomic import atomic_open
from ntbench.data.schema import DataError, ObjectAnnotation, Sample, decode_mask, encode_mask, mask_box

MMUD_SPLITS = {"train": "train", "valid": "val", "test": "test"}  # file stem -> our split name
REFER_SPLITS = {"unc": ("train", "val", "testA", "testB"), "umd": ("train", "val", "test")}
LCL = re.compile(r"<LCL-(\d+)>")


def _unpickle(path: Path, trust_pickle: bool) -> Any:
    if not path.is_file():  # a wrong path first: --trust-pickle would not help
        raise DataError(f"{path} not found")
    if not trust_pickle:
        raise DataError(f"{path}: loading a pickle executes code; pass trust_pickle=True "
                        "(--trust-pickle) only for files from a source you trust")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception as exc:
        raise DataError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from None


def segmentation_to_rle(seg: Any, height: int, width: int, where: str) -> dict[str, Any]:
    """COCO polygon(s) (flat list or list of lists) or RLE (compressed or not) -> RLE with str counts."""
    try:
        if isinstance(seg, dict):
            rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg.get("counts"), list) else seg
            mask = decode_mask(rle)
        else:
            polys = [seg] if seg and not isinstance(seg[0], (list, tuple)) else seg
            mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in polys],
                                                                             height, width)))
    except Exception as exc:
        raise DataError(f"{where}: undecodable mask ({type(exc).__name__}: {exc})") from None
    if mask.shape != (height, width):
        raise DataError(f"{where}: mask size {list(mask.shape)} != image size [{height}, {width}]")
    return encode_mask(mask)


def _split_enriched(text: str) -> tuple[str, str]:
    """'##Question: q ##Answer <SEP> a' -> (q, a) with <LCL-i> tags renamed <OBJ-i>."""
    text = LCL.sub(r"<OBJ-\1>", text)
    if "##Answer" not in text:
        return "", text.strip()
    q, a = text.split("##Answer", 1)
    q = q.replace("##Question:", "").strip()
    a = a.split("<SEP>", 1)[-1].strip()
    return q, a


def load_mmud(pkl: str | Path, image_root: str | Path, split: str, trust_pickle: bool = False) -> list[Sample]:
    """Samples of one official MMUD pickle (list of 12-tuples)."""
    pkl = Path(pkl)
    records = _unpickle(pkl, trust_pickle)
    if not isinstance(records, list):
        raise DataError(f"{pkl}: expected a list of 12-tuples, got {type(records).__name__}")
    if not records:  # a split file with nothing in it: a failed download or export, not a dataset
        raise DataError(f"{pkl}: empty (no MMUD records); nothing written")
    samples = []
    for k, rec in enumerate(records):
        where = f"{pkl}[{k}]"
        if not isinstance(rec, (tuple, list)) or len(rec) != 12:
            raise DataError(f"{where}: expected a 12-tuple, got {type(rec).__name__} of length "
                            f"{len(rec) if hasattr(rec, '__len__') else '?'}")
        (image, caption, enriched, texts, masks, boxes, height, width, _cat_ids, cat_text, _, _) = rec
        if not (len(texts) == len(masks) == len(boxes)):
            raise DataError(f"{where}: {len(texts)} text lists, {len(masks)} masks and {len(boxes)} boxes differ in number")
        objects = []
        for i, (refs, seg, box) in enumerate(zip(texts, masks, boxes)):
            rle = segmentation_to_rle(seg, int(height), int(width), f"{where} object {i}")
            category = cat_text[i] if isinstance(cat_text, (list, tuple)) and i < len(cat_text) else str(cat_text)
            objects.append(ObjectAnnotation(category=str(category), refs=[str(r) for r in refs], mask=rle,
                                            box=[float(v) for v in box] if box is not None else mask_box(decode_mask(rle))))
        question, answer = _split_enriched(str(enriched))
        sample = Sample(id=f"mmud-{split}-{k:06d}", image=str(Path(image_root) / image), width=int(width),
                        height=int(height), caption=str(caption), question=question, answer=answer,
                        answer_objects=list(range(len(objects))), objects=objects, t2i_prompt=str(caption),
                        source="mmud")
        sample.validate(where)
        samples.append(sample)
    return samples


def load_refer(data_root: str | Path, dataset: str = "refcoco", split_by: str = "unc", split: str = "val",
               image_root: str | Path = "", trust_pickle: bool = False) -> list[Sample]:
    """One split of RefCOCO / RefCOCO+ / RefCOCOg: one sample per referred object."""
    if split_by not in REFER_SPLITS:
        raise DataError(f"split_by {split_by!r} is not supported; allowed values: {', '.join(REFER_SPLITS)}")
    if split not in REFER_SPLITS[split_by]:
        raise DataError(f"split {split!r} does not exist for splitBy {split_by!r}; allowed values: "
                        f"{', '.join(REFER_SPLITS[split_by])}")
    folder = Path(data_root) / dataset
    refs = _unpickle(folder / f"refs({split_by}).p", trust_pickle)
    if isinstance(refs, (list, tuple, dict)) and not refs:
        raise DataError(f"{folder / f'refs({split_by}).p'}: empty (no referring expressions); nothing written")
    inst_path = folder / "instances.json"
    if not inst_path.is_file():
        raise DataError(f"{inst_path} not found")
    try:
        instances = json.loads(inst_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{inst_path}: invalid JSON ({exc})") from None
    anns = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    cats = {c["id"]: c["name"] for c in instances.get("categories", [])}
    samples = []
    for k, ref in enumerate(refs):
        if ref.get("split") != split:
            continue
        where = f"{folder / f'refs({split_by}).p'}[{k}] (ref_id {ref.get('ref_id')})"
        if ref.get("ann_id") not in anns or ref.get("image_id") not in images:
            raise DataError(f"{where}: ann_id {ref.get('ann_id')} or image_id {ref.get('image_id')} "
                            f"missing from {inst_path}")
        ann, img = anns[ref["ann_id"]], images[ref["image_id"]]
        rle = segmentation_to_rle(ann["segmentation"], img["height"], img["width"], where)
        sentences = [s.get("sent") or s.get("raw", "") for s in ref.get("sentences", [])]
        obj = ObjectAnnotation(category=cats.get(ref.get("category_id"), str(ref.get("category_id"))),
                               refs=sentences, mask=rle, box=[float(v) for v in ann.get("bbox", mask_box(decode_mask(rle)))])
        samples.append(Sample(id=f"{dataset}-{split_by}-{ref['ref_id']}", image=str(Path(image_root) / img["file_name"]),
                              width=img["width"], height=img["height"], caption="", question="", answer="",
                              answer_objects=[], objects=[obj], source=dataset))
    return samples


def write_split(root: str | Path, split: str, samples: list[Sample]) -> Path:
    """Write samples in the open layout (annotations only; images stay where they are)."""
    path = Path(root) / split / "annotations.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        for s in samples:
            fh.write(json.dumps(s.to_json(), sort_keys=True, separators=(",", ":")) + "\n")
    return path


def convert_mmud(src: str | Path, dst: str | Path, image_root: str | Path, trust_pickle: bool = False) -> dict[str, int]:
    """Convert every ``{train,valid,test}.pkl`` in ``src`` into the open layout at ``dst``."""
    src, dst = Path(src), Path(dst)
    found = [stem for stem in MMUD_SPLITS if (src / f"{stem}.pkl").is_file()]
    if not found:
        raise DataError(f"{src}: no MMUD pickles found (expected {', '.join(s + '.pkl' for s in MMUD_SPLITS)})")
    loaded = {MMUD_SPLITS[stem]: load_mmud(src / f"{stem}.pkl", image_root, MMUD_SPLITS[stem], trust_pickle)
              for stem in found}  # everything is read (and checked) before anything is written
    return _write_converted(dst, loaded, "mmud-convert", {"src": str(src), "image_root": str(image_root)})


def convert_refer(data_root: str | Path, dst: str | Path, dataset: str = "refcoco", split_by: str = "unc",
                  image_root: str | Path = "", trust_pickle: bool = False) -> dict[str, int]:
    """Convert every split of RefCOCO / RefCOCO+ / RefCOCOg (``split_by``: unc or umd) into the open layout."""
    if split_by not in REFER_SPLITS:
        raise DataError(f"split_by {split_by!r} is not supported; allowed values: {', '.join(REFER_SPLITS)}")
    loaded = {split: load_refer(data_root, dataset, split_by, split, image_root, trust_pickle)
              for split in REFER_SPLITS[split_by]}  # everything is read (and checked) before anything is written
    if not any(loaded.values()):
        raise DataError(f"{Path(data_root) / dataset}: no referring expressions in any split of {split_by!r}")
    return _write_converted(Path(dst), loaded, f"{dataset}-convert",
                            {"src": str(data_root), "dataset": dataset, "split_by": split_by, "image_root": str(image_root)})


def _write_converted(dst: Path, loaded: dict[str, list[Sample]], generator: str, params: dict) -> dict[str, int]:
    counts = {}
    for split, samples in loaded.items():
        write_split(dst, split, samples)
        counts[split] = len(samples)
    meta = {"format": "ntbench-sample-jsonl", "schema_version": 1, "generator": generator, "params": params,
            "counts": counts}
    (dst / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return counts
