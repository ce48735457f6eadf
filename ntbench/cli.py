"""The ``ntbench`` command line: a thin layer over the library functions."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="ntbench: ablations and benchmarks for neural tuning of frozen large models.",
                  no_args_is_help=True, add_completion=False)
bench_app = typer.Typer(help="Speed benchmarks (ratios measured side by side in one run).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
out = Console()
err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List activation strategies and adapters with one-line descriptions."""
    from ntbench.adapters import ADAPTERS
    from ntbench.strategies import STRATEGIES, discover_strategies

    discover_strategies()
    groups = {"strategies": STRATEGIES, "adapters": ADAPTERS}
    if as_json:
        print(json.dumps({k: {e.name: e.description for e in reg} for k, reg in groups.items()}, indent=2))
        return
    for title, reg in groups.items():
        table = Table(title=title, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for entry in reg:
            table.add_row(entry.name, entry.description)
        out.print(table)


@app.command()
def cost(
    config: Optional[Path] = typer.Option(None, help="HF config.json (or folder) of the LLM; default: LLaMA-2-7B shape"),
    adapters: str = typer.Option("frozen,neural,lora,prefix,ia3,full", help="comma-separated adapter names"),
    batch: int = typer.Option(8, min=1), seq_len: int = typer.Option(384, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Trainable parameters and (T)FLOPs of a forward and a training step, on the meta device."""
    from transformers import LlamaConfig

    from ntbench.adapters import AdapterError
    from ntbench.cost import adapter_cost, build_meta_model
    from ntbench.registry import UnknownNameError

    if config is not None and not config.exists():
        _fail(f"--config {config}: file not found")
    cfg = str(config) if config else LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                                num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    from ntbench.adapters import ADAPTERS

    names = [a.strip() for a in adapters.split(",") if a.strip()]
    rows = []
    try:
        for name in names:  # all names checked before any (slow) counting
            ADAPTERS.get(name)
        for name in names:
            rows.append(adapter_cost(build_meta_model(cfg), name, batch, seq_len))
    except (AdapterError, UnknownNameError) as exc:
        _fail(f"--adapters: {exc}")
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"cost per adapter, batch {batch} x {seq_len} tokens")
    for col in ("adapter", "trainable params", "forward TFLOPs", "train step TFLOPs"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["adapter"], f"{r['trainable_params']:,}", f"{r['forward_flops'] / 1e12:.3f}",
                      f"{r['train_step_flops'] / 1e12:.3f}")
    out.print(table)


@bench_app.command("step")
def bench_step(
    rounds: int = typer.Option(5, min=1), steps: int = typer.Option(5, min=1, help="steps per round"),
    hidden: int = typer.Option(128), layers: int = typer.Option(4), vocab: int = typer.Option(32000),
    batch: int = typer.Option(16), seq_len: int = typer.Option(128),
    device: str = typer.Option("cpu"), dtype: str = typer.Option("float32", help="float32 or bfloat16"),
    csv: Optional[Path] = typer.Option(None, help="also write the rows as CSV"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Training-step time of frozen, LoRA (r=8, qv) and neural (Dz=128, qv), interleaved."""
    import pandas as pd

    from ntbench.bench import StepBenchConfig, step_benchmark

    cfg = StepBenchConfig(hidden=hidden, layers=layers, vocab=vocab, batch=batch, seq_len=seq_len,
                          rounds=rounds, steps_per_round=steps, device=device, dtype=dtype)
    with err.status("benchmarking") as status:
        rows = step_benchmark(cfg, progress=lambda msg: status.update(f"benchmarking: {msg}"))
    if csv:
        csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(csv, index=False)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=rows[0]["shape"], caption=rows[0]["machine"])
    ratio_cols = [k for k in rows[0] if k.startswith("ratio_vs_")]
    for col in ["adapter", "median step (s)", *ratio_cols]:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["adapter"], f"{r['median_step_s']:.4f}",
                      *[str(r.get(c, "-")) for c in ratio_cols])
    out.print(table)


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
