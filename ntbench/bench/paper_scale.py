"""Paper-scale checks with random weights: end-to-end latency of one reasoning-segmentation pair,
and a short trial of each adapter through the real trainer (a smoke run of the path, no quality).

Both take a backbone preset (``random-7b``: LLaMA-2-7B + CLIP ViT-L/14 shapes; ``random-tiny`` for
tests), so nothing is downloaded and the cost is the real model's.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

LATENCY_PARTS = ("image encode", "prefill", "decode", "mask decode")
LATENCY_MODES = ("eager", "static", "graphs")


def _timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def latency_benchmark(backbone: str = "random-7b", prompt_tokens: int = 32, answer_tokens: int = 8,
                      repeats: int = 10, warmup: int = 3, dtype: str = "bfloat16", adapter: str = "neural",
                      adapter_options: dict | None = None, mode: str = "eager", compile_decode: bool = False,
                      compile_prefill: bool = False,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Wall time of answering one reasoning-segmentation question at batch 1.

    Parts: the image through the vision encoder and the projection; the prefill of [image tokens;
    prompt]; greedy decoding of ``answer_tokens`` tokens with the KV cache, the last of them forced
    to ``<OBJ-1>`` (random weights choose no meaningful word); the mask decoder on the ``<OBJ-1>``
    state. The LLM and the vision encoder run in ``dtype``, the heads under autocast.

    ``mode``: ``eager`` (Hugging Face's dynamic cache, as :meth:`AllInTokenModel.generate`),
    ``static`` (a static cache, every part run eagerly) or ``graphs`` (the static parts replayed
    from CUDA graphs; CUDA only). See :mod:`ntbench.bench.static_answer`. The static modes also
    report whether their answer tokens equal the eager path's. ``compile_decode`` and
    ``compile_prefill`` (static modes): that part goes through ``torch.compile`` first (the set-up
    time, compilation included, is reported).
    """
    if mode not in LATENCY_MODES:
        raise ValueError(f"unknown latency mode {mode!r}; allowed: {', '.join(LATENCY_MODES)}")
    if (compile_decode or compile_prefill) and mode == "eager":
        raise ValueError("compiling a part needs a static cache: mode 'static' or 'graphs'")
    from ntbench.model.allintoken import AllInTokenModel
    from ntbench.model.backbone import load_backbone
    from ntbench.model.tasks import obj_token

    say = progress or (lambda msg: None)
    say("building the model")
    bb = load_backbone(backbone)
    device = next(bb.llm.parameters()).device
    bb.llm.to(getattr(torch, dtype))
    bb.vision.to(getattr(torch, dtype))
    model = AllInTokenModel(bb, adapter, adapter_options, seed=0).to(device).eval()
    size = model.image_size
    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.randint(0, 256, (1, 3, size, size), generator=g, dtype=torch.uint8).to(device),
             "input_ids": torch.randint(4, model.base_vocab, (1, prompt_tokens), generator=g).to(device),
             "text_mask": torch.ones(1, prompt_tokens, dtype=torch.long, device=device),
             "uses_image": torch.ones(1, dtype=torch.bool, device=device)}
    obj = model.tokenizer.convert_tokens_to_ids(obj_token(1))
    # no autocast weight cache: CUDA graph capture forbids it, and all modes must run the same kernels
    autocast = torch.autocast(device.type, dtype=getattr(torch, dtype), enabled=device.type == "cuda",
                              cache_enabled=False)
    eager_tokens: list[torch.Tensor] = []

    def answer() -> dict[str, float]:
        parts = {}
        eager_tokens.clear()
        with torch.no_grad(), autocast:
            vision, parts["image encode"] = _timed(device, lambda: model.encode_images(batch["images"]))
            (logits, hidden, off, cache), parts["prefill"] = _timed(device, lambda: model._prefill(batch, vision))

            def decode():
                nonlocal logits, cache
                mask, state = batch["text_mask"], hidden
                for i in range(answer_tokens):
                    token = logits[:, -1].argmax(-1) if i < answer_tokens - 1 else torch.full((1,), obj, device=device)
                    eager_tokens.append(token)
                    mask = torch.cat([mask, mask[:, -1:]], dim=1)
                    logits, state, cache = model._extend(token, batch, mask, vision, cache)
                return state
            state, parts["decode"] = _timed(device, decode)
            rows = torch.zeros(1, dtype=torch.long, device=device)
            _, parts["mask decode"] = _timed(device, lambda: model.predict_masks(
                state, vision, rows, torch.full((1,), state.shape[1] - 1, device=device), (size, size)))
        return parts

    extra = {}
    measured = answer
    if mode != "eager":
        from ntbench.bench.static_answer import StaticAnswerer

        answer()  # the eager path's tokens, to compare with
        reference = torch.cat(eager_tokens)
        with torch.no_grad(), autocast:
            say("recording CUDA graphs" if mode == "graphs" else "building the static cache")
            start = time.perf_counter()
            static = StaticAnswerer(model, batch, answer_tokens, obj, graphs=mode == "graphs",
                                    compile_step=compile_decode, compile_prefill=compile_prefill)
            tokens = static.answer()["tokens"]
            extra["setup_s"] = round(time.perf_counter() - start, 1)  # warm-up, compile and capture
        extra["tokens_match_eager"] = bool(torch.equal(tokens, reference))
        extra.update(compile_decode=compile_decode, compile_prefill=compile_prefill)

        def measured() -> dict[str, float]:
            with torch.no_grad(), autocast:
                return {part: _timed(device, lambda: static.part(part))[1] for part in LATENCY_PARTS}
    for i in range(warmup):
        say(f"warm-up {i + 1}/{warmup}")
        measured()
    runs = []
    for i in range(repeats):
        say(f"run {i + 1}/{repeats}")
        runs.append(measured())
    rows = []
    for part in (*LATENCY_PARTS, "total"):
        values = [sum(r.values()) if part == "total" else r[part] for r in runs]
        rows.append({"part": part, "median_ms": round(1000 * statistics.median(values), 2),
                     "min_ms": round(1000 * min(values), 2), "max_ms": round(1000 * max(values), 2)})
    return {"rows": rows, "mode": mode, **extra, "backbone": bb.name, "dtype": dtype, "adapter": adapter,
            "prompt_tokens": prompt_tokens,
            "image_tokens": int(vision_tokens(model)), "answer_tokens": answer_tokens, "repeats": repeats,
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__}


