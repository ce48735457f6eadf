"""One trial end to end: backbone + adapter + data -> train -> evaluate -> ``metrics.json``.

:func:`run_trial` is the one library function behind ``ntbench train`` (and the suite runner);
:func:`evaluate_run` reloads its output folder and evaluates it again (``ntbench eval``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ntbench.adapters import adapter_handle
from ntbench.atomic import write_json
from ntbench.data.cache import resolve_data
from ntbench.data.io import SampleDataset
from ntbench.provenance import provenance
from ntbench.train.recipes import with_recipe
from ntbench.train.trainer import Callback, TrainConfig, deterministic_kernels, resolve_device, train

class TrialConfig(BaseModel):
    """Everything that defines one trial (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")
    backbone: str = Field("tiny-random", description="preset name, or an HF id / local path of the LLM")
    vision: str | None = Field(None, description="HF id / local path of the vision encoder (with a non-preset LLM)")
    data: str | None = Field(None, description="dataset folder; default: the micro world under NTBENCH_HOME")
    adapter: str = "neural"
    adapter_options: dict[str, Any] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval_samples: int = Field(32, ge=1, description="samples per task in evaluation")
    eval_split: str = "val"
    eval_seed: int = Field(0, description="picks the evaluation samples and expressions; fixed across training "
                                          "seeds, so seed-to-seed spread measures training, not the eval draw")
    eval_generated: bool = Field(True, description="also evaluate with generated answers")
    meteor: bool = Field(False, description="compute METEOR (needs Java, ~10 s)")
    max_objects: int = Field(8, ge=1)
    lambda_seg: float = Field(1.0, ge=0)
    lambda_gen: float = Field(10.0, ge=0)
    lambda_bce: float = Field(0.0, ge=0, description="weight of a per-pixel BCE term added to the Dice loss "
                                                     "(paper: 0, Dice only; LISA uses BCE too)")
    train_embeddings: bool = Field(False, description="train the LLM's whole embedding and LM head too")
    whiten_state: bool = Field(True, description="whiten the <OBJ-i> state before the mask decoder (running ZCA "
                                                 "statistics; see ntbench.model.heads.StateWhitening)")
    pixel_refiner: bool = Field(False, description="add the token-conditioned pixel CNN to the mask decoder "
                                                   "(finds objects by shape on the micro backbone; slower)")

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data: Any) -> Any:
        """A preset backbone's validated recipe (ntbench.train.recipes) fills what the config leaves out."""
        return with_recipe(data, cls.model_fields["backbone"].default) if isinstance(data, dict) else data

    @field_validator("backbone", "vision")
    @classmethod
    def _local_path_exists(cls, value: str | None) -> str | None:
        """A missing folder is reported now, before a default dataset is generated or a model loaded."""
        if value and value.startswith(("/", "./", "../", "~")) and not Path(value).expanduser().exists():
            raise ValueError(f"{value!r}: not found (a local path must exist)")
        return value

    # An unset ${VAR} in a suite stays as written (paper suites name weights that way), so such a
    # value is checked when the trial runs, not at validation.

    @field_validator("data")
    @classmethod
    def _data_exists(cls, value: str | None) -> str | None:
        if value and not value.startswith("microworld:") and "${" not in value and not Path(value).expanduser().exists():
            raise ValueError(f"{value!r}: not found (a dataset folder, or microworld:N)")
        return value

    @model_validator(mode="after")
    def _check_adapter(self) -> "TrialConfig":
        """Adapter name, its options and its strategy are checked now, not after minutes of setup."""
        from ntbench.adapters import ADAPTERS
        from ntbench.adapters.options import validate_options

        cls = ADAPTERS.get(self.adapter)
        opts = validate_options(cls.options_model, ADAPTERS.canonical(self.adapter), self.adapter_options)
        if hasattr(opts, "strategy"):
            from ntbench.strategies import make_strategy
            try:
                make_strategy(opts.strategy, beta=opts.beta, **opts.strategy_options)
            except FileNotFoundError as exc:  # a plugin file: a validation error under its key
                raise ValueError(f"adapter_options.strategy: {exc}") from None
        return self


def build_model(cfg: TrialConfig):
    """The seeded all-in-token model a trial trains (backbone loaded, adapter attached, heads built)."""
    from ntbench.model.allintoken import AllInTokenModel
    from ntbench.model.backbone import load_backbone

    torch.manual_seed(cfg.train.seed)
    backbone = load_backbone(cfg.backbone, vision=cfg.vision) if cfg.vision else load_backbone(cfg.backbone)
    return AllInTokenModel(backbone, cfg.adapter, adapter_options_for(cfg), max_objects=cfg.max_objects,
                           train_embeddings=cfg.train_embeddings, lambda_seg=cfg.lambda_seg,
                           lambda_gen=cfg.lambda_gen, lambda_bce=cfg.lambda_bce, pixel_refiner=cfg.pixel_refiner,
                           whiten_state=cfg.whiten_state, seed=cfg.train.seed)


def adapter_options_for(cfg: TrialConfig) -> dict[str, Any]:
    """The adapter's options, with its own random stream (e.g. neural tuning's mask noise) tied to the
    training seed unless the config sets it: two cells with one seed then share every random draw
    but what the suite varies (common random numbers, for paired comparisons)."""
    from ntbench.adapters import ADAPTERS

    opts = dict(cfg.adapter_options)
    if "seed" in ADAPTERS.get(cfg.adapter).options_model.model_fields and opts.get("seed") is None:
        opts["seed"] = cfg.train.seed
    return opts


