"""`ntbench train`, `ntbench eval` and `ntbench prepare`: one trial, a saved run, the micro backbone."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ntbench.cli.apps import app
from ntbench.cli.ui import (_fail, _fail_invalid, _parse_options, _parse_task_mix, _trial_fields, check_out_file,
                            check_out_folder, err, make_data_with_bar, out, print_json, progress_bar)


@app.command("train")
def train_cmd(
    backbone: str = typer.Option("tiny-random", help="preset (tiny-random) or HF id / local path of the LLM"),
    vision: Optional[str] = typer.Option(None, help="HF id / local path of the vision encoder"),
    adapter: str = typer.Option("neural", help="neural, lora, prefix, ia3, frozen or full"),
    tasks: Optional[str] = typer.Option(None, help="comma-separated; TASK:RATIO for weights (default: the "
                                        "backbone's recipe, else the four tasks equally)"),
    steps: Optional[int] = typer.Option(None, min=1, help="optimizer steps (default: the backbone's recipe, else 200)"),
    batch_size: Optional[int] = typer.Option(None, min=1, help="default: the backbone's recipe, else 8"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the backbone's recipe for the adapter, else 1e-3)"),
    seed: int = typer.Option(0),
    data: Optional[Path] = typer.Option(None, help="dataset folder (default: the micro world, made if missing)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="folder for metrics.json, adapter and heads"),
    option: list[str] = typer.Option([], "--option", "-o", help="adapter option KEY=VALUE (repeatable)"),
    eval_samples: Optional[int] = typer.Option(None, min=1, help="samples per task scored (default: the backbone's "
                                                "recipe, else 32)"), meteor: bool = typer.Option(False, help="compute METEOR (Java)"),
    device: str = typer.Option("auto", help="auto (a GPU if one is visible), cpu, cuda or cuda:N"),
    as_json: bool = typer.Option(False, "--json", help="print the trial's summary (metrics.json) as JSON"),
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
        _fail_invalid(exc)
    check_out_folder("--out", out_dir)  # found now, not after the training
    from ntbench.train.trainer import DeviceError, resolve_device
    try:
        resolve_device(cfg.train.device)
    except DeviceError as exc:
        _fail(f"--device: {exc}")
    with progress_bar("loss {task.fields[loss]}") as bar:
        make_data_with_bar(bar, loss="")(cfg.data)  # the default world is made once, on its own bar
        task = bar.add_task(f"{adapter} on {backbone}", total=cfg.train.steps, loss="-")
        try:
            summary = run_trial(cfg, out_dir, progress=lambda s, rec: bar.update(task, completed=s,
                                                                                  loss=f"{rec['loss']:.3f}"))
        except (AdapterError, UnknownNameError, BackboneError, DataError, FileNotFoundError) as exc:
            bar.stop()  # in a log, the bar's last state would follow the error as if work went on
            _fail(str(exc))
        except FloatingPointError as exc:  # a diverged run: say where, not a traceback
            bar.stop()
            err.print(f"[red]training diverged:[/red] {exc} (try a lower --lr)")
            raise typer.Exit(1)
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


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="a trial's output folder (ntbench train --out)"),
    split: Optional[str] = typer.Option(None, help="default: the trial's eval_split"),
    generated: Optional[bool] = typer.Option(None, "--generated/--no-generated",
                                             help="also score generated answers (default: as the trial did)"),
    samples: Optional[int] = typer.Option(None, min=1, help="samples per task (default: the trial's eval_samples)"),
    device: Optional[str] = typer.Option(None, help="default: the trial's train.device"),
    as_json: bool = typer.Option(False, "--json", help="print the whole result as JSON"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="also write the result as JSON to FILE"),
) -> None:
    """Reload a saved trial and evaluate it with the trial's own settings unless overridden; with none
    overridden it reproduces the trial's metrics.json (and says whether it did)."""
    from ntbench.atomic import write_json
    from ntbench.data.schema import DataError
    from ntbench.model.backbone import BackboneError
    from ntbench.train.trial import RunFolderError, evaluate_run

    check_out_file("--out", out_file)
    try:
        result = evaluate_run(run_dir, split=split, generated=generated, samples=samples, device=device)
    except (RunFolderError, BackboneError, DataError, FileNotFoundError) as exc:
        _fail(str(exc))
    if out_file:
        write_json(out_file, result)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    same = result["reproduces_trial"] is not None
    settings = result["evaluation"]
    out.print(f"{run_dir}: {settings['split']} split, {settings['samples']} samples per task, "
              f"eval seed {settings['seed']}")  # a table title would wrap at the table's width
    table = Table()
    for column in ("task", "metric", "value") + (("trial",) if same else ()):
        table.add_column(column)
    show = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    for task, metrics in result["metrics"].items():
        if task == "activation_frequency":
            continue
        for key, value in metrics.items():
            if key != "examples":
                table.add_row(task, key, show(value), *([show(result["trial_metrics"][task].get(key))] if same else []))
    out.print(table)
    if same:
        out.print("identical to the trial's metrics.json" if result["reproduces_trial"] else
                  "[bold yellow]differs from the trial's metrics.json[/] (another machine, thread count or version?)")
    if out_file:
        out.print(f"wrote {out_file}")