def vision_tokens(model) -> int:
    cfg = model.vision.config
    return (cfg.image_size // cfg.patch_size) ** 2


def paper_trial_smoke(suite_path: str | Path, backbone: str = "random-7b", steps: int = 20,
                      data: str = "microworld:64", eval_samples: int = 4, out: str | Path | None = None,
                      progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Each adapter of a paper suite's ``adapter`` axis trained ``steps`` steps on ``backbone`` with the
    suite's other settings, through the same ``run_trial`` as every suite: a check that the path runs
    at this scale (bf16 autocast, activation checkpointing on CUDA) and what it costs, not a result."""
    from ntbench.suite import load_suite, resolve
    from ntbench.train.trial import TrialConfig, run_trial

    say = progress or (lambda msg: None)
    suite = load_suite(suite_path)
    rows = []
    for adapter in suite.axes.get("adapter", ["neural"]):
        config = resolve(suite, {"adapter": adapter})
        config.update(backbone=backbone, vision=None, data=data, eval_samples=eval_samples, eval_generated=False)
        config["train"] = {**config.get("train", {}), "steps": steps, "warmup": max(1, steps // 10)}
        cfg = TrialConfig(**config)
        say(f"{adapter}: {steps} steps on {backbone}")
        gc.collect()  # the previous adapter's model must be gone, or its memory counts in this one's peak
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        start = time.perf_counter()
        try:
            result = run_trial(cfg, Path(out) / adapter if out else None)
            train = result["train"]
            finite = [v for v in _numbers(result.get("metrics", {}))]
            rows.append({"adapter": adapter, "ok": True, "steps": train["steps_run"],
                         "step_time_s": train["step_time_s"], "peak_memory_mb": train["peak_memory_mb"],
                         "gradient_checkpointing": train.get("gradient_checkpointing"),
                         "loss_first": result["loss_first"]["loss"], "loss_last": result["loss_last"]["loss"],
                         "tflops_per_step": train.get("tflops_per_step"), "trainable_params": result["trainable_params"],
                         "metrics_finite": f"{sum(math.isfinite(v) for v in finite)}/{len(finite)}",
                         "wall_s": round(time.perf_counter() - start, 1)})
        except Exception as exc:  # a smoke run reports every adapter, also after one fails
            rows.append({"adapter": adapter, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500],
                         "wall_s": round(time.perf_counter() - start, 1)})
    return rows


def _numbers(d: dict) -> list[float]:
    out = []
    for v in d.values():
        if isinstance(v, dict):
            out += _numbers(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out