def run_trial(cfg: TrialConfig, out: str | Path | None = None, callbacks: list[Callback] = (),
              progress: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Train and evaluate one configuration; write ``out/metrics.json``, the adapter and heads."""
    provenance()  # the git state as the trial starts (cached for the process)
    with deterministic_kernels(cfg.train.deterministic, resolve_device(cfg.train.device)):  # evaluation too
        return _run_trial(cfg, out, callbacks, progress)


def _run_trial(cfg: TrialConfig, out: str | Path | None, callbacks: list[Callback],
               progress: Callable[[int, dict], None] | None) -> dict[str, Any]:
    data = resolve_data(cfg.data)
    train_ds = SampleDataset(data, "train")
    eval_ds = SampleDataset(data, cfg.eval_split)
    model = build_model(cfg)

    result = train(model, train_ds, cfg.train, callbacks=callbacks, progress=progress,
                   evaluate_fn=lambda step: evaluate_trial(model, cfg, eval_ds))
    metrics = evaluate_trial(model, cfg, eval_ds)
    handle = adapter_handle(model.llm)
    summary = {
        "config": cfg.model_dump(), "data": str(Path(data).resolve()), "metrics": metrics,
        "train": {k: v for k, v in result.items() if k != "history"},
        "loss_first": result["history"][0], "loss_last": result["history"][-1],
        "trainable_params": sum(p.numel() for p in model.trainable_parameters()),
        "adapter_params": handle.num_parameters(), "provenance": provenance(),
    }
    if out is not None and result["rank"] == 0:
        out = Path(out)
        model.save_pretrained(out)  # what evaluate_run reloads; metrics.json, written last, marks a finished run
        write_json(out / "history.json", {"history": result["history"]})
        write_json(out / "metrics.json", summary)
    return summary


def evaluate_trial(model, cfg: TrialConfig, dataset: SampleDataset) -> dict[str, Any]:
    """Evaluate ``model`` as the trial ``cfg`` says (tasks, samples, eval seed, generated, METEOR)."""
    from ntbench.eval.evaluate import evaluate

    tasks = [t for t, r in cfg.train.tasks.items() if r > 0]
    return evaluate(model, dataset, tasks, n_samples=cfg.eval_samples, seed=cfg.eval_seed,
                    generated=cfg.eval_generated, meteor=cfg.meteor, device=next(model.parameters()).device)


class RunFolderError(ValueError):
    """A folder that is missing, or is not the output folder of a finished, reloadable trial."""


def evaluate_run(run_dir: str | Path, split: str | None = None, generated: bool | None = None,
                 samples: int | None = None, meteor: bool | None = None, device: str | None = None) -> dict[str, Any]:
    """Reload a trial's output folder and evaluate it as the trial did, unless an argument says otherwise.

    The evaluation follows the trial's config (tasks, ``eval_samples``, ``eval_seed``, split,
    generated answers, METEOR, deterministic kernels), so with no overrides it reproduces the
    trial's ``metrics.json`` on the same machine and thread count.

    Args:
        run_dir: the folder ``run_trial`` (``ntbench train --out``) wrote.
        split, generated, samples, meteor: override ``eval_split``, ``eval_generated``,
            ``eval_samples``, ``meteor``.
        device: default: the trial's ``train.device``.

    Returns:
        ``run``, ``evaluation`` (the settings used), ``metrics`` (as in ``metrics.json``),
        ``trial_metrics`` (the trial's own), ``reproduces_trial`` (whether they are identical; None
        where an override changed the evaluation) and ``provenance``.

    Raises:
        RunFolderError: ``run_dir`` is missing, not a finished trial, or lacks the saved model.
        FileNotFoundError / DataError: the trial's dataset or the split is gone.
    """
    from ntbench.model.allintoken import AllInTokenModel
    from ntbench.model.pretrained import read_model_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such folder")
    if not (run_dir / "metrics.json").is_file():
        raise RunFolderError(f"{run_dir} is not a trial's output folder (no metrics.json: not written by "
                             "`ntbench train --out`, or the trial did not finish)")
    try:
        source = read_model_config(run_dir)["backbone"] or {}
    except FileNotFoundError as exc:
        raise RunFolderError(f"{exc}; runs written before ntbench saved the whole model cannot be reloaded") from None
    summary = json.loads((run_dir / "metrics.json").read_text())
    overrides = {k: v for k, v in {"eval_split": split, "eval_generated": generated, "eval_samples": samples,
                                   "meteor": meteor}.items() if v is not None}
    # the paths the trial resolved (absolute), so that a run is evaluated from any working folder
    data = Path(summary["data"])
    paths = {"backbone": source["llm"], "vision": source["vision"]} if "llm" in source else {}
    try:
        cfg = TrialConfig(**{**summary["config"], **paths, "data": str(data), **overrides})
    except ValidationError as exc:
        raise RunFolderError(f"{run_dir}: the trial's configuration does not hold here: {exc}") from None
    target = resolve_device(device or cfg.train.device)
    with deterministic_kernels(cfg.train.deterministic, target):  # as run_trial evaluates
        model = AllInTokenModel.from_pretrained(run_dir).to(target)
        metrics = evaluate_trial(model, cfg, SampleDataset(data, cfg.eval_split))
    same = all(summary["config"][k] == v for k, v in overrides.items())
    settings = {"split": cfg.eval_split, "samples": cfg.eval_samples, "seed": cfg.eval_seed,
                "generated": cfg.eval_generated, "meteor": cfg.meteor,
                "tasks": [t for t, r in cfg.train.tasks.items() if r > 0]}
    as_saved = lambda m: json.dumps(m, sort_keys=True, default=str)  # noqa: E731  (NaN == NaN here)
    return {"run": str(run_dir), "evaluation": settings, "metrics": metrics, "trial_metrics": summary["metrics"],
            "reproduces_trial": as_saved(metrics) == as_saved(summary["metrics"]) if same else None,
            "provenance": provenance()}
