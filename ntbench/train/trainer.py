"""One trainer for every adapter. It never asks which adapter it trains: the adapter's
parameters come from the adapter itself, the rest (projection, task-token rows, heads) from
the model.

AdamW, cosine schedule with linear warmup, gradient clipping, seeded task mixing, periodic
evaluation, callbacks (for Optuna reporting/pruning), bf16 autocast and gradient checkpointing
on CUDA, step time / tokens per second / peak memory, and DDP under ``torchrun``.
"""
from __future__ import annotations

import copy
import math
import os
import statistics
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from pydantic import BaseModel, ConfigDict, Field, field_validator
from transformers import set_seed

from ntbench.cost import FLOP_FORMULAS
from ntbench.data.io import SampleDataset
from ntbench.model.batching import Item, collate, to_device
from ntbench.model.tasks import TASKS
from ntbench.train.prefetch import BatchStream

Callback = Callable[[str, dict[str, Any]], Any]  # (event, state) -> "stop" to end training early


class TrainableModel(Protocol):
    """What :func:`train` needs of a model (an ``nn.Module``; the all-in-token model is one).

    The trainer depends on this, not on a model class, so a test or another model family can be
    trained by the same loop and the train layer need not import the model it trains.
    """

    tokenizer: Any  # collates the batches
    llm: torch.nn.Module  # gradient checkpointing is switched on here
    image_tokens: int  # LLM tokens one image becomes (for tokens/s)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Exactly the parameters the optimizer updates."""

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        """The losses of a collated batch; ``"loss"`` is the one to minimise."""

    def to(self, device: torch.device) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...


class TrainConfig(BaseModel):
    """Training budget and optimisation settings (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(8, ge=1, description="samples per step (per process under DDP)")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0)
    warmup: int | None = Field(20, ge=0, description="linear warmup steps before the cosine decay (None: 10% of steps)")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm (0: off)")
    seed: int = 0
    tasks: dict[str, float] = Field(default_factory=lambda: {t: 1.0 for t in ("referring", "reasoning", "captioning", "t2i")},
                                    description="task -> mixing ratio (normalised)")
    eval_every: int = Field(0, ge=0, description="evaluate every N steps (0: only at the end)")
    device: str = Field("auto", description="auto, cpu or cuda[:i]")
    bf16: bool = Field(True, description="bf16 autocast (CUDA only)")
    gradient_checkpointing: bool = Field(True, description="activation checkpointing (CUDA only)")
    deterministic: bool = Field(True, description="deterministic kernels (torch.use_deterministic_algorithms): the "
                                                  "same config, seed and thread count give bit-identical numbers on "
                                                  "CPU; on CUDA ops without a deterministic kernel only warn")

    prefetch: int | None = Field(None, ge=0, description="batches built ahead on a background thread (None: 2 on "
                                                         "CUDA, 0 on CPU, where the thread would compete with the "
                                                         "step for the same cores); the batches are the same either way")

    def prefetch_depth(self, device: torch.device) -> int:
        if self.prefetch is not None:
            return self.prefetch
        return 2 if device.type == "cuda" else 0

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else max(1, self.steps // 10)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: dict[str, float]) -> dict[str, float]:
        for name, ratio in v.items():
            TASKS.get(name)  # UnknownNameError with "did you mean"
            if ratio < 0:
                raise ValueError(f"task ratio for {name!r} must be >= 0, got {ratio}")
        if not v or sum(v.values()) <= 0:
            raise ValueError("at least one task needs a positive ratio")
        return {TASKS.canonical(k): float(r) for k, r in v.items()}


def enable_checkpointing(llm: torch.nn.Module) -> bool:
    """Non-reentrant activation checkpointing, where the model and its adapter support it."""
    from ntbench.adapters import adapter_handle

    if not hasattr(llm, "gradient_checkpointing_enable") or not adapter_handle(llm).supports_gradient_checkpointing:
        return False
    llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return True


# SDPA's fused CUDA backends and how to read / set each: under warn_only, each of their backwards
# keeps its atomic (run-to-run varying) form and only warns "defaults to a non-deterministic algorithm"
_FUSED_SDPA = (("flash", torch.backends.cuda.flash_sdp_enabled, torch.backends.cuda.enable_flash_sdp),
               ("mem_efficient", torch.backends.cuda.mem_efficient_sdp_enabled, torch.backends.cuda.enable_mem_efficient_sdp),
               ("cudnn", torch.backends.cuda.cudnn_sdp_enabled, torch.backends.cuda.enable_cudnn_sdp))


@contextmanager
def deterministic_kernels(enabled: bool = True, device: str | torch.device = "cpu"):
    """Run the enclosed work with deterministic kernels, then restore the process-wide settings.

    Why: without it a micro trial's loss differed by 2e-6 at step 3 and by 0.025 at step 200
    between two runs of the same seed, so "seed" was not a controlled variable. On CUDA the
    switch also needs cuBLAS's fixed workspace; ops with no deterministic CUDA kernel warn
    instead of failing, so CUDA runs are reproducible only as far as those ops allow.

    On a CUDA ``device`` attention also runs on SDPA's math backend: the fused backends (flash,
    memory-efficient, cuDNN) keep a non-deterministic backward under warn_only. On an H200 the
    memory-efficient one was the only op of a micro trial that warned. Math attention is slower
    at large shapes; ``train.deterministic: false`` gives the fused kernels back. The switches are
    process-wide and CPU attention reads the flash one too, so they are touched only for CUDA work.
    """
    if not enabled:
        yield
        return
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cuda = torch.device(device).type == "cuda"
    sdpa_before = {name: enabled_fn() for name, enabled_fn, _ in _FUSED_SDPA} if cuda else {}
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: set before any CUDA work
    try:
        torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
        for name, _, set_fn in _FUSED_SDPA:
            if name in sdpa_before:
                set_fn(False)
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
        for name, _, set_fn in _FUSED_SDPA:
            if name in sdpa_before:
                set_fn(sdpa_before[name])


class DeviceError(ValueError):
    """A device that this machine does not have."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device {name!r}: not a device name (allowed: auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r}: no CUDA GPU is visible on this machine (allowed here: auto, cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


