"""`ntbench bench takeoff`: when segmentation leaves the trivial-mask level, over many seeds."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ntbench.cli.apps import bench_app
from ntbench.cli.ui import _fail, _fail_invalid, _parse_options, err, out


def _seed_list(text: str) -> list[int]:
    """'0-19' or '0,3,5' (or both: '0-4,9')."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            a, _, b = part.partition("-")
            seeds += list(range(int(a), int(b) + 1)) if b else [int(a)]
    except ValueError:
        _fail(f"--seeds {text!r}: expected integers like 0-19 or 0,3,5")
    return seeds


@bench_app.command("takeoff")
def bench_takeoff(
    seeds: str = typer.Option("0-19", help="seeds: 0-19 or 0,3,5"),
    backbone: str = typer.Option("micro"), adapter: str = typer.Option("neural"),
    option: list[str] = typer.Option([], "--option", "-o", help="adapter option KEY=VALUE (repeatable)"),
    every: int = typer.Option(50, min=1, help="evaluate every N steps"),
    max_steps: int = typer.Option(1000, min=1, help="stop a seed that has not taken off here"),
    margin: float = typer.Option(0.10, help="take-off: reasoning oIoU above the all-objects mask by this much"),
    workers: int = typer.Option(2, min=1, help="worker processes, one thread each"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="write takeoff.csv/.json/.md/.png here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train the default configuration for each seed, scoring segmentation every N steps, and report when
    each seed's reasoning segmentation took off (and how many did)."""
    from pydantic import ValidationError

    from ntbench.bench.takeoff import takeoff_statistics, write_takeoff
    from ntbench.provenance import provenance
    from ntbench.registry import UnknownNameError
    from ntbench.train.trial import TrialConfig

    seed_list = _seed_list(seeds)
    base = {"backbone": backbone, "adapter": adapter, "adapter_options": _parse_options(option)}
    try:
        TrialConfig(**base)
    except (ValidationError, UnknownNameError) as exc:
        _fail_invalid(exc)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out {out_dir}: exists and is not a folder")
    if backbone == "micro":  # prepare once here, not in every worker
        from ntbench.micro.cache import ensure_micro
        ensure_micro()
    with err.status(f"take-off: 0/{len(seed_list)} seeds") as status:
        try:
            rows, summary = takeoff_statistics(base, seed_list, every=every, max_steps=max_steps, margin=margin,
                                               workers=workers,
                                               progress=lambda d, n: status.update(f"take-off: {d}/{n} seeds"))
        except ValueError as exc:
            _fail(str(exc))
    command = "ntbench " + " ".join(sys.argv[1:])
    if out_dir is not None:
        write_takeoff(out_dir, rows, summary, command, provenance())
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    out.print(f"{summary['took_off']} of {summary['n_seeds']} seeds took off; median take-off step "
              f"{summary['median_takeoff_step']}")
    for seed, step in summary["takeoff_step"].items():
        out.print(f"  seed {seed}: {step if step is not None else 'never by ' + str(max_steps)}")
