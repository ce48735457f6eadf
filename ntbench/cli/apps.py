"""The typer applications the command modules register on (kept apart so modules import them without a cycle)."""
from __future__ import annotations

import typer

from ntbench.cli.ui import out, quiet_warnings

app = typer.Typer(help="ntbench: ablations and benchmarks for neural tuning of frozen large models.",
                  no_args_is_help=True, add_completion=False)
bench_app = typer.Typer(help="Speed benchmarks (ratios measured side by side in one run).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
data_app = typer.Typer(help="Datasets: generate the micro world, convert MMUD/RefCOCO, statistics.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"ntbench {version('ntbench')}")
        raise typer.Exit()


@app.callback()
def _main(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """ntbench: ablations and benchmarks for neural tuning of frozen large models."""
    ctx.with_resource(quiet_warnings())  # for the command's duration, not for the library
