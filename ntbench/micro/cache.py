"""The micro backbone's cache: built once per version and seed under ``$NTBENCH_HOME/backbones/``.

``prepare.json`` (the manifest: sizes, parameter counts, losses, and a SHA-256 of every file) is
written last: a folder without it, or whose files do not match it, is rebuilt, never loaded.
One process builds while the others wait on a file lock, then reuse what it built.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from filelock import FileLock
from safetensors.torch import load_file
from torch import nn

from ntbench.atomic import atomic_folder, write_json, write_text
from ntbench.data.cache import default_data_dir
from ntbench.micro.recipe import MICRO_VERSION, MicroSizes, PrepareReport, Progress, build
from ntbench.model.backbone import Backbone, ImageDecoder, load_backbone
from ntbench.paths import backbone_cache_dir

MANIFEST = "prepare.json"


def cache_dir(seed: int = 0, home: Path | None = None) -> Path:
    """The folder of the micro backbone of this recipe version and seed (``home``: default NTBENCH_HOME)."""
    root = home / "backbones" if home is not None else backbone_cache_dir()
    return root / f"micro-v{MICRO_VERSION}-seed{seed}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_is_complete(folder: Path) -> bool:
    """True only if the manifest exists and every file it lists is there with the same hash."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return False
    return bool(files) and all((folder / f).is_file() and _sha(folder / f) == h for f, h in files.items())


def prepare(data: Path, out: Path, seed: int = 0, sizes: MicroSizes = MicroSizes(),
            progress: Progress | None = None) -> PrepareReport:
    """Pretrain the micro backbone from ``data`` into ``out`` (made anew; it appears only when complete).

    Returns:
        The report that the manifest records, with the hash of every file.
    """
    with atomic_folder(out) as work:
        report = build(data, work, seed=seed, sizes=sizes, progress=progress)
        report.files = {str(p.relative_to(work)): _sha(p) for p in sorted(work.rglob("*")) if p.is_file()}
        write_json(work / MANIFEST, asdict(report), default=None)
    return report


def load_micro(folder: Path) -> Backbone:
    """Load a prepared micro backbone through the normal from_pretrained code path.

    Raises:
        FileNotFoundError: the folder is missing, incomplete or does not match its manifest.
    """
    if not cache_is_complete(folder):
        raise FileNotFoundError(f"{folder} is not a complete micro backbone (run `ntbench prepare`)")
    backbone = load_backbone(llm=str(folder / "llm"), vision=str(folder / "vision"))
    cfg = json.loads((folder / "image_decoder" / "config.json").read_text())
    decoder = ImageDecoder(cfg["embed_dim"], cfg["image_size"])
    decoder.load_state_dict(load_file(str(folder / "image_decoder" / "model.safetensors")))
    backbone.image_decoder = decoder
    proj_cfg = json.loads((folder / "projector" / "config.json").read_text())
    backbone.projector = nn.Linear(proj_cfg["in_features"], proj_cfg["out_features"])
    backbone.projector.load_state_dict(load_file(str(folder / "projector" / "model.safetensors")))
    if (folder / "mask_decoder" / "model.safetensors").is_file():  # v5 on: the segmentation prior
        backbone.mask_decoder_prior = load_file(str(folder / "mask_decoder" / "model.safetensors"))
    backbone.name = f"micro:{folder.name}"
    backbone.meta = json.loads((folder / MANIFEST).read_text())
    return backbone.check()


def ensure_micro(seed: int = 0, sizes: MicroSizes = MicroSizes(), home: Path | None = None,
                 data: Path | None = None, progress: Progress | None = None) -> tuple[Path, bool]:
    """The cached micro backbone, prepared first if missing or incomplete.

    Returns:
        (folder, built): ``built`` is False when a complete cache was found.
    """
    folder = cache_dir(seed, home)
    if cache_is_complete(folder):
        return folder, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / ".lock"):  # one process prepares; the others wait and reuse it
        if cache_is_complete(folder):
            return folder, False
        prepare(data or default_data_dir(), folder, seed=seed, sizes=sizes, progress=progress)
    return folder, True


def micro_backbone(seed: int = 0) -> Backbone:
    """The ``micro`` backbone preset (registered lazily in ntbench.model.backbone.BACKBONES)."""
    folder, _ = ensure_micro(seed)
    return load_micro(folder)


def record_manifest(folder: Path, dest: Path) -> Path:
    """Copy the manifest to ``dest/prepare.json`` and write ``dest/prepare.md`` (a readable table)."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((folder / MANIFEST).read_text())
    write_json(dest / "prepare.json", manifest, default=None)
    lines = ["# Micro backbone (made by `ntbench prepare --record results/micro`)", "",
             f"Seed {manifest['seed']}; wall time per stage (s): " +
             ", ".join(f"{k} {v:.0f}" for k, v in manifest["seconds"].items()), "",
             "| part | parameters |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in manifest["params"].items()]
    lines += ["", "| loss | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in manifest["losses"].items()]
    lines += ["", "| size | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in manifest["sizes"].items()]
    return write_text(dest / "prepare.md", "\n".join(lines) + "\n")
