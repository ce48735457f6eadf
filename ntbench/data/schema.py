"""One sample schema for every dataset (micro world, MMUD, RefCOCO) and for the trainer.

Masks are COCO RLE dicts (``{"size": [h, w], "counts": str}``, pycocotools), so generated and
real data look the same. An answer names objects with tags ``<OBJ-1>``, ``<OBJ-2>``, ...; tag i
refers to ``objects[answer_objects[i - 1]]``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

TAG = re.compile(r"<OBJ-(\d+)>")
SCHEMA_VERSION = 1


class DataError(ValueError):
    """Corrupt or inconsistent data; the message names the file and the line or sample id."""


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Binary HxW mask -> COCO RLE with ``counts`` as str (JSON-safe)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_run_lengths(counts: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string, checked (pycocotools decodes garbage silently).

    Raises:
        ValueError: a character outside the format, a truncated number or a negative run.
    """
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("truncated run length")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {counts[p]!r} is not part of the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("negative run length")
        runs.append(x)
    return runs


def check_rle(rle: dict[str, Any]) -> None:
    """Raise ValueError unless the runs of ``rle`` cover exactly height x width pixels."""
    counts = rle["counts"]
    h, w = (int(v) for v in rle["size"])
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = counts if isinstance(counts, list) else rle_run_lengths(counts)
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise ValueError(f"runs cover {sum(runs)} pixels, the mask has {h}x{w} = {h * w}")


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (``counts`` as str or bytes) -> HxW uint8 mask."""
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(counts, str):
        rle = {"size": rle["size"], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle)


def mask_box(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of the mask's pixels (COCO convention)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


@dataclass
class ObjectAnnotation:
    category: str
    refs: list[str]                  # referring expressions that single this object out
    mask: dict[str, Any]             # COCO RLE
    box: list[float]                 # x, y, w, h
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    id: str
    image: str                       # path, relative to the split folder unless absolute
    width: int
    height: int
    caption: str
    question: str
    answer: str                      # with <OBJ-i> tags
    answer_objects: list[int]        # tag i -> objects[answer_objects[i-1]]
    objects: list[ObjectAnnotation]
    t2i_prompt: str = ""
    groups: list[dict[str, Any]] = field(default_factory=list)  # {"text", "objects": [indices]}
    template: str = ""               # question template (micro world), for analysis
    source: str = ""                 # dataset name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> "Sample":
        """Build and validate; ``where`` (file:line) goes into every error message."""
        try:
            objects = [ObjectAnnotation(**o) for o in data.pop("objects")]
            sample = cls(objects=objects, **data)
        except (TypeError, KeyError) as exc:
            raise DataError(f"{where}: not a valid sample ({exc})") from None
        sample.validate(where)
        return sample

    def tags(self) -> list[int]:
        return [int(m) for m in TAG.findall(self.answer)]

    def target_objects(self) -> list[int]:
        """Indices into ``objects`` of the answer's tags, in tag order."""
        return [self.answer_objects[i - 1] for i in self.tags()]

    def validate(self, where: str) -> None:
        """Every tag has an object with a decodable mask of the image's size."""
        where = f"{where} (sample {self.id})"
        for i in self.tags():
            if not 1 <= i <= len(self.answer_objects):
                raise DataError(f"{where}: answer tag <OBJ-{i}> has no object (answer_objects has "
                                f"{len(self.answer_objects)} entries)")
            j = self.answer_objects[i - 1]
            if not 0 <= j < len(self.objects):
                raise DataError(f"{where}: answer tag <OBJ-{i}> points to object {j}, "
                                f"but the sample has {len(self.objects)} objects")
        for j, obj in enumerate(self.objects):
            rle = obj.mask
            if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
                raise DataError(f"{where}: object {j} has no mask (expected a COCO RLE dict)")
            if list(rle["size"]) != [self.height, self.width]:
                raise DataError(f"{where}: object {j} mask size {rle['size']} != image size "
                                f"[{self.height}, {self.width}]")
            try:
                check_rle(rle)
            except Exception as exc:  # pycocotools raises several types on garbage
                raise DataError(f"{where}: object {j} mask is not decodable RLE ({exc})") from None
