"""Reading datasets in ntbench's open layout (see ntbench/data/microworld.py), with clear errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ntbench.data.schema import DataError, Sample, decode_mask

ANNOTATIONS = "annotations.jsonl"


def read_meta(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path} not found: not an ntbench dataset folder (make one with `ntbench data make`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None


def read_split(root: str | Path, split: str, check_images: bool = True) -> list[Sample]:
    """All samples of ``split``; every line and every referenced image is checked.

    Raises:
        DataError: naming the file and line (or the sample id) of the first problem.
    """
    path = Path(root) / split / ANNOTATIONS
    if not path.is_file():
        raise DataError(f"{path} not found (splits here: "
                        f"{sorted(p.parent.name for p in Path(root).glob('*/' + ANNOTATIONS))})")
    samples = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON ({exc.msg}); the file may be truncated") from None
            sample = Sample.from_json(data, where)
            if check_images and not image_path(root, split, sample).is_file():
                raise DataError(f"{where} (sample {sample.id}): image {image_path(root, split, sample)} not found")
            samples.append(sample)
    return samples


def image_path(root: str | Path, split: str, sample: Sample) -> Path:
    p = Path(sample.image)
    return p if p.is_absolute() else Path(root) / split / p


class SampleDataset(torch.utils.data.Dataset):
    """Samples of one split as tensors: image uint8 [3, H, W], masks uint8 [n_objects, H, W].

    Annotations are read and validated once; images and masks are decoded per item.
    """

    def __init__(self, root: str | Path, split: str):
        self.root, self.split = Path(root), split
        self.samples = read_split(root, split)
        if not self.samples:  # training would fail later on an empty draw, far from the cause
            raise DataError(f"{self.root / split / ANNOTATIONS}: no samples in split {split!r}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        path = image_path(self.root, self.split, s)
        try:
            with Image.open(path) as im:
                image = np.array(im.convert("RGB"))  # writable copy for torch
        except OSError as exc:
            raise DataError(f"{path} (sample {s.id}): cannot read image ({exc})") from None
        masks = np.stack([decode_mask(o.mask) for o in s.objects]) if s.objects else \
            np.zeros((0, s.height, s.width), np.uint8)
        return {"id": s.id, "image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
                "masks": torch.from_numpy(masks), "caption": s.caption, "question": s.question,
                "answer": s.answer, "targets": s.target_objects(), "t2i_prompt": s.t2i_prompt,
                "refs": [o.refs for o in s.objects]}


def collate_samples(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images; keep per-sample lists for everything of variable length."""
    out: dict[str, Any] = {k: [b[k] for b in batch] for k in batch[0]}
    out["image"] = torch.stack(out["image"])
    return out
