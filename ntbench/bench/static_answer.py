"""One reasoning-segmentation answer at batch 1 with a static KV cache, optionally replayed from CUDA graphs.

Eager Hugging Face decoding at LLaMA-2-7B shape is bound by the CPU launching kernels: 32 ms a
token on an H200 (results/gpu/2026-11-27), where reading the 13.5 GB of weights once takes about
3 ms. A CUDA graph records every kernel of one step once and replays them all with one launch.
That needs fixed shapes and fixed addresses, so this path keeps everything static:

- transformers' ``StaticCache``: preallocated keys and values, and a position counter that is a
  device tensor the recorded step advances itself;
- static input buffers (the image, the prompt ids, the current token);
- an attention mask computed inside the step from that counter, so it is right both when the
  step runs eagerly and when it is replayed;
- the greedy argmax written back into the token buffer inside the step, so that successive
  replays chain with no host work at all. Only the last answer token is forced to ``<OBJ-1>`` by
  a write into the buffer before its replay.

Four parts, as in :func:`ntbench.bench.paper_scale.latency_benchmark`: image encode, prefill,
decode (``answer_tokens`` steps), mask decode. ``graphs=False`` runs the same static code eagerly
(any device; the tests compare it with the dynamic-cache path on CPU).
"""
from __future__ import annotations

from typing import Callable

import torch


class StaticAnswerer:
    """Answers one fixed question (image + prompt, batch 1) again and again, part by part, for timing.

    ``graphs``: after two eager warm-ups each part is recorded as a CUDA graph and replayed from then
    on. ``compile_step`` / ``compile_prefill``: that part goes through ``torch.compile`` first.
    :meth:`answer` returns the tokens the decode steps read, the last ``<OBJ-1>`` state and the mask.
    """

    def __init__(self, model, batch: dict, answer_tokens: int, obj_id: int, graphs: bool,
                 compile_step: bool = False, compile_prefill: bool = False):
        from transformers import StaticCache

        if graphs and batch["images"].device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device; use graphs=False (the static cache, run eagerly)")
        if batch["input_ids"].shape[0] != 1:
            raise ValueError("the static answerer measures batch 1")
        self.model, self.answer_tokens, self.obj_id = model, answer_tokens, obj_id
        device = batch["images"].device
        self.batch = {k: v.clone() for k, v in batch.items()}  # static inputs: replays read these addresses
        self.prompt_len = model.image_tokens + batch["input_ids"].shape[1]
        self.max_len = self.prompt_len + answer_tokens
        self.cache = StaticCache(config=model.llm.config, max_cache_len=self.max_len)
        self.positions = torch.arange(self.max_len, device=device)
        self.token = torch.zeros(1, dtype=torch.long, device=device)
        self.tokens = torch.zeros(answer_tokens, dtype=torch.long, device=device)  # every token the steps read
        self.size = (model.image_size, model.image_size)
        self.graphs: dict[str, torch.cuda.CUDAGraph] = {}
        self.vision = self.hidden = self.masks = None
        # torch.compile fuses the decode step's small kernels (norms, rotary, the adapter's mask); a CUDA
        # graph then replays the fused kernels. Shapes never change, so it compiles once (first warm-up).
        # The prefill likewise, optionally: it is one call per answer, so compiling it pays less
        self.step_fn = torch.compile(self._step, dynamic=False) if compile_step else self._step
        self.prefill_fn = torch.compile(self._prefill, dynamic=False) if compile_prefill else self._prefill
        if graphs:
            self._capture()

    # -- the four parts, as plain code (run eagerly, or recorded once and replayed) ------------
    def _encode(self) -> None:
        self.vision = self.model.encode_images(self.batch["images"])

    def _prefill(self) -> None:
        self._restart_cache()
        inputs, _, _ = self.model._inputs(self.batch, self.vision)
        mask = (self.positions < self.prompt_len).long()[None]  # padding mask over the whole cache
        out = self.model.llm(inputs_embeds=inputs, attention_mask=mask, output_hidden_states=True,
                             **self.model._cache_kw(self.cache))
        logits = self.model._logits(out.logits[:, -1:], out.hidden_states[-1][:, -1:])
        self.token.copy_(logits[:, -1].argmax(-1))

    def _restart_cache(self) -> None:
        # a new answer writes from position 0: zero each layer's position counter (inside the recorded
        # prefill, so a replay does it too); stale keys and values past the counter are masked out
        for layer in self.cache.layers:
            counter = getattr(layer, "cumulative_length", None)
            if isinstance(counter, torch.Tensor):
                counter.zero_()
            elif getattr(layer, "is_initialized", False):
                raise RuntimeError(f"{type(layer).__name__} keeps no position counter tensor; "
                                   "this transformers version's StaticCache is not supported")

    def _step(self) -> None:
        seen = self.cache.get_seq_length()  # a device tensor for a static cache: no host sync
        if not isinstance(seen, torch.Tensor):
            raise RuntimeError("the static cache is empty: prefill first")
        mask = (self.positions <= seen).long()[None]
        self.tokens.index_copy_(0, (seen - self.prompt_len).view(1), self.token)
        out = self.model.llm(inputs_embeds=self.model.embed_text(self.token[:, None]), attention_mask=mask,
                             output_hidden_states=True, **self.model._cache_kw(self.cache))
        self.hidden = out.hidden_states[-1]
        self.token.copy_(self.model._logits(out.logits, self.hidden)[:, -1].argmax(-1))

    def _mask(self) -> None:
        rows = torch.zeros(1, dtype=torch.long, device=self.hidden.device)
        self.masks = self.model.predict_masks(self.hidden, self.vision, rows, rows, self.size)

    # -- running ---------------------------------------------------------------------------------
    def _run(self, part: str, fn: Callable[[], None]) -> None:
        graph = self.graphs.get(part)
        if graph is not None:
            graph.replay()
        else:
            fn()

    def part(self, name: str) -> None:
        """Run one part: ``image encode``, ``prefill``, ``decode`` (every answer step) or ``mask decode``."""
        if name == "image encode":
            self._run(name, self._encode)
        elif name == "prefill":
            self._run(name, self.prefill_fn)
        elif name == "decode":
            for i in range(self.answer_tokens):
                if i == self.answer_tokens - 1:
                    self.token.fill_(self.obj_id)  # random weights choose no meaningful word: force <OBJ-1>
                self._run("step", self.step_fn)
        elif name == "mask decode":
            self._run(name, self._mask)
        else:
            raise ValueError(f"unknown part {name!r}")

    def answer(self) -> dict[str, torch.Tensor]:
        for name in ("image encode", "prefill", "decode", "mask decode"):
            self.part(name)
        return {"tokens": self.tokens.clone(), "hidden": self.hidden.clone(), "masks": self.masks.clone()}

    def _capture(self) -> None:
        # warm-up on a side stream, as CUDA graph capture requires: cuBLAS workspaces, the cache's lazy
        # allocation and every autotuned choice happen before recording
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.answer()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        # record in the order the parts run: each graph reads the outputs the one before recorded
        # (self.vision, self.hidden are the recorded tensors from here on)
        for name, fn in (("image encode", self._encode), ("prefill", self.prefill_fn), ("step", self.step_fn),
                         ("mask decode", self._mask)):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            self.graphs[name] = graph
        torch.cuda.synchronize()


__all__ = ["StaticAnswerer"]
