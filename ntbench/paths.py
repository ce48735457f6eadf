"""Where ntbench keeps what it makes once and reuses: generated data and prepared backbones."""
from __future__ import annotations

import os
from pathlib import Path


def ntbench_home() -> Path:
    """``$NTBENCH_HOME``, default ``~/.cache/ntbench``: the root of every cache below."""
    return Path(os.environ.get("NTBENCH_HOME", Path.home() / ".cache" / "ntbench"))


def data_cache_dir() -> Path:
    """Generated datasets (the default micro world and its smaller variants)."""
    return ntbench_home() / "data"


def backbone_cache_dir() -> Path:
    """Prepared backbones (the micro backbone, per version and seed)."""
    return ntbench_home() / "backbones"
