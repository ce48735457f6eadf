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
data_app = typer.Typer(help="Datasets: generate the micro world, convert MMUD/RefCOCO, statistics.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True, soft_wrap=True)  # error messages stay greppable, unwrapped


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"ntbench {version('ntbench')}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """ntbench: ablations and benchmarks for neural tuning of frozen large models."""


SUITE_HAD_FAILURES = 3  # `run` finished, but not every trial completed


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


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
    suites = {}
    for path in sorted(SUITES_DIR.rglob("*.yaml")):
        import yaml
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            data = {}
        suites[str(path.relative_to(SUITES_DIR.parent))] = str(data.get("description", "")).strip()
    if as_json:
        listing = {k: {e.name: e.description for e in reg} for k, reg in groups.items()}
        print(json.dumps({**listing, "suites": suites}, indent=2))
        return
    suite_table = Table(title="suites", title_justify="left")
    suite_table.add_column("file", style="bold")
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
        table.add_row(r["adapter"], f"{r['median_step_s']:.4f}", f"{r['q25_step_s']:.4f}-{r['q75_step_s']:.4f}",
                      f"{r['peak_memory_mb']:.0f}", *[str(r.get(c, "-")) for c in ratio_cols])
    out.print(table)


@bench_app.command("latency")
def bench_latency(
    backbone: str = typer.Option("random-7b", help="backbone preset (random-7b: LLaMA-2-7B + CLIP ViT-L/14 shapes)"),
    prompt_tokens: int = typer.Option(32, min=1), answer_tokens: int = typer.Option(8, min=1),
    repeats: int = typer.Option(10, min=1), dtype: str = typer.Option("bfloat16"),
    adapter: str = typer.Option("neural", help="adapter of the answering model (neural: Dz 128 on q,v)"),
    option: list[str] = typer.Option([], "--option", "-o", help="adapter option KEY=VALUE (repeatable)"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="also write the result as JSON"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """End-to-end latency of one reasoning-segmentation answer at batch 1, part by part."""
    from ntbench.bench.paper_scale import latency_benchmark

    with err.status("measuring latency") as status:
        options = _parse_options(option) if option else ({"dz": 128, "targets": "qv"} if adapter == "neural" else {})
        res = latency_benchmark(backbone, prompt_tokens, answer_tokens, repeats, dtype=dtype, adapter=adapter,
                                adapter_options=options, progress=lambda msg: status.update(f"latency: {msg}"))
    res["command"] = "ntbench " + " ".join(sys.argv[1:])
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(res, indent=2))
    if as_json:
        print(json.dumps(res, indent=2))
        return
    table = Table(title=f"{res['backbone']} {dtype} {adapter}, {res['image_tokens']} image + {prompt_tokens} prompt tokens, "
                        f"{answer_tokens} answer tokens", caption=f"{res['device_name']}, torch {res['torch']}")
    for col in ("part", "median (ms)", "min (ms)", "max (ms)"):
        table.add_column(col, justify="right")
    for r in res["rows"]:
        table.add_row(r["part"], f"{r['median_ms']:.2f}", f"{r['min_ms']:.2f}", f"{r['max_ms']:.2f}")
    out.print(table)


@bench_app.command("paper-trial")
def bench_paper_trial(
    suite: Path = typer.Argument(Path("suites/paper/adapters.yaml"), help="paper suite whose adapter axis to run"),
    backbone: str = typer.Option("random-7b"), steps: int = typer.Option(20, min=1),
    data: str = typer.Option("microworld:64", help="dataset folder or microworld:N"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for each trial's output and smoke.csv"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A few training steps of every adapter of a paper suite on random paper-scale weights (a smoke run)."""
    import pandas as pd

    from ntbench.bench.paper_scale import paper_trial_smoke

    with err.status("paper-scale smoke run") as status:
        rows = paper_trial_smoke(suite, backbone, steps, data, out=out_dir,
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
        _fail(str(exc))
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out {out_dir}: exists and is not a folder")
    with err.status("benchmarking a trial") as status:
        res = trial_benchmark(cfg, progress=lambda msg: status.update(f"bench trial: {msg}"))
    command = "ntbench " + " ".join(sys.argv[1:])
    lines = [f"# One trial's wall time: {adapter} on {backbone}, {res['steps']} steps", "",
             f"Made by: `{command}` ({res['machine']}).", "",
             f"Total **{res['total_s']:.1f} s**; median step {res['step_time_s'] * 1000:.0f} ms "
             f"+ batch building {res['data_time_s'] * 1000:.0f} ms.", "",
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


@data_app.command("make")
def data_make(
    out_dir: Path = typer.Option(..., "--out", help="new folder for the dataset"),
    seed: int = typer.Option(0), train: int = typer.Option(20000, min=0), val: int = typer.Option(500, min=0),
    test: int = typer.Option(500, min=0), size: int = typer.Option(64, min=16, help="image side in pixels"),
    workers: Optional[int] = typer.Option(None, min=1, help="processes (default: all cores)"),
) -> None:
    """Generate the micro world (deterministic by seed) in the open layout."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ntbench.data.microworld import MicroWorldConfig, generate

    cfg = MicroWorldConfig(seed=seed, train=train, val=val, test=test, size=size)
    start = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err) as progress:
        task = progress.add_task("generating", total=train + val + test)
        try:
            generate(out_dir, cfg, workers=workers, progress=lambda n: progress.advance(task, n))
        except FileExistsError as exc:
            _fail(f"--out: {exc}")
    elapsed = time.perf_counter() - start
    out.print(f"wrote {train + val + test} samples to {out_dir} in {elapsed:.1f} s "
              f"({(train + val + test) / max(elapsed, 1e-9):.0f} samples/s)")


@data_app.command("stats")
def data_stats(
    root: Path = typer.Argument(..., help="dataset folder (open layout)"),
    plot: Optional[Path] = typer.Option(None, help="PNG path (default: ROOT/stats.png)"),
) -> None:
    """Caption length, QA length and objects per sample (like the paper's Figure A.7)."""
    import pandas as pd

    from ntbench.data.io import read_meta
    from ntbench.data.schema import DataError
    from ntbench.data.stats import plot_statistics, split_statistics

    try:
        meta = read_meta(root)
        order = ["train", "val", "test"] + sorted(set(meta["counts"]) - {"train", "val", "test"})
        df = pd.concat([split_statistics(root, s) for s in order
                        if s in meta["counts"] and (root / s / "annotations.jsonl").is_file()])
    except DataError as exc:
        _fail(str(exc))
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
) -> None:
    """Convert an official release (MMUD, RefCOCO, RefCOCO+, RefCOCOg) into ntbench's open layout, once."""
    from ntbench.data.external import convert_mmud, convert_refer
    from ntbench.data.schema import DataError

    formats = ("mmud", "refcoco", "refcoco+", "refcocog")
    if fmt not in formats:
        _fail(f"unknown format {fmt!r}; allowed values: {', '.join(formats)}")
    if dst.exists() and any(dst.iterdir()):
        _fail(f"{dst} exists and is not empty; choose a new destination")
    try:
        if fmt == "mmud":
            counts = convert_mmud(src, dst, image_root.resolve(), trust_pickle=trust_pickle)
        else:
            counts = convert_refer(src, dst, fmt, split_by, image_root.resolve(), trust_pickle=trust_pickle)
    except DataError as exc:
        _fail(str(exc))
    out.print(f"wrote {dst}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@bench_app.command("data")
def bench_data(
    root: Path = typer.Argument(..., help="dataset folder"), split: str = typer.Option("train"),
    workers: int = typer.Option(2, min=0), batch: int = typer.Option(64, min=1),
    limit: int = typer.Option(0, min=0, help="stop after this many samples (0: whole split)"),
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
    out.print(f"{n} samples in {elapsed:.2f} s: {n / elapsed:.0f} samples/s "
              f"(batch {batch}, {workers} workers, including worker start-up)")


def _parse_options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; values parsed as YAML scalars (numbers, true/false, null, strings)."""
    import yaml

    opts = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--option {pair!r}: expected KEY=VALUE, e.g. --option beta=0.3")
        key, value = pair.split("=", 1)
        opts[key.strip()] = yaml.safe_load(value)
    return opts


def _parse_task_mix(tasks: str) -> dict[str, float]:
    """'referring,reasoning:2' -> {'referring': 1.0, 'reasoning': 2.0} (task names are checked by TrainConfig)."""
    ratios = {}
    for part in [t.strip() for t in tasks.split(",") if t.strip()]:
        name, _, ratio = part.partition(":")
        try:
            ratios[name] = float(ratio) if ratio else 1.0
        except ValueError:
            _fail(f"--tasks {part!r}: the ratio after ':' must be a number")
    return ratios


def _trial_fields(config: Optional[Path], sets: list[str]) -> dict:
    """A trial config file's fields with ``--set KEY=VALUE`` pairs (dotted keys, YAML values) on top."""
    import yaml

    from ntbench.suite import set_dotted

    fields: dict = {}
    if config is not None:
        if not config.is_file():
            _fail(f"--config {config}: not found")
        try:
            fields = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as exc:
            _fail(f"--config {config}: not valid YAML ({str(exc).splitlines()[0]})")
        if not isinstance(fields, dict):
            _fail(f"--config {config}: expected a mapping of TrialConfig fields")
    for pair in sets:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--set {pair!r}: expected KEY=VALUE with a dotted TrialConfig key, e.g. -s eval_split=test")
        try:
            set_dotted(fields, key.strip(), yaml.safe_load(value))
        except KeyError:
            _fail(f"--set {pair!r}: {key.strip()!r} goes through a field that is not a mapping")
    return fields


@app.command("train")
def train_cmd(
    backbone: str = typer.Option("tiny-random", help="preset (tiny-random) or HF id / local path of the LLM"),
    vision: Optional[str] = typer.Option(None, help="HF id / local path of the vision encoder"),
    adapter: str = typer.Option("neural", help="neural, lora, prefix, ia3, frozen or full"),
    tasks: Optional[str] = typer.Option(None, help="comma-separated; TASK:RATIO for weights (default: the "
                                        "backbone's recipe, else the four tasks equally)"),
    steps: Optional[int] = typer.Option(None, min=1, help="optimizer steps (default: the backbone's recipe, else 200)"),
    batch_size: Optional[int] = typer.Option(None, min=1, help="default: the backbone's recipe, else 8"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the backbone's recipe, else 1e-3)"),
    seed: int = typer.Option(0),
    data: Optional[Path] = typer.Option(None, help="dataset folder (default: the micro world, made if missing)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for metrics.json, adapter and heads"),
    option: list[str] = typer.Option([], "--option", "-o", help="adapter option KEY=VALUE (repeatable)"),
    eval_samples: Optional[int] = typer.Option(None, min=1, help="samples per task scored (default: the backbone's "
                                                "recipe, else 32)"), meteor: bool = typer.Option(False, help="compute METEOR (Java)"),
    device: str = typer.Option("auto"), as_json: bool = typer.Option(False, "--json"),
    pixel_refiner: bool = typer.Option(False, help="token-conditioned pixel CNN in the mask decoder (slower)"),
    lambda_bce: Optional[float] = typer.Option(None, min=0.0, help="weight of a per-pixel BCE term added to the "
                                               "Dice loss (default: the backbone's recipe, else 0)"),
    whiten_state: bool = typer.Option(True, help="whiten the <OBJ-i> state before the mask decoder"),
    deterministic: bool = typer.Option(True, help="deterministic kernels: the same seed and thread count give "
                                                  "identical numbers"),
    config: Optional[Path] = typer.Option(None, "--config", help="a trial config YAML (any TrialConfig field); "
                                          "its fields and --set pairs take precedence over the flags"),
    sets: list[str] = typer.Option([], "--set", "-s", help="any TrialConfig field by dotted key, KEY=VALUE "
                                   "(repeatable), e.g. -s eval_split=test -s train.warmup=50"),
) -> None:
    """Train and evaluate one configuration end to end; writes OUT/metrics.json.

    Unset budget flags come from the backbone's recipe (ntbench.train.recipes: the micro backbone's
    validated configuration), so `ntbench train --backbone micro` trains what the evidence trains."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ntbench.adapters import AdapterError
    from ntbench.data.schema import DataError
    from ntbench.model.backbone import BackboneError
    from ntbench.registry import UnknownNameError
    from ntbench.train.trial import TrialConfig, run_trial

    given = lambda **kw: {k: v for k, v in kw.items() if v is not None}  # noqa: E731  (unset: recipe decides)
    train_opts = given(steps=steps, batch_size=batch_size, lr=lr, tasks=_parse_task_mix(tasks) if tasks else None)
    fields = _trial_fields(config, sets)
    if not isinstance(fields.get("train", {}), dict):
        _fail(f"train = {fields['train']!r}: must be a mapping of TrainConfig fields, e.g. -s train.steps=100")
    try:
        cfg = TrialConfig(**{**dict(backbone=backbone, vision=vision, adapter=adapter,
                                    adapter_options=_parse_options(option), data=str(data) if data else None,
                                    meteor=meteor, pixel_refiner=pixel_refiner, whiten_state=whiten_state,
                                    **given(eval_samples=eval_samples, lambda_bce=lambda_bce)),
                             **{k: v for k, v in fields.items() if k != "train"},
                             "train": {**train_opts, "seed": seed, "device": device, "deterministic": deterministic,
                                       **fields.get("train", {})}})
    except (ValidationError, UnknownNameError) as exc:
        _fail(str(exc))
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task(f"{adapter} on {backbone}", total=cfg.train.steps, loss="-")
        try:
            summary = run_trial(cfg, out_dir, progress=lambda s, rec: bar.update(task, completed=s,
                                                                                  loss=f"{rec['loss']:.3f}"))
        except (AdapterError, UnknownNameError, BackboneError, DataError) as exc:
            _fail(str(exc))
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    table = Table(title=f"{adapter} on {backbone}: {summary['train']['steps_run']} steps, "
                        f"{summary['train']['step_time_s'] * 1000:.0f} ms/step, "
                        f"{summary['trainable_params']:,} trainable params")
    table.add_column("task")
    table.add_column("metrics")
    for name, m in summary["metrics"].items():
        if name == "activation_frequency":
            continue
        keys = [k for k in ("tf_paper_oIoU", "tf_paper_mIoU", "tf_lisa_gIoU", "tf_lisa_cIoU", "gen_paper_oIoU",
                            "BLEU-4", "CIDEr", "ROUGE-L", "METEOR", "FID", "KID", "embedding_cosine") if k in m]
        table.add_row(name, "  ".join(f"{k}={m[k]:.3f}" if isinstance(m[k], float) else f"{k}={m[k]}" for k in keys))
    out.print(table)
    if out_dir:
        out.print(f"wrote {out_dir / 'metrics.json'}")


@app.command()
def prepare(
    backbone: str = typer.Option("micro", help="the backbone to prepare (only 'micro' needs preparing)"),
    seed: int = typer.Option(0),
    record: Optional[Path] = typer.Option(None, help="also write the manifest (sizes, parameters, losses) to DIR"),
) -> None:
    """Generate the micro world if missing and pretrain the micro backbone (cached; a second run returns at once)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ntbench.micro import ensure_micro

    if backbone != "micro":
        _fail(f"--backbone {backbone!r}: nothing to prepare; allowed values: micro")
    start = time.perf_counter()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=err) as bar:
        tasks: dict[str, int] = {}

        def tick(stage: str, step: int, total: int, loss: float) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, loss="-")
            bar.update(tasks[stage], completed=step, loss=f"{loss:.3f}")
        folder, built = ensure_micro(seed, progress=tick)
    verb = "prepared" if built else "found cached"
    out.print(f"{verb} micro backbone at {folder} ({time.perf_counter() - start:.1f} s)")
    if record:
        from ntbench.micro import record_manifest
        out.print(f"recorded {record_manifest(folder, record)}")


SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"


def _load_suites(paths: list[Path]):
    from ntbench.suite import SuiteError, load_suite

    suites, failed = [], False
    for path in paths:
        try:
            suites.append(load_suite(path))
        except SuiteError as exc:
            failed = True
            err.print(f"[bold red]invalid suite[/] {exc}")
    if failed:
        raise typer.Exit(2)
    return suites


@app.command()
def validate(paths: list[Path] = typer.Argument(..., help="suite YAML files")) -> None:
    """Check suite files (every cell as a full trial config); exit 2 listing every error."""
    for suite in _load_suites(paths):
        from ntbench.suite import grid_cells
        n = len(grid_cells(suite)) if suite.sampler.type == "grid" else suite.sampler.n_trials
        out.print(f"[green]ok[/] {suite.name}: {n} trials ({suite.sampler.type}), objective {suite.objective}")


def _run_suite_with_bars(suite, results: Path, storage: Optional[str], workers: int, recover: bool = False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ntbench.runner import run_suite

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err) as bar:
        suite_bar = bar.add_task(f"suite {suite.name}", total=None, info="")
        trial_bar = bar.add_task("trial", total=None, info="", visible=workers <= 1)

        def on_total(n: int) -> None:
            bar.update(suite_bar, total=n, info="nothing to run" if n == 0 else "")

        def on_trial() -> None:
            bar.advance(suite_bar)
            bar.reset(trial_bar)

        def step(s: int, rec: dict) -> None:
            bar.update(trial_bar, completed=s, info=f"loss {rec['loss']:.3f}")
        return run_suite(suite, results, storage, workers, progress=step, on_trial=on_trial, on_total=on_total,
                         recover_running=recover)


def _summary_table(suite, df) -> None:
    from ntbench.report import suite_table

    if df.empty or suite.objective not in df.columns or df[suite.objective].dropna().empty:
        out.print(f"{suite.name}: no completed trials with {suite.objective}")
        return
    _, table = suite_table(suite, df, suite.objective)
    t = Table(title=f"{suite.name}: {suite.objective} (mean ± 95% CI; ★ best, ≈ difference to the best not distinguishable from 0)")
    t.add_column(str(table.index.name or ""))
    for c in table.columns:
        t.add_column(str(c))
    for idx, r in table.iterrows():
        t.add_row(str(idx), *[str(v) for v in r.values])
    out.print(t)


@app.command()
def run(
    path: Path = typer.Argument(..., help="suite YAML, e.g. suites/beta_grid.yaml"),
    results: Path = typer.Option(Path("runs"), help="results root; the suite writes RESULTS/<name>/ (the committed "
                                 "reference results live in results/)"),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (postgresql://...) shared by workers"),
    workers: int = typer.Option(1, min=1, help="parallel worker processes on this machine"),
    recover_running: bool = typer.Option(
        False, "--recover-running",
        help="also rerun RUNNING trials no heartbeat vouches for (left on a server by an ntbench "
             "without heartbeats); only when no other worker lives. A dead worker's trials are "
             "rerun without it"),
    as_json: bool = typer.Option(False, "--json", help="print the trial rows as JSON"),
) -> None:
    """Run a suite (resumable: only missing cells run) and write results/<suite>/trials.csv.

    Exit codes: 0 every cell complete; 2 a usage or validation error (nothing run); 3 the suite
    finished but some trials failed (their reasons are in trials.csv and the report); 1 a crash."""
    (suite,) = _load_suites([path])
    df = _run_suite_with_bars(suite, results, storage, workers, recover_running)
    failed = int((df.status == "FAIL").sum()) if len(df) else 0
    if as_json:
        print(df.to_json(orient="records"))
    else:
        _summary_table(suite, df)
        out.print(f"{len(df)} trials in {results / suite.name / 'trials.csv'}" + (f", {failed} failed" if failed else ""))
    if failed:
        err.print(f"[bold red]{failed} trial(s) failed[/]: see fail_reason in {results / suite.name / 'trials.csv'}")
        raise typer.Exit(SUITE_HAD_FAILURES)


@app.command()
def report(results: Path = typer.Option(Path("runs"), help="results root (results/ for the committed ones)")) -> None:
    """Tables (CSV + markdown) and plots for every suite under RESULTS, plus RESULTS/README.md."""
    from ntbench.report import report_suite, write_index

    folders = sorted(p.parent for p in results.glob("*/suite.resolved.yaml") if (p.parent / "trials.csv").is_file())
    if not folders:
        _fail(f"no results/<suite>/trials.csv under {results}; run a suite first")
    for folder in folders:
        made = report_suite(folder)
        out.print(f"{folder.name}: {len(made['tables'])} tables, {len(made['plots'])} plots -> {folder / 'report.md'}")
    out.print(f"index: {write_index(results)}")


@app.command()
def compare(
    adapters: list[str] = typer.Argument(..., help="adapter names, e.g. lora neural"),
    backbone: str = typer.Option("micro"),
    steps: Optional[int] = typer.Option(None, min=1, help="default: the backbone's recipe, else 200"),
    seeds: str = typer.Option("0,1,2", help="comma-separated seeds"),
    tasks: Optional[str] = typer.Option(None, help="comma-separated, equal weights (default: the recipe's mix)"),
    results: Path = typer.Option(Path("runs"), help="results root"), workers: int = typer.Option(1, min=1),
    data: Optional[str] = typer.Option(None, help="dataset folder or microworld:N (default: the micro world)"),
    eval_samples: Optional[int] = typer.Option(None, min=1, help="default: the recipe's, else 32"),
    csv: Optional[Path] = typer.Option(None, help="CSV of the side-by-side table (default: RESULTS/compare-.../compare.csv)"),
) -> None:
    """The same backbone, data, budget and seeds for each adapter, side by side."""
    from ntbench.compare import compare_suite, side_by_side

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        _fail(f"--seeds {seeds!r}: expected comma-separated integers")
    from ntbench.suite import SuiteError
    try:
        suite = compare_suite(adapters, backbone, steps, seed_list,
                              [t for t in tasks.split(",") if t] if tasks else None, data=data, eval_samples=eval_samples)
    except SuiteError as exc:
        _fail(str(exc))
    df = _run_suite_with_bars(suite, results, None, workers)
    table = side_by_side(df)
    path = csv or results / suite.name / "compare.csv"
    table.to_csv(path)
    from ntbench.suite import trial_config
    n_steps = trial_config(suite, {}).train.steps
    t = Table(title=f"{' vs '.join(adapters)} on {backbone}, {n_steps} steps, seeds {seed_list} (mean ± std)")
    t.add_column("metric")
    for c in table.columns:
        t.add_column(str(c), justify="right")
    for idx, r in table.iterrows():
        t.add_row(str(idx), *[str(v) for v in r.values])
    out.print(t)
    out.print(f"wrote {path}")


@app.command()
def evidence(
    seeds: str = typer.Option("0,1,2", help="comma-separated seeds"),
    steps: Optional[int] = typer.Option(None, min=1, help="default: the micro recipe (ntbench.train.recipes)"),
    eval_samples: Optional[int] = typer.Option(None, min=1, help="val samples scored per task (default: the recipe's "
                                               "500, all of the micro world's val split; at 64 the eval set alone "
                                               "moves oIoU by about 0.04)"),
    out_dir: Path = typer.Option(Path("runs/evidence"), "--out"),
    tasks: str = typer.Option("", help="task mix as for `ntbench train`, e.g. referring:2,reasoning:2,captioning,t2i "
                                       "(default: the recipe's)"),
    lr: Optional[float] = typer.Option(None, min=1e-8, help="peak learning rate (default: the recipe's)"),
    lambda_bce: Optional[float] = typer.Option(None, min=0.0, help="weight of the per-pixel BCE term added to Dice "
                                               "(default: the recipe's)"),
) -> None:
    """Neural vs frozen vs trivial masks over seeds on the micro backbone (is the default meaningful?)."""
    import shlex

    from ntbench.evidence import run_evidence, write_summary

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        _fail(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2")
    mix = None
    if tasks.strip():
        from pydantic import ValidationError

        from ntbench.registry import UnknownNameError
        from ntbench.train.trainer import TrainConfig
        try:
            mix = TrainConfig(tasks=_parse_task_mix(tasks)).tasks  # unknown names: "did you mean", before training
        except (ValidationError, UnknownNameError) as exc:
            _fail(str(exc))
    with err.status("running evidence trials") as status:
        df = run_evidence(seed_list, steps, out_dir, eval_samples=eval_samples, tasks=mix,
                          lr=lr, lambda_bce=lambda_bce,
                          progress=lambda msg: status.update(f"evidence: {msg}"))
    command = "ntbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out.print(write_summary(df, out_dir, command))


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])


if __name__ == "__main__":  # python -m ntbench.cli
    app()
