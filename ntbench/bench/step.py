"""Training-step benchmark: adapters measured side by side, interleaved, in one process.

Ratios (e.g. neural / LoRA, neural / the frozen floor) are the result; absolute times depend on
the machine. Rounds alternate between arms so that drift in machine load or clocks hits all of
them alike. Every arm wraps the same frozen weights (one copy in memory, shared), so a 7B shape
with six arms fits one GPU.

Timing is by hand rather than ``torch.utils.benchmark``: interleaving needs control over every
single step, and ``blocked_autorange`` runs one statement in blocks of its own choosing. Each step
ends with a device synchronisation, so a time is that step's own.
"""
from __future__ import annotations

import copy
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ntbench.adapters import apply_adapter, trainable_parameters
from ntbench.model.shapes import LLM_SHAPES, llm_config, random_llm

# arm name -> (adapter, options); the and the paper's settings (Table A.8)
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "frozen": ("frozen", {}),  # the floor: gradients through every layer, only a scalar probe updated
    "lora": ("lora", {"r": 8, "targets": "qv"}),
    "prefix": ("prefix", {"num_virtual_tokens": 10}),
    "ia3": ("ia3", {}),
    "neural": ("neural", {"dz": 128, "targets": "qv"}),
    "neural-soft": ("neural", {"dz": 128, "targets": "qv", "threshold": "soft"}),
}
DEFAULT_ARMS = ("frozen", "lora", "neural")


@dataclass
class StepBenchConfig:
    shape: str = "tiny"        # ntbench.model.shapes.LLM_SHAPES
    hidden: int | None = None  # overrides of the shape (intermediate follows as 8/3 hidden)
    layers: int | None = None
    heads: int | None = None
    vocab: int | None = None
    batch: int = 16
    seq_len: int = 128
    rounds: int = 5            # interleaved rounds
    steps_per_round: int = 5
    warmup: int = 3
    device: str = "cpu"
    dtype: str = "float32"
    arms: tuple[str, ...] = DEFAULT_ARMS
    compiled: tuple[str, ...] = ()  # arms also measured under torch.compile, as "<arm>+compile"
    extra_arms: dict[str, tuple[str, dict]] = field(default_factory=dict)

    def overrides(self) -> dict[str, int]:
        out = {}
        if self.hidden is not None:
            out.update(hidden_size=self.hidden, intermediate_size=int(self.hidden * 8 / 3))
        if self.layers is not None:
            out["num_hidden_layers"] = self.layers
        if self.heads is not None:
            out.update(num_attention_heads=self.heads, num_key_value_heads=self.heads)
        if self.vocab is not None:
            out["vocab_size"] = self.vocab
        return out

    def describe(self) -> str:
        c = llm_config(self.shape, **self.overrides())
        return (f"{self.shape}: hidden={c.hidden_size} layers={c.num_hidden_layers} heads={c.num_attention_heads} "
                f"batch={self.batch}x{self.seq_len} vocab={c.vocab_size} {self.dtype} {self.device}")


def _arm_table(cfg: StepBenchConfig) -> dict[str, tuple[str, dict]]:
    table = {**ARMS, **cfg.extra_arms}
    unknown = [a for a in (*cfg.arms, *cfg.compiled) if a not in table]
    if unknown:
        raise ValueError(f"unknown bench arm(s) {unknown}; allowed: {', '.join(table)}")
    return table


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _stepper(base: torch.nn.Module, cfg: StepBenchConfig, adapter: str, options: dict, ids: torch.Tensor,
             compiled: bool) -> Callable[[], float]:
    # a copy of the module tree that shares every weight tensor with ``base``: the adapter wraps
    # its own modules, the frozen weights exist once
    shared = {id(p): p for p in base.parameters()}
    model = apply_adapter(copy.deepcopy(base, memo=shared), adapter, **options).train()
    params = trainable_parameters(model)
    probe = None
    if not params:  # the floor: a scalar on the input embeddings keeps backward going through every layer
        probe = torch.nn.Parameter(torch.ones((), device=ids.device, dtype=getattr(torch, cfg.dtype)))
        params = [probe]
    opt = torch.optim.AdamW(params, lr=1e-4)
    embeds = model.get_input_embeddings()
    forward = torch.compile(model) if compiled else model

    def step() -> float:
        start = time.perf_counter()
        if probe is not None:
            loss = forward(inputs_embeds=embeds(ids) * probe, labels=ids, use_cache=False).loss
        else:
            loss = forward(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(cfg.device)
        return time.perf_counter() - start
    return step


def _base_and_batch(cfg: StepBenchConfig) -> tuple[torch.nn.Module, torch.Tensor]:
    """The shared random model of the shape and one fixed token batch (seeded: every arm sees it)."""
    base = random_llm(cfg.shape, cfg.device, getattr(torch, cfg.dtype), **cfg.overrides())
    ids = torch.randint(0, base.config.vocab_size, (cfg.batch, cfg.seq_len),
                        generator=torch.Generator().manual_seed(0)).to(cfg.device)
    return base, ids


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=4, method="inclusive")[int(q * 4) - 1] if len(values) > 1 else values[0]


