"""`ntbench list` and `ntbench cost`: what is registered, and what each adapter costs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ntbench.cli.apps import app
from ntbench.cli.ui import _fail, err, out, shipped_suites, suites_dir


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List what can be named in a trial or suite: activation strategies, adapters, tasks, backbone
    presets, and the shipped suites, each with a one-line description."""
    from ntbench.adapters import ADAPTERS
    from ntbench.strategies import STRATEGIES, discover_strategies

    from ntbench.model.backbone import BACKBONES
    from ntbench.model.tasks import TASKS

    discover_strategies()
    groups = {"strategies": STRATEGIES, "adapters": ADAPTERS, "tasks": TASKS, "backbones": BACKBONES}
    import yaml

    suites, shipped = {}, suites_dir()
    for name, path in shipped_suites().items():  # the name `ntbench run NAME` takes: beta_grid, paper/adapters
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            data = {}
        suites[name] = str(data.get("description", "")).strip()
    if as_json:
        listing = {k: {e.name: e.description for e in reg} for k, reg in groups.items()}
        print(json.dumps({**listing, "suites": suites}, indent=2))
        return
    suite_table = Table(title=f"suites (ntbench run NAME; in {shipped})", title_justify="left")
    suite_table.add_column("name", style="bold")
    suite_table.add_column("description")
    for name, desc in suites.items():
        suite_table.add_row(name, desc)
    for title, reg in groups.items():
        table = Table(title=title, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for entry in reg:
            table.add_row(entry.name, entry.description)
        out.print(table)
    out.print(suite_table)


@app.command()
def cost(
    config: Optional[Path] = typer.Option(None, help="HF config.json (or folder) of the LLM; default: LLaMA-2-7B shape"),
    adapters: str = typer.Option("frozen,neural,lora,prefix,ia3,full", help="comma-separated adapter names"),
    batch: int = typer.Option(8, min=1), seq_len: int = typer.Option(384, min=1),
    paper: bool = typer.Option(False, "--paper", help="instead: inference TFLOPs at the paper's setting (LLaMA-2-7B + "
                                                       "CLIP ViT-L/14, batch 1) beside Table 2b/A.8's numbers"),
    text_tokens: int = typer.Option(32, min=1, help="with --paper: text tokens after the 257 image tokens"),
    out_csv: Optional[Path] = typer.Option(None, "--out", help="with --paper: write the table as CSV here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Trainable parameters and (T)FLOPs of a forward and a training step, on the meta device."""
    if paper:
        from ntbench.cost import paper_inference_costs, write_paper_table

        if out_csv is not None and out_csv.is_dir():
            _fail(f"--out {out_csv}: is a folder; give a .csv file path")
        rows = write_paper_table(str(out_csv), text_tokens) if out_csv else paper_inference_costs(text_tokens=text_tokens)
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        _print_table(f"inference TFLOPs, paper setting (257 image + {text_tokens} text tokens, batch 1)",
                     ("adapter", "TFLOPs", "TMACs", "paper TFLOPs"),
                     [(r["adapter"], f"{r['total_tflops']:.3f}", f"{r['total_tmacs']:.3f}",
                       "-" if r["paper_tflops"] is None else f"{r['paper_tflops']}") for r in rows])
        if out_csv:
            err.print(f"wrote {out_csv}")
        return
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
    _print_table(f"cost per adapter, batch {batch} x {seq_len} tokens",
                 ("adapter", "trainable params", "forward TFLOPs", "train step TFLOPs"),
                 [(r["adapter"], f"{r['trainable_params']:,}", f"{r['forward_flops'] / 1e12:.3f}",
                   f"{r['train_step_flops'] / 1e12:.3f}") for r in rows])


def _print_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A right-aligned rich table on stdout."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
