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
