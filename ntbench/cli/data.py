"""`ntbench data ...`: make the micro world, statistics, convert MMUD and RefCOCO."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ntbench.cli.apps import data_app
from ntbench.cli.ui import _fail, check_out_file, check_out_folder, out, print_json, progress_bar


@data_app.command("make")
def data_make(
    out_dir: Path = typer.Option(..., "--out", help="new folder for the dataset"),
    seed: int = typer.Option(0), train: int = typer.Option(20000, min=0), val: int = typer.Option(500, min=0),
    test: int = typer.Option(500, min=0), size: int = typer.Option(64, min=16, help="image side in pixels"),
    workers: Optional[int] = typer.Option(None, min=1, help="processes (default: all cores)"),
    as_json: bool = typer.Option(False, "--json", help="print the folder, counts and time as JSON"),
) -> None:
    """Generate the micro world (deterministic by seed) in the open layout."""
    import time


    from ntbench.data.microworld import MicroWorldConfig, generate

    if train + val + test == 0:
        _fail("--train, --val and --test are all 0: that is an empty dataset (nothing written)")
    check_out_folder("--out", out_dir)
    cfg = MicroWorldConfig(seed=seed, train=train, val=val, test=test, size=size)
    start = time.perf_counter()
    try:
        with progress_bar() as progress:
            task = progress.add_task("generating", total=train + val + test)
            generate(out_dir, cfg, workers=workers, progress=lambda n: progress.advance(task, n))
    except FileExistsError as exc:  # after the bar has gone: no stale "generating 0/N" below the error
        _fail(f"--out: {exc}")
    elapsed = time.perf_counter() - start
    if as_json:
        print_json({"folder": str(out_dir), "counts": {"train": train, "val": val, "test": test}, "seconds": elapsed})
        return
    out.print(f"wrote {train + val + test} samples to {out_dir} in {elapsed:.1f} s "
              f"({(train + val + test) / max(elapsed, 1e-9):.0f} samples/s)")


@data_app.command("stats")
def data_stats(
    root: Path = typer.Argument(..., help="dataset folder (open layout)"),
    plot: Optional[Path] = typer.Option(None, help="PNG path (default: ROOT/stats.png)"),
    as_json: bool = typer.Option(False, "--json", help="print per-split means, stds, ranges and the plot path as JSON"),
) -> None:
    """Caption length, QA length and objects per sample (like the paper's Figure A.7)."""
    import pandas as pd

    from ntbench.data.io import read_meta
    from ntbench.data.schema import DataError
    from ntbench.data.stats import plot_statistics, split_statistics

    check_out_file("--plot", plot)

    try:
        meta = read_meta(root)
        order = ["train", "val", "test"] + sorted(set(meta["counts"]) - {"train", "val", "test"})
        df = pd.concat([split_statistics(root, s) for s in order
                        if s in meta["counts"] and (root / s / "annotations.jsonl").is_file()])
    except DataError as exc:
        _fail(str(exc))
    if as_json:
        cols = ["caption_words", "qa_words", "objects", "answer_objects"]
        splits = {str(split): {"samples": len(g), **{c: {"mean": float(g[c].mean()), "std": float(g[c].std(ddof=0)),
                                                        "min": int(g[c].min()), "max": int(g[c].max())} for c in cols}}
                  for split, g in df.groupby("split", sort=False)}
        print_json({"root": str(root), "splits": splits, "plot": str(plot_statistics(df, plot or root / "stats.png"))})
        return
    table = Table(title=f"{root}")
    for col in ("split", "samples", "caption words", "QA words", "objects", "answer objects"):
        table.add_column(col, justify="right")
    for split, g in df.groupby("split", sort=False):
        fmt = lambda c: f"{g[c].mean():.1f} ± {g[c].std(ddof=0):.1f} [{g[c].min()}-{g[c].max()}]"  # noqa: E731
        table.add_row(str(split), str(len(g)), fmt("caption_words"), fmt("qa_words"), fmt("objects"),
                      fmt("answer_objects"))
    out.print(table)
    path = plot_statistics(df, plot or root / "stats.png")
    out.print(f"plot: {path}")


@data_app.command("convert")
def data_convert(
    fmt: str = typer.Argument(..., help="source format: mmud, refcoco, refcoco+ or refcocog"),
    src: Path = typer.Argument(..., help="mmud: folder with train.pkl / valid.pkl / test.pkl; refcoco*: the refer "
                                         "data root holding DATASET/refs(SPLIT_BY).p and DATASET/instances.json"),
    dst: Path = typer.Argument(..., help="new folder for the open layout"),
    image_root: Path = typer.Option(Path("."), help="folder the images' paths are relative to"),
    split_by: str = typer.Option("unc", help="refcoco*: the split definition, unc or umd (RefCOCOg: umd)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow unpickling (runs code: trusted files only)"),
    as_json: bool = typer.Option(False, "--json", help="print the destination and the counts per split as JSON"),
) -> None:
    """Convert an official release (MMUD, RefCOCO, RefCOCO+, RefCOCOg) into ntbench's open layout, once."""
    from ntbench.data.external import convert_mmud, convert_refer
    from ntbench.data.schema import DataError

    formats = ("mmud", "refcoco", "refcoco+", "refcocog")
    if fmt not in formats:
        _fail(f"unknown format {fmt!r}; allowed values: {', '.join(formats)}")
    check_out_folder("DST", dst)
    if dst.exists() and any(dst.iterdir()):
        _fail(f"{dst} exists and is not empty; choose a new destination")
    try:
        if fmt == "mmud":
            counts = convert_mmud(src, dst, image_root.resolve(), trust_pickle=trust_pickle)
        else:
            counts = convert_refer(src, dst, fmt, split_by, image_root.resolve(), trust_pickle=trust_pickle)
    except DataError as exc:
        _fail(str(exc))
    if as_json:
        print_json({"folder": str(dst), "counts": counts})
        return
    out.print(f"wrote {dst}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
