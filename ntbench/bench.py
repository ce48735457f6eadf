"""Training-step benchmark: adapters measured side by side, interleaved, in one process.

Ratios (e.g. neural / LoRA) are the result; absolute times depend on the machine. Rounds
alternate between adapters so that drift in machine load hits all of them alike.
"""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ntbench.adapters import apply_adapter, trainable_parameters


@dataclass
class StepBenchConfig:
    hidden: int = 128          # tiny LLaMA of the foundation issue
    layers: int = 4
    heads: int = 4
    vocab: int = 32000         # LLaMA tokenizer size
    batch: int = 16
    seq_len: int = 128
    rounds: int = 5            # interleaved rounds
    steps_per_round: int = 5
    warmup: int = 3
    device: str = "cpu"
    dtype: str = "float32"


DEFAULT_ADAPTERS: dict[str, dict[str, Any]] = {
    "frozen": {},              # the floor: forward + backward to the inputs, no update
    "lora": {"r": 8, "targets": "qv"},
    "neural": {"dz": 128, "targets": "qv"},
}


def _model(cfg: StepBenchConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=cfg.hidden, intermediate_size=int(cfg.hidden * 8 / 3),
                         num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                         num_key_value_heads=cfg.heads, vocab_size=cfg.vocab)
    return LlamaForCausalLM(config).to(device=cfg.device, dtype=getattr(torch, cfg.dtype))


def _stepper(cfg: StepBenchConfig, adapter: str, options: dict) -> Callable[[], float]:
    model = apply_adapter(_model(cfg), adapter, **options).train()
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr=1e-4) if params else None
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq_len), generator=g).to(cfg.device)
    embeds = model.get_input_embeddings()

    def step() -> float:
        start = time.perf_counter()
        if opt is None:  # the floor: forward + backward through every layer, nothing to update
            x = embeds(ids).detach().requires_grad_(True)
            model(inputs_embeds=x, labels=ids).loss.backward()
        else:
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if cfg.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start
    return step


def step_benchmark(cfg: StepBenchConfig | None = None, adapters: dict[str, dict] | None = None,
                   progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Median training-step time per adapter and its ratio to every other adapter."""
    cfg = cfg or StepBenchConfig()
    adapters = adapters or DEFAULT_ADAPTERS
    steppers = {name: _stepper(cfg, name, opts) for name, opts in adapters.items()}
    for step in steppers.values():
        for _ in range(cfg.warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for r in range(cfg.rounds):
        for name, step in steppers.items():
            times[name] += [step() for _ in range(cfg.steps_per_round)]
        if progress:
            progress(f"round {r + 1}/{cfg.rounds}")
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    machine = f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    rows = []
    for name, med in medians.items():
        row = {"adapter": name, "options": adapters[name], "median_step_s": round(med, 5),
               "min_step_s": round(min(times[name]), 5), "steps": len(times[name]),
               "shape": f"hidden={cfg.hidden} layers={cfg.layers} batch={cfg.batch}x{cfg.seq_len} "
                        f"vocab={cfg.vocab} {cfg.dtype} {cfg.device}",
               "machine": machine}
        for other, other_med in medians.items():
            if other != name:
                row[f"ratio_vs_{other}"] = round(med / other_med, 3)
        rows.append(row)
    return rows


# -- one whole trial: wall time and where it goes ------------------------------------------------

TRIAL_PARTS = ("vision", "llm", "mask_decoder", "gen_head")  # AllInTokenModel children timed by forward hooks


class _ForwardTimer:
    """Sums the wall time of each named child's forward (CPU work is synchronous, so this is exact
    there; on CUDA the times are launch times unless the caller synchronises)."""

    def __init__(self, model: torch.nn.Module, parts=TRIAL_PARTS):
        self.seconds = {p: 0.0 for p in parts}
        self._handles, self._start = [], {}
        for name in parts:
            module = getattr(model, name, None)
            if module is None:
                continue
            self._handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._begin(n)))
            self._handles.append(module.register_forward_hook(lambda m, a, o, n=name: self._end(n)))

    def _begin(self, name: str) -> None:
        self._start[name] = time.perf_counter()

    def _end(self, name: str) -> None:
        self.seconds[name] += time.perf_counter() - self._start.pop(name)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def trial_benchmark(cfg, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one trial (``TrialConfig``) phase by phase and report where its wall time goes.

    Phases: setup (data, backbone, model), training (batch building, the forward of each model part,
    and backward + optimizer as the rest of the step), evaluation per task (teacher-forced, and
    generated where the config asks for it). Nothing is written; the numbers are this machine's.
    """
    from ntbench.data.io import SampleDataset
    from ntbench.eval.evaluate import evaluate
    from ntbench.train.trainer import deterministic_kernels, train
    from ntbench.train.trial import build_model, resolve_data

    say = progress or (lambda msg: None)
    rows: list[dict[str, Any]] = []
    wall = time.perf_counter()
    with deterministic_kernels(cfg.train.deterministic):
        say("setup")
        start = time.perf_counter()
        data = resolve_data(cfg.data)
        train_ds, eval_ds = SampleDataset(data, "train"), SampleDataset(data, cfg.eval_split)
        model = build_model(cfg)
        rows.append({"phase": "setup", "part": "data + backbone + model", "seconds": time.perf_counter() - start})
        timer = _ForwardTimer(model)
        start = time.perf_counter()
        result = train(model, train_ds, cfg.train,
                       progress=lambda s, rec: say(f"training step {s}/{cfg.train.steps}") if s % 50 == 0 else None)
        train_s = time.perf_counter() - start
        timer.remove()
        steps = result["steps_run"]
        data_s = result["data_time_s"] * steps
        forward = {k: v for k, v in timer.seconds.items() if v > 0}
        rows.append({"phase": "train", "part": "batch building (median x steps)", "seconds": data_s})
        rows += [{"phase": "train", "part": f"forward: {k}", "seconds": v} for k, v in forward.items()]
        rows.append({"phase": "train", "part": "backward + optimizer + rest of forward",
                     "seconds": train_s - data_s - sum(forward.values())})
        tasks = [t for t, r in cfg.train.tasks.items() if r > 0]
        device = next(model.parameters()).device
        for task in tasks:
            say(f"evaluating {task}")
            start = time.perf_counter()
            evaluate(model, eval_ds, [task], n_samples=cfg.eval_samples, seed=cfg.eval_seed, generated=False,
                     device=device)
            tf_s = time.perf_counter() - start
            rows.append({"phase": "eval", "part": f"{task}: teacher-forced" if task != "captioning"
                         else "captioning: generated captions", "seconds": tf_s})
            if cfg.eval_generated and task in ("referring", "reasoning"):
                start = time.perf_counter()
                evaluate(model, eval_ds, [task], n_samples=cfg.eval_samples, seed=cfg.eval_seed, generated=True,
                         device=device)
                rows.append({"phase": "eval", "part": f"{task}: generated answers",
                             "seconds": time.perf_counter() - start - tf_s})
    total = time.perf_counter() - wall
    for r in rows:
        r["share"] = r["seconds"] / total
    return {"rows": rows, "total_s": total, "steps": steps, "step_time_s": result["step_time_s"],
            "data_time_s": result["data_time_s"], "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
            "config": cfg.model_dump()}