@app.command("breakdown")
def breakdown_cmd(
    run_dir: Path = typer.Argument(..., help="a trial's output folder (ntbench train --out)"),
    task: str = typer.Option("reasoning", help="a segmentation task the trial scored: reasoning or referring"),
    generated: bool = typer.Option(False, "--generated/--no-generated",
                                   help="also generate each answer and count the right ones per template"),
    device: Optional[str] = typer.Option(None, help="default: the trial's train.device"),
    as_json: bool = typer.Option(False, "--json", help="print the whole result as JSON"),
) -> None:
    """A saved trial's teacher-forced oIoU by question template and by the number of objects an answer tags,
    on the trial's own evaluation samples: which questions a model gets right, and which targets no model can
    know (about 30 s a task on the micro backbone)."""
    from ntbench.breakdown import breakdown_run
    from ntbench.data.schema import DataError
    from ntbench.model.backbone import BackboneError
    from ntbench.train.trial import RunFolderError

    try:
        result = breakdown_run(run_dir, task=task, generated=generated, device=device)
    except (RunFolderError, BackboneError, DataError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    gap = result["tf_oIoU"] - result["trial_tf_oIoU"]
    same = "identical to" if gap == 0 else "within 1e-9 of" if abs(gap) <= 1e-9 else \
        f"[bold yellow]differs ({gap:+.2e}) from[/]"  # another thread count or device sums in another order
    out.print(f"{run_dir}: {result['task']}, {result['samples']} samples; all templates: tf oIoU "
              f"{result['tf_oIoU']:.4f}, {same} the trial's {result['trial_tf_oIoU']:.4f}")
    table = Table()
    columns = ["template", "samples", "masks", "tf oIoU"] + (["answer accuracy"] if generated else [])
    for column in columns:
        table.add_column(column)
    for row in result["templates"]:
        table.add_row(row["template"], str(row["samples"]), str(row["masks"]), f"{row['tf_oIoU']:.4f}",
                      *([f"{row['answer_accuracy']:.3f}"] if generated else []))
    out.print(table)
    table = Table()
    for column in ("template", "objects tagged", "masks", "tf oIoU", "mask nearest its own target", "by chance"):
        table.add_column(column)
    for row in result["by_objects"]:
        own = "-" if row["own_target_best"] is None else str(row["own_target_best"])
        chance = "-" if row["chance"] is None else f"{row['chance']:.1f}"
        table.add_row(row["template"], str(row["objects"]), str(row["masks"]), f"{row['tf_oIoU']:.4f}", own, chance)
    out.print(table)


@app.command("eval-noise")
def eval_noise_cmd(
    run_a: Path = typer.Argument(..., help="a trial's output folder (ntbench train --out)"),
    run_b: Path = typer.Argument(..., help="another, e.g. the same seed with the other setting of a pair"),
    task: Optional[list[str]] = typer.Option(None, help="reasoning and/or referring (repeatable; default: both "
                                                        "that both trials scored)"),
    data: Optional[Path] = typer.Option(None, help="another dataset folder to score both on (default: the trials')"),
    split: Optional[str] = typer.Option(None, help="default: the trials' eval_split"),
    samples: Optional[int] = typer.Option(None, min=2, help="samples per task (default: the trials' eval_samples)"),
    resamples: int = typer.Option(4000, min=100, help="bootstrap resamples"),
    device: Optional[str] = typer.Option(None, help="default: each trial's train.device"),
    per_sample: Optional[Path] = typer.Option(None, "--per-sample", help="also write each sample's intersections "
                                              "and unions to this CSV (.csv.gz: compressed)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (without the per-sample values)"),
) -> None:
    """How much the evaluation set alone moves the difference between two saved trials: both score the same
    samples (teacher-forced), and the samples are resampled with replacement, the same draw for both. Compare
    its sd with the seed-to-seed sd of the difference in the suite's report: where the evaluation set's share is
    large, a larger one buys resolution more cheaply than seeds (sd falls as 1/sqrt(samples))."""
    from ntbench.data.schema import DataError
    from ntbench.eval_noise import SEGMENTATION, eval_noise_runs, write_per_sample
    from ntbench.model.backbone import BackboneError
    from ntbench.train.trial import RunFolderError

    unknown = sorted(set(task or ()) - set(SEGMENTATION))
    if unknown:
        _fail(f"--task {', '.join(unknown)}: not a segmentation task; allowed: {', '.join(SEGMENTATION)}")
    if per_sample is not None:
        check_out_file("--per-sample", per_sample)
    try:
        result = eval_noise_runs(run_a, run_b, tuple(task or SEGMENTATION), data, split, samples, resamples, device,
                                 explicit=bool(task))
    except (RunFolderError, BackboneError, DataError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if per_sample is not None:
        err.print(f"wrote {write_per_sample(result, per_sample)}")
    result.pop("per_sample")
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    out.print(f"A = {run_a}\nB = {run_b}\n{result['data']} ({result['split']}), teacher-forced; {resamples} "
              "resamples of the samples, the same for both")
    table = Table()
    for column in ("task", "samples", "oIoU A", "oIoU B", "A - B", "sd (samples)", "95% of resamples"):
        table.add_column(column)
    for name, row in result["tasks"].items():
        table.add_row(name, str(row["samples"]), f"{row['oIoU_a']:.4f}", f"{row['oIoU_b']:.4f}",
                      f"{row['delta']:+.4f}", f"{row['sd']:.4f}", f"[{row['low']:+.4f}, {row['high']:+.4f}]")
    out.print(table)
    for name, row in result["tasks"].items():
        for side in ("a", "b"):  # another thread count or device sums in another order
            if f"trial_{side}" in row:
                same = row[f"trial_{side}"] == row[f"oIoU_{side}"]
                out.print(f"{name}: trial {side.upper()}'s own number {row[f'trial_{side}']:.4f}, " + (
                    "identical" if same else "[bold yellow]not identical (another thread count or device?)[/]"))
    out.print("The sd is what another evaluation set of this size would move A - B by; it shrinks as "
              "1/sqrt(samples)." + (" Its share of a suite's seed-to-seed variance of the difference (scored on "
              f"these {result['samples']} samples) is about the mean of sd^2 over several seeds' pairs divided by "
              "sd(delta)^2; pairing by seed does not remove it." if result["own_samples"] else ""))


@app.command()
def prepare(
    backbone: str = typer.Option("micro", help="the backbone to prepare (only 'micro' needs preparing)"),
    seed: int = typer.Option(0),
    record: Optional[Path] = typer.Option(None, help="also write the manifest (sizes, parameters, losses) to DIR"),
    as_json: bool = typer.Option(False, "--json", help="print the folder, whether it was built and the time as JSON"),
) -> None:
    """Generate the micro world if missing and pretrain the micro backbone (cached; a second run returns at once)."""
    import time


    from ntbench.micro import ensure_micro

    if backbone != "micro":
        _fail(f"--backbone {backbone!r}: nothing to prepare; allowed values: micro")
    check_out_folder("--record", record)
    start = time.perf_counter()
    with progress_bar("loss {task.fields[loss]}") as bar:
        tasks: dict[str, int] = {}

        def tick(stage: str, step: int, total: int, loss: float) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, loss="-")
            bar.update(tasks[stage], completed=step, loss=f"{loss:.3f}")
        folder, built = ensure_micro(seed, progress=tick)
    seconds = time.perf_counter() - start
    from ntbench.backbone_record import loss_words, read_manifest, reference_manifest, weights_differing
    mine, reference = read_manifest(folder), reference_manifest()
    ref_manifest = json.loads(reference.read_text()) if reference else {}
    differs = weights_differing(ref_manifest, mine)  # None without a reference: {} has no seed to compare
    manifest = None
    if record:
        from ntbench.micro import record_manifest
        manifest = record_manifest(folder, record)
    if as_json:
        print_json({"folder": str(folder), "built": built, "seconds": seconds,
                    "manifest": str(manifest) if manifest else None,
                    "reference": str(reference) if reference else None,
                    "weights_differing_from_reference": differs})
        return
    out.print(f"{'prepared' if built else 'found cached'} micro backbone at {folder} ({seconds:.1f} s)")
    if manifest:
        out.print(f"recorded {manifest}")
    if differs:
        out.print(f"[bold yellow]this backbone differs from the committed reference[/] ({reference}): "
                  f"{', '.join(differs)} (losses, last 50 steps: {loss_words(ref_manifest, mine)}). The same "
                  "recipe and seed give other weights when the CPU's arithmetic differs (another instruction "
                  "set or torch build). Rows made here do not pair seed by seed with the committed results: "
                  "run whole suites on this machine rather than continue a committed one (README, "
                  "'Reproducibility and paired comparisons').")
    elif differs == []:  # None: another seed or sizes, nothing to compare
        out.print(f"identical to the committed reference ({reference})")

