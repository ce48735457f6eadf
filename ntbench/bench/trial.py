"""Trial benchmark: one whole trial, phase by phase, and where its wall time goes."""
from __future__ import annotations

import platform
import time
from typing import Any, Callable

import torch


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
    from ntbench.train.trainer import deterministic_kernels, resolve_device, train
    from ntbench.train.trial import build_model, resolve_data

    say = progress or (lambda msg: None)
    rows: list[dict[str, Any]] = []
    wall = time.perf_counter()
    with deterministic_kernels(cfg.train.deterministic, resolve_device(cfg.train.device)):
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
        # with batches built ahead on a thread (train.prefetch), the step waits only for what that did not hide
        waited = "batch building" if not result.get("prefetch") else f"waiting for batches (prefetch {result['prefetch']})"
        rows.append({"phase": "train", "part": f"{waited} (median x steps)", "seconds": data_s})
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
            "data_time_s": result["data_time_s"], "prefetch": result.get("prefetch", 0), "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
            "config": cfg.model_dump()}