def step_benchmark(cfg: StepBenchConfig | None = None,
                   progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Median training-step time of each arm, its spread, peak memory and its ratio to every other arm."""
    cfg = cfg or StepBenchConfig()
    table = _arm_table(cfg)
    say = progress or (lambda msg: None)
    say("building the model")
    base, ids = _base_and_batch(cfg)
    names = [*cfg.arms, *(f"{a}+compile" for a in cfg.compiled)]
    steppers = {}
    for name in names:
        arm = name.removesuffix("+compile")
        adapter, options = table[arm]
        steppers[name] = _stepper(base, cfg, adapter, options, ids, compiled=name.endswith("+compile"))
    cuda = cfg.device.startswith("cuda")
    warmup_s: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name, step in list(steppers.items()):
        say(f"warming up {name}" + (" (compiling)" if name.endswith("+compile") else ""))
        start = time.perf_counter()
        try:
            for _ in range(cfg.warmup):
                step()
        except Exception as exc:  # an arm that cannot run (a compile failure) is reported; the others go on
            failed[name] = f"{type(exc).__name__}: {exc}"[:500]
            del steppers[name]
            if cuda:
                torch.cuda.empty_cache()
            continue
        warmup_s[name] = time.perf_counter() - start  # for a compiled arm: mostly the compilation
    if not steppers:
        raise RuntimeError(f"every bench arm failed: {failed}")
    times: dict[str, list[float]] = {name: [] for name in steppers}
    peak: dict[str, float] = {name: float("nan") for name in steppers}
    for r in range(cfg.rounds):
        for name, step in steppers.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            times[name] += [step() for _ in range(cfg.steps_per_round)]
            if cuda:
                mb = torch.cuda.max_memory_allocated() / 2**20
                peak[name] = mb if peak[name] != peak[name] else max(peak[name], mb)
        say(f"round {r + 1}/{cfg.rounds}")
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    device_name = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    machine = f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    weights_mb = sum(p.numel() * p.element_size() for p in base.parameters()) / 2**20
    rows = []
    for name, med in medians.items():
        adapter, options = table[name.removesuffix("+compile")]
        ts = times[name]
        row = {"adapter": name, "base_adapter": adapter, "options": options, "compiled": name.endswith("+compile"),
               "median_step_s": round(med, 5), "q25_step_s": round(_quantile(ts, 0.25), 5),
               "q75_step_s": round(_quantile(ts, 0.75), 5), "min_step_s": round(min(ts), 5), "steps": len(ts),
               "peak_memory_mb": round(peak[name], 1), "shared_weights_mb": round(weights_mb, 1),
               "warmup_s": round(warmup_s[name], 2),
               "shape": cfg.describe(), "device_name": device_name, "machine": machine}
        for other, other_med in medians.items():
            if other != name:
                row[f"ratio_vs_{other}"] = round(med / other_med, 3)
        rows.append(row)
    for name, error in failed.items():
        adapter, options = table[name.removesuffix("+compile")]
        rows.append({"adapter": name, "base_adapter": adapter, "options": options,
                     "compiled": name.endswith("+compile"), "error": error, "shape": cfg.describe(),
                     "device_name": device_name, "machine": machine})
    return rows


def profile_step(cfg: StepBenchConfig, arm: str, steps: int = 3, top: int = 25) -> str:
    """The kernels of a few training steps of one arm (torch.profiler), most expensive first."""
    table = _arm_table(cfg)
    adapter, options = table[arm.removesuffix("+compile")]
    base, ids = _base_and_batch(cfg)
    step = _stepper(base, cfg, adapter, options, ids, compiled=arm.endswith("+compile"))
    for _ in range(cfg.warmup):
        step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cfg.device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    key = "self_cuda_time_total" if cfg.device.startswith("cuda") else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top)


__all__ = ["ARMS", "DEFAULT_ARMS", "LLM_SHAPES", "StepBenchConfig", "profile_step", "step_benchmark"]
