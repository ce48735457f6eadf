"""`ntbench bench ...`: step, latency, paper-trial, trial and data-loading benchmarks."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ntbench.cli.apps import bench_app
from ntbench.cli.ui import _fail, _fail_invalid, _parse_options, err, out, print_json, resolve_suite


@bench_app.command("step")
def bench_step(
    shape: str = typer.Option("tiny", help="LLM shape: tiny, llama-1b-8l or llama-2-7b (random weights)"),
    arms: str = typer.Option("frozen,lora,neural", help="comma-separated: frozen, lora, prefix, ia3, neural, "
                                                        "neural-soft"),
    compiled: str = typer.Option("", "--compile", help="arms also measured under torch.compile (comma-separated)"),
    rounds: int = typer.Option(5, min=1), steps: int = typer.Option(5, min=1, help="steps per round"),
    warmup: int = typer.Option(3, min=0, help="untimed steps per arm first"),
    hidden: Optional[int] = typer.Option(None, help="override the shape's hidden size"),
    layers: Optional[int] = typer.Option(None, help="override the shape's layer count"),
    vocab: Optional[int] = typer.Option(None, help="override the shape's vocabulary"),
    batch: int = typer.Option(16), seq_len: int = typer.Option(128),
    device: str = typer.Option("cpu"), dtype: str = typer.Option("float32", help="float32 or bfloat16"),
    csv: Optional[Path] = typer.Option(None, help="also write the rows as CSV"),
    profile: str = typer.Option("", help="arms to profile afterwards (torch.profiler tables, written next to --csv)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Training-step time of adapters on one shared random model, interleaved: median, spread, memory, ratios."""
    import pandas as pd

    from ntbench.bench import StepBenchConfig, profile_step, step_benchmark

    split = lambda text: tuple(a for a in text.split(",") if a)  # noqa: E731
    cfg = StepBenchConfig(shape=shape, hidden=hidden, layers=layers, vocab=vocab, batch=batch, seq_len=seq_len,
                          rounds=rounds, steps_per_round=steps, warmup=warmup, device=device, dtype=dtype,
                          arms=split(arms), compiled=split(compiled))
    try:
        with err.status("benchmarking") as status:
            rows = step_benchmark(cfg, progress=lambda msg: status.update(f"benchmarking: {msg}"))
            command = "ntbench " + " ".join(sys.argv[1:])
            for row in rows:
                row["command"] = command
            if csv:
                csv.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(csv, index=False)
            for arm in split(profile):
                status.update(f"profiling {arm}")
                text = profile_step(cfg, arm)
                if csv:
                    (csv.parent / f"{csv.stem}_profile_{arm}.txt").write_text(text)
                else:
                    err.print(text)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=rows[0]["shape"], caption=f"{rows[0]['device_name']}; {rows[0]['machine']}")
    ratio_cols = [f"ratio_vs_{a}" for a in ("frozen", "lora") if any(f"ratio_vs_{a}" in r for r in rows)]
    for col in ["adapter", "median step (s)", "IQR (s)", "peak MB", *ratio_cols]:
        table.add_column(col, justify="right")
    for r in rows:
        if "error" in r:
            continue
        table.add_row(r["adapter"], f"{r['median_step_s']:.4f}", f"{r['q25_step_s']:.4f}-{r['q75_step_s']:.4f}",
                      f"{r['peak_memory_mb']:.0f}", *[str(r.get(c, "-")) for c in ratio_cols])
    out.print(table)
    for r in rows:
        if "error" in r:
            err.print(f"[red]arm {r['adapter']} failed:[/red] {r['error']}")


