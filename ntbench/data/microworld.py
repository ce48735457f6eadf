"""The micro world generator: ``ntbench data make --out DIR``.

Deterministic by seed: sample k of split s is generated from its own generator seeded by
(seed, s, k), so the output does not depend on how many worker processes made it.

On-disk layout (open, documented in README.md):

    DIR/meta.json                       format version, generator parameters, counts
    DIR/<split>/annotations.jsonl       one Sample (ntbench.data.schema) per line
    DIR/<split>/images/<id>.png         64x64 RGB (by default)
"""
from __future__ import annotations

import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ntbench.atomic import atomic_open, write_json
from ntbench.data import language
from ntbench.data.render import BACKGROUNDS, place_objects, render
from ntbench.data.schema import SCHEMA_VERSION, ObjectAnnotation, Sample, encode_mask, mask_box

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class MicroWorldConfig:
    seed: int = 0
    train: int = 20000
    val: int = 500
    test: int = 500
    size: int = 64            # image side in pixels
    min_objects: int = 1
    max_objects: int = 6


def make_sample(cfg: MicroWorldConfig, split: str, index: int) -> tuple[Sample, bytes]:
    """One sample and its PNG bytes, a pure function of (config, split, index)."""
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index])
    while True:  # rejection sampling: every object visible and nameable, a question answerable
        count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        objs = place_objects(rng, cfg.size, count)
        if objs is None:
            continue
        refs = [language.referring_expressions(objs, i) for i in range(len(objs))]
        qas = language.questions(objs, rng)
        if all(refs) and qas:
            break
    background = str(rng.choice(list(BACKGROUNDS)))
    image = render(objs, background, rng, cfg.size)
    # pick the template first, so templates that fit many ways (counting) do not dominate
    templates = sorted({q[0] for q in qas})
    chosen_tpl = templates[int(rng.integers(len(templates)))]
    options = [q for q in qas if q[0] == chosen_tpl]
    template, question, answer, answer_objects = options[int(rng.integers(len(options)))]
    sample_id = f"{split}-{index:06d}"
    objects = []
    for o, r in zip(objs, refs):
        chosen = [r[k] for k in sorted(rng.permutation(len(r))[:3])]
        objects.append(ObjectAnnotation(
            category=o.shape, refs=chosen, mask=encode_mask(o.mask), box=mask_box(o.mask),
            attributes={"shape": o.shape, "colour": o.colour, "size": o.size,
                        "center": [round(o.cx, 2), round(o.cy, 2)]}))
    sample = Sample(id=sample_id, image=f"images/{sample_id}.png", width=cfg.size, height=cfg.size,
                    caption=language.caption(objs, background, rng), question=question, answer=answer,
                    answer_objects=answer_objects, objects=objects,
                    t2i_prompt=language.t2i_prompt(objs, background, rng),
                    groups=language.group_requests(objs), template=template, source="microworld")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return sample, buf.getvalue()


def _chunk(args: tuple[MicroWorldConfig, str, int, int]) -> list[tuple[str, str, bytes]]:
    cfg, split, start, stop = args
    out = []
    for k in range(start, stop):
        sample, png = make_sample(cfg, split, k)
        out.append((sample.id, json.dumps(sample.to_json(), sort_keys=True, separators=(",", ":")), png))
    return out


def generate(out: str | Path, cfg: MicroWorldConfig, workers: int | None = None,
             progress: Callable[[int], None] | None = None) -> Path:
    """Write the dataset to ``out`` (made anew; an existing dataset folder is refused).

    Raises:
        FileExistsError: ``out`` exists and is not empty.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out folder")
    workers = workers or min(os.cpu_count() or 1, 8)
    chunk = 250
    for split in SPLITS:
        n = getattr(cfg, split)
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        jobs = [(cfg, split, s, min(s + chunk, n)) for s in range(0, n, chunk)]
        # complete files only: a killed generation leaves no annotations.jsonl
        with atomic_open(out / split / "annotations.jsonl") as ann, ProcessPoolExecutor(workers) as pool:
            for rows in pool.map(_chunk, jobs):
                for sample_id, line, png in rows:
                    (out / split / "images" / f"{sample_id}.png").write_bytes(png)
                    ann.write(line + "\n")
                if progress:
                    progress(len(rows))
    meta = {"format": "ntbench-sample-jsonl", "schema_version": SCHEMA_VERSION, "generator": "microworld",
            "generator_version": GENERATOR_VERSION, "params": asdict(cfg),
            "counts": {s: getattr(cfg, s) for s in SPLITS}}
    write_json(out / "meta.json", meta)  # written last: its presence marks a complete dataset
    return out