class TaskMixer:
    """Draws (task, sample) pairs by the configured ratios from a seeded generator."""

    def __init__(self, dataset: SampleDataset, ratios: dict[str, float], seed: int):
        self.dataset = dataset
        self.tasks = list(ratios)
        p = np.array([ratios[t] for t in self.tasks], dtype=np.float64)
        self.p = p / p.sum()
        self.builders = {t: TASKS.get(t)() for t in self.tasks}
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> list[Item]:
        items = []
        while len(items) < n:
            task = self.tasks[int(self.rng.choice(len(self.tasks), p=self.p))]
            idx = int(self.rng.integers(len(self.dataset)))
            example = self.builders[task].build(self.dataset.samples[idx], self.rng)
            if example is None:
                continue
            data = self.dataset[idx]
            items.append(Item(example, data["image"], data["masks"], data["id"]))
        return items


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup then cosine decay to 0.

    Kept instead of transformers' ``get_cosine_schedule_with_warmup``: that one starts at factor 0,
    so its first optimizer step runs at LR 0 and is wasted; here the first step already moves. The
    two differ only by that one-step shift of the warmup, but switching would change every recorded
    run: on a 6-step tiny-random trial (warmup 2) the loss differs from step 2 on (14.8207 against
    14.8235, then 4.662 against 4.697). The micro backbone's recipe keeps its own copy for the same
    reason (ntbench.micro.recipe._cosine_lr)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def reset_peak_memory(device: torch.device) -> bool:
    """Start a fresh peak-memory count for this training run. On CPU the kernel's per-process
    high-water mark (VmHWM) is reset through /proc/self/clear_refs, so a trial reports its own
    peak, not the largest of every trial the process ran before. False where that is impossible."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device, reset: bool = True) -> float:
    """Peak memory since :func:`reset_peak_memory` (CUDA: allocated; CPU: resident set); NaN when the
    CPU peak could not be reset, rather than a number that belongs to earlier trials."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if not reset:
        return float("nan")
    try:
        with open("/proc/self/status") as f:
            line = next(ln for ln in f if ln.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    except (OSError, StopIteration, ValueError):
        return float("nan")


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def train(model: TrainableModel, dataset: SampleDataset, cfg: TrainConfig,
          callbacks: list[Callback] = (), evaluate_fn: Callable[[int], dict] | None = None,
          progress: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place; returns the loss history and speed/memory measurements."""
    with deterministic_kernels(cfg.deterministic, resolve_device(cfg.device)):
        return _train(model, dataset, cfg, callbacks, evaluate_fn, progress)


def _train(model: TrainableModel, dataset: SampleDataset, cfg: TrainConfig, callbacks: list[Callback],
           evaluate_fn: Callable[[int], dict] | None, progress: Callable[[int, dict], None] | None) -> dict[str, Any]:
    rank, world = _distributed()
    set_seed(cfg.seed)  # python, numpy, torch (and CUDA) generators
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.to(device)
    use_cuda = device.type == "cuda"
    checkpointing = use_cuda and cfg.gradient_checkpointing and enable_checkpointing(model.llm)
    params = model.trainable_parameters()
    runner: torch.nn.Module = model
    if world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if use_cuda else None, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps))
    mixer = TaskMixer(dataset, cfg.tasks, cfg.seed + 1000 * rank)  # each rank sees its own stream
    memory_reset = reset_peak_memory(device)
    history: list[dict[str, float]] = []
    step_times, tokens, evals = [], 0, []
    model.train()
    stopped = False
    flops = 0
    data_times = []  # how long each step waited for its batch (with prefetch: what building it did not hide)
    depth = cfg.prefetch_depth(device)
    # the producer gets its own tokenizer: evaluation (eval_every) tokenises on this thread meanwhile,
    # and a fast tokenizer shared by two threads can fail with "Already borrowed"
    tokenizer = copy.deepcopy(model.tokenizer) if depth else model.tokenizer
    batches = BatchStream(lambda: collate(mixer.draw(cfg.batch_size), tokenizer), cfg.steps, depth)
    try:
        for step in range(cfg.steps):
            start = time.perf_counter()
            batch = to_device(next(batches), device)
            data_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            # the first step is counted (forward + backward FLOPs of the whole model); it is left
            # out of the step-time median below, so the counter's overhead does not bias timings
            counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) if step == 0 else nullcontext()
            with counter:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda and cfg.bf16):
                    losses = runner(batch)
                if not torch.isfinite(losses["loss"]):
                    raise FloatingPointError(f"non-finite loss at step {step}: {float(losses['loss'])}")
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
            if step == 0:
                flops = counter.get_total_flops()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            if use_cuda:
                torch.cuda.synchronize(device)
            step_times.append(time.perf_counter() - start)
            n_img = batch["uses_image"].long().sum() * model.image_tokens
            tokens += int(batch["text_mask"].sum() + n_img)  # text + image tokens the LLM read
            record = {"step": step + 1, **{k: float(v.detach()) for k, v in losses.items()}, "lr": scheduler.get_last_lr()[0]}
            history.append(record)
            if progress:
                progress(step + 1, record)
            for cb in callbacks:
                if cb("step", record) == "stop":
                    stopped = True
            if evaluate_fn and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                metrics = evaluate_fn(step + 1)
                evals.append({"step": step + 1, **metrics})
                for cb in callbacks:
                    if cb("eval", {"step": step + 1, "metrics": metrics}) == "stop":
                        stopped = True
            if stopped:
                break
    finally:
        batches.close()
    timed = step_times[min(3, len(step_times) - 1):]  # the first steps include warm-up costs
    return {"history": history, "evaluations": evals, "stopped_early": stopped, "steps_run": len(history),
            "step_time_s": statistics.median(timed),
            "data_time_s": statistics.median(data_times), "prefetch": depth, "tflops_per_step": flops / 1e12, "tokens_per_s": tokens / max(sum(step_times), 1e-9),
            "peak_memory_mb": peak_memory_mb(device, memory_reset), "gradient_checkpointing": checkpointing, "device": str(device), "world_size": world, "rank": rank}