@bench_app.command("latency")
def bench_latency(
    backbone: str = typer.Option("random-7b", help="backbone preset (random-7b: LLaMA-2-7B + CLIP ViT-L/14 shapes)"),
    prompt_tokens: int = typer.Option(32, min=1), answer_tokens: int = typer.Option(8, min=1),
    repeats: int = typer.Option(10, min=1), dtype: str = typer.Option("bfloat16"),
    adapter: str = typer.Option("neural", help="adapter of the answering model (neural: Dz 128 on q,v)"),
    option: list[str] = typer.Option([], "--option", "-o", help="adapter option KEY=VALUE (repeatable)"),
    mode: str = typer.Option("eager", help="eager: Hugging Face's dynamic KV cache; static: a static cache; "
                                           "graphs: the static parts replayed from CUDA graphs (CUDA only)"),
    compile_decode: bool = typer.Option(False, "--compile-decode", help="static modes: torch.compile the decode "
                                                                        "step (fused kernels) before recording"),
    compile_prefill: bool = typer.Option(False, "--compile-prefill", help="static modes: torch.compile the "
                                                                          "prefill too"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="also write the result as JSON"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """End-to-end latency of one reasoning-segmentation answer at batch 1, part by part."""
    from ntbench.bench.paper_scale import LATENCY_MODES, latency_benchmark

    if mode not in LATENCY_MODES:
        _fail(f"--mode {mode!r} is not one of {', '.join(LATENCY_MODES)}")
    if (compile_decode or compile_prefill) and mode == "eager":
        _fail("--compile-decode and --compile-prefill need a static cache: --mode static or --mode graphs")
    if mode == "graphs" and not torch_cuda_available():
        _fail("--mode graphs replays CUDA graphs and needs a CUDA device; --mode static runs the same code eagerly")
    with err.status("measuring latency") as status:
        options = _parse_options(option) if option else ({"dz": 128, "targets": "qv"} if adapter == "neural" else {})
        res = latency_benchmark(backbone, prompt_tokens, answer_tokens, repeats, dtype=dtype, adapter=adapter,
                                adapter_options=options, mode=mode, compile_decode=compile_decode,
                                compile_prefill=compile_prefill,
                                progress=lambda msg: status.update(f"latency: {msg}"))
    res["command"] = "ntbench " + " ".join(sys.argv[1:])
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(res, indent=2))
    if as_json:
        print(json.dumps(res, indent=2))
        return
    match = "" if "tokens_match_eager" not in res else f"; answer tokens equal the eager path's: {res['tokens_match_eager']}"
    table = Table(title=f"{res['backbone']} {dtype} {adapter} ({mode}), {res['image_tokens']} image + {prompt_tokens} "
                        f"prompt tokens, {answer_tokens} answer tokens",
                  caption=f"{res['device_name']}, torch {res['torch']}{match}")
    for col in ("part", "median (ms)", "min (ms)", "max (ms)"):
        table.add_column(col, justify="right")
    for r in res["rows"]:
        table.add_row(r["part"], f"{r['median_ms']:.2f}", f"{r['min_ms']:.2f}", f"{r['max_ms']:.2f}")
    out.print(table)


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@bench_app.command("paper-trial")
def bench_paper_trial(
    suite: Path = typer.Argument(Path("paper/adapters"), help="paper suite (file or shipped name) whose adapter "
                                                               "axis to run"),
    backbone: str = typer.Option("random-7b"), steps: int = typer.Option(20, min=1),
    data: str = typer.Option("microworld:64", help="dataset folder or microworld:N"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for each trial's output and smoke.csv"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A few training steps of every adapter of a paper suite on random paper-scale weights (a smoke run)."""
    import pandas as pd

    from ntbench.bench.paper_scale import paper_trial_smoke

    with err.status("paper-scale smoke run") as status:
        rows = paper_trial_smoke(resolve_suite(suite), backbone, steps, data, out=out_dir,
                                 progress=lambda msg: status.update(f"paper-trial: {msg}"))
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).assign(command="ntbench " + " ".join(sys.argv[1:])).to_csv(out_dir / "smoke.csv", index=False)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        out.print(pd.DataFrame(rows).to_string(index=False))
    if not all(r["ok"] for r in rows):
        raise typer.Exit(1)


@bench_app.command("trial")
def bench_trial(
    backbone: str = typer.Option("micro", help="backbone preset or path"),
    adapter: str = typer.Option("neural"),
    option: list[str] = typer.Option([], "--option", "-o", help="adapter option KEY=VALUE (repeatable)"),
    steps: Optional[int] = typer.Option(None, min=1, help="default: the backbone's recipe (a default trial)"),
    generated: bool = typer.Option(True, help="also score generated answers (as a default trial does)"),
    seed: int = typer.Option(0),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="also write bench_trial.json and bench_trial.md here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Wall time of one default trial (train + evaluate) and where it goes, phase by phase."""
    from pydantic import ValidationError

    from ntbench.bench import trial_benchmark
    from ntbench.registry import UnknownNameError
    from ntbench.train.trial import TrialConfig

    try:
        cfg = TrialConfig(backbone=backbone, adapter=adapter, adapter_options=_parse_options(option),
                          eval_generated=generated, train={"seed": seed, **({"steps": steps} if steps else {})})
    except (ValidationError, UnknownNameError) as exc:
        _fail_invalid(exc)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out {out_dir}: exists and is not a folder")
    with err.status("benchmarking a trial") as status:
        res = trial_benchmark(cfg, progress=lambda msg: status.update(f"bench trial: {msg}"))
    command = "ntbench " + " ".join(sys.argv[1:])
    lines = [f"# One trial's wall time: {adapter} on {backbone}, {res['steps']} steps", "",
             f"Made by: `{command}` ({res['machine']}).", "",
             f"Total **{res['total_s']:.1f} s**; median step {res['step_time_s'] * 1000:.0f} ms "
             f"+ {'batch building' if not res.get('prefetch') else 'waiting for batches built ahead'} "
             f"{res['data_time_s'] * 1000:.0f} ms.", "",
             "| phase | part | seconds | share |", "|---|---|---|---|"]
    lines += [f"| {r['phase']} | {r['part']} | {r['seconds']:.1f} | {100 * r['share']:.0f}% |" for r in res["rows"]]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "bench_trial.json").write_text(json.dumps({**res, "command": command}, indent=2, default=str))
        (out_dir / "bench_trial.md").write_text("\n".join(lines) + "\n")
    if as_json:
        print(json.dumps(res, indent=2, default=str))
        return
    table = Table(title=f"{adapter} on {backbone}: {res['total_s']:.1f} s for {res['steps']} steps + evaluation",
                  caption=res["machine"])
    for col in ("phase", "part", "seconds", "share"):
        table.add_column(col, justify="right" if col in ("seconds", "share") else "left")
    for r in res["rows"]:
        table.add_row(r["phase"], r["part"], f"{r['seconds']:.1f}", f"{100 * r['share']:.0f}%")
    out.print(table)



@bench_app.command("data")
def bench_data(
    root: Path = typer.Argument(..., help="dataset folder"), split: str = typer.Option("train"),
    workers: int = typer.Option(2, min=0), batch: int = typer.Option(64, min=1),
    limit: int = typer.Option(0, min=0, help="stop after this many samples (0: whole split)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """DataLoader throughput (samples/s) over a dataset in the open layout."""
    import time

    import torch

    from ntbench.data.io import SampleDataset, collate_samples

    ds = SampleDataset(root, split)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate_samples)
    n, start = 0, time.perf_counter()
    for b in loader:
        n += len(b["id"])
        if limit and n >= limit:
            break
    elapsed = time.perf_counter() - start
    if as_json:
        print_json({"root": str(root), "split": split, "samples": n, "seconds": elapsed,
                    "samples_per_s": n / elapsed, "batch": batch, "workers": workers})
        return
    out.print(f"{n} samples in {elapsed:.2f} s: {n / elapsed:.0f} samples/s "
              f"(batch {batch}, {workers} workers, including worker start-up)")
