"""The neural-tuning adapter (paper §3.2, Eq. 1-5), attached to any HF causal LM by module name.

Per adapted layer k, on the attention input H (what the q/k/v projections receive):

    Z_k   = W_z H                                  (Eq. 1)
    Z^u_k = α Z^u_{k-1} + (1 - α) Z_k              (Eq. 2, the chain starts at the first adapted layer)
    Z^a_k = Z^u_k masked by the activation strategy (Eq. 3: top round(r·Dz), r ~ N(β, (0.1β)²))
    Z^b_k = W_b Z^a_k, split in q, k, v order and added to the targeted projections (Eq. 4-5)

``chunking="reference"`` reproduces the released code's split: with targets ``qkv`` it adds
chunk 1 to both K and V and never reads chunk 2 (``chunk_sources``); W_b keeps its three chunks,
so the parameter count is the reference's.

Each attention module gets a child ``neural_tuning`` (:class:`NeuralTuningLayer`, holding
``w_z`` and ``w_b``) and its targeted projections are replaced by :class:`AdaptedProjection`
wrappers around the original Linear. The model class is never touched.

State shared across layers (the EMA chain, the forward-pass counter) lives in one
:class:`SparseVectorState`; a forward pre-hook on the adapted model starts each pass. Random
draws are seeded by (seed, pass, layer), so a layer recomputed by gradient checkpointing makes
the same draws, and the carried Z^u of the previous layer is kept per layer for the same reason.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ntbench.adapters.options import NeuralOptions
from ntbench.adapters.sites import AttentionSite, find_attention_sites, select_sites
from ntbench.strategies import ActivationStrategy, Draws, make_strategy, rate_normal

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, pass, layer) over 63 bits


def mix_seed(*parts: int) -> int:
    h = 0
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * _MIX + 0x632BE59BD9B4E019) & 0x7FFFFFFFFFFFFFFF
    return h


class SparseVectorState:
    """What the adapted layers share within one forward pass.

    A training pass starts by drawing every layer's rate fluctuation at once (the same numbers a
    per-layer draw gives) and moving them to the device in one non-blocking copy. The layers then
    read tensors only: no generator, no host-device synchronisation and no Python value that
    changes from pass to pass, so ``torch.compile`` traces the adapted layers without a graph
    break and without recompiling each step.
    """

    def __init__(self, seed: int, n_layers: int = 0):
        self.seed = seed
        self.n_layers = n_layers
        self.anchor: torch.Tensor | None = None  # a parameter of the adapted layers: where they live now
        self.forward_pass = 0
        self.carried: dict[int, torch.Tensor] = {}  # layer index -> Z^u_k of this pass
        # layer -> (input H, Z^b_k, readers still to come): q and v share one Z^b_k; the entry goes
        # once its last reader took it, so it does not outlive its use (activation checkpointing)
        self.deltas: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self.rate_noise: torch.Tensor | None = None  # [n_layers] standard normals of this pass
        self.rate_noise_values: list[float] = []  # the same as Python floats
        # optional observer of every keep-mask: (layer index, bool mask [..., Dz]) -> None;
        # the evaluator uses it for per-task activation frequencies (paper Figure 2b)
        self.observer: Callable[[int, torch.Tensor], None] | None = None

    @torch.compiler.disable
    def start_pass(self, module: nn.Module | None = None, *_args, **_kwargs) -> None:
        # only training passes advance the counter: evaluating in the middle of training
        # (eval_every) must not shift the masks of the training steps that follow
        training = module is None or module.training
        if training:
            self.forward_pass += 1
            self.rate_noise_values = [rate_normal(self.layer_seed(k)) for k in range(self.n_layers)]
            noise = torch.tensor(self.rate_noise_values, dtype=torch.float64)
            device = self.anchor.device if self.anchor is not None else torch.device("cpu")
            if device.type == "cuda":  # pinned + non_blocking: the copy does not wait for the GPU
                noise = noise.pin_memory()
            self.rate_noise = noise.to(device, non_blocking=True)
        self.carried.clear()
        self.deltas.clear()

    def layer_seed(self, layer: int) -> int:
        return mix_seed(self.seed, self.forward_pass, layer)

    def draws(self, layer: int, training: bool, device: torch.device) -> Draws:
        if not training:
            # evaluation draws do not depend on the pass, so cached decoding sees the same masks
            return Draws(mix_seed(self.seed, -1, layer), False, device)
        if self.rate_noise is None or layer >= len(self.rate_noise_values):
            return Draws(lambda: self.layer_seed(layer), True, device)
        return Draws(lambda: self.layer_seed(layer), True, device, rate_noise=self.rate_noise[layer],
                     rate_noise_value=self.rate_noise_values[layer])


class NeuralTuningLayer(nn.Module):
    """The sparse task network of one attention layer: ``w_z`` (Dh→Dz) and ``w_b`` (Dz→Σ widths)."""

    def __init__(self, index: int, site: AttentionSite, opts: NeuralOptions,
                 strategy: ActivationStrategy, state: SparseVectorState, targets: str):
        super().__init__()
        ref = next(site.module.parameters())
        kw = {"device": ref.device, "dtype": ref.dtype}
        self.index = index
        self.targets = targets
        self.widths = [site.widths[t] for t in targets]
        self.alpha, self.ema, self.threshold = opts.alpha, opts.ema, opts.threshold
        self.sparsify_at_inference = opts.sparsify_at_inference
        self.w_z = nn.Linear(site.in_features, opts.dz, bias=False, **kw)
        self.w_b = nn.Linear(opts.dz, sum(self.widths), bias=False, **kw)
        if opts.init_wb == "zero":
            nn.init.zeros_(self.w_b.weight)
        self.norm = nn.RMSNorm(opts.dz, **kw) if opts.norm else None
        self.dropout = nn.Dropout(opts.dropout) if opts.dropout > 0 else nn.Identity()  # no kernel when off
        self.strategy = strategy
        self.readers = 1 if site.fused else len(targets)  # projections that add this layer's Z^b
        object.__setattr__(self, "_state", state)  # shared, not a submodule

    def sparse_vector(self, h: torch.Tensor) -> torch.Tensor:
        """Z^a_k for attention input ``h``; stores Z^u_k for the next layer."""
        state: SparseVectorState = self._state
        z = self.w_z(h)
        if self.ema and self.index > 0:
            prev = state.carried.get(self.index - 1)
            if prev is None:
                raise RuntimeError(f"neural tuning layer {self.index} ran before layer {self.index - 1} "
                                   "in this forward pass; layers must run in order")
            z = self.alpha * prev + (1.0 - self.alpha) * z
        if self.norm is not None:
            z = self.norm(z)
        state.carried[self.index] = z
        if not (self.training or self.sparsify_at_inference):
            return z
        keep = self.strategy.keep_mask(z.detach(), state.draws(self.index, self.training, z.device))
        if state.observer is not None:
            state.observer(self.index, keep)
        if not self.strategy.sparse:
            return z
        if self.threshold == "soft":
            # relu(z - t) with t the largest dropped value (the reference code's kthvalue);
            # rows where nothing is dropped pass through unchanged
            t = z.detach().masked_fill(keep, float("-inf")).amax(-1, keepdim=True)
            z = torch.where(torch.isfinite(t), torch.relu(z - t.nan_to_num(neginf=0.0)), z)
        return torch.where(keep, z, 0.0)  # one kernel; masked_fill(~keep) needs two

    def delta(self, h: torch.Tensor) -> torch.Tensor:
        """Z^b_k = dropout(W_b Z^a_k), computed once per input and shared by the q/k/v wrappers."""
        state: SparseVectorState = self._state
        cached = state.deltas.pop(self.index, None)
        if cached is not None and cached[0] is h:
            if cached[2] > 1:
                state.deltas[self.index] = (h, cached[1], cached[2] - 1)
            return cached[1]
        out = self.dropout(self.w_b(self.sparse_vector(h)))
        if self.readers > 1:
            state.deltas[self.index] = (h, out, self.readers - 1)
        return out

    def extra_repr(self) -> str:
        return f"index={self.index}, targets={self.targets!r}, widths={self.widths}, strategy={self.strategy}"


def chunk_sources(targets: str, widths: list[int], chunking: str) -> dict[str, slice]:
    """Which columns of Z^b_k each target adds. ``paper``: chunk i goes to the i-th target (q, k, v
    order). ``reference``: the released code's 'qkv' mode gives V the K chunk (chunk 1), so chunk 2
    is unused; its 'qv' and 'kv' modes split as the paper does."""
    starts = [sum(widths[:i]) for i in range(len(widths))]
    out = {t: slice(s, s + w) for t, s, w in zip(targets, starts, widths)}
    if chunking == "reference" and targets == "qkv":
        out["v"] = out["k"]  # k and v have the same width (both num_key_value_heads * head_dim)
    return out


class AdaptedProjection(nn.Module):
    """Wraps a q/k/v (or fused qkv) Linear: output + the matching columns of Z^b_k."""

    def __init__(self, base_layer: nn.Module, layer: NeuralTuningLayer, source: slice | None,
                 columns: torch.Tensor | None = None, gather: torch.Tensor | None = None):
        super().__init__()
        self.base_layer = base_layer
        object.__setattr__(self, "_layer", layer)  # owned by the attention module, not by us
        self.source = source
        device = next(base_layer.parameters()).device
        if columns is not None:
            self.register_buffer("columns", columns.to(device), persistent=False)
        else:
            self.columns = None
        # fused projection whose targets do not read Z^b_k's columns in order (reference chunking)
        if gather is not None:
            self.register_buffer("gather", gather.to(device), persistent=False)
        else:
            self.gather = None

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        d = self._layer.delta(x)
        if self.columns is None:
            return out + d[..., self.source]
        if self.gather is not None:
            d = d.index_select(-1, self.gather)
        return out.index_add(-1, self.columns, d.to(out.dtype))


def attach_neural(model: nn.Module, opts: NeuralOptions) -> list[NeuralTuningLayer]:
    """Attach neural tuning to ``model`` in place; returns the new layers in order."""
    sites = select_sites(find_attention_sites(model, opts.module_filter), opts.first_layer)
    state = SparseVectorState(opts.seed if opts.seed is not None else 0, len(sites))
    strategy = make_strategy(opts.strategy, beta=opts.beta, **opts.strategy_options)
    layers = []
    for index, site in enumerate(sites):
        layer = NeuralTuningLayer(index, site, opts, strategy, state, opts.targets)
        site.module.add_module("neural_tuning", layer)
        sources = chunk_sources(opts.targets, layer.widths, opts.chunking)
        if site.fused:
            cols = torch.cat([site.fused_columns[t] for t in opts.targets])
            gather = torch.cat([torch.arange(sources[t].start, sources[t].stop) for t in opts.targets])
            in_order = torch.equal(gather, torch.arange(len(gather)))
            base = getattr(site.module, site.fused)
            setattr(site.module, site.fused, AdaptedProjection(base, layer, None, cols, None if in_order else gather))
        else:
            for t in opts.targets:
                child = site.separate[t]
                base = getattr(site.module, child)
                setattr(site.module, child, AdaptedProjection(base, layer, sources[t]))
        layers.append(layer)
    if layers:
        state.anchor = layers[0].w_z.weight
    model.register_forward_pre_hook(state.start_pass)
    return layers


def neural_layers(model: nn.Module) -> list[NeuralTuningLayer]:
    """The neural-tuning layers of an adapted model, in layer order."""
    return [m for m in model.modules() if isinstance(m, NeuralTuningLayer)]


def sparse_vector_state(model: nn.Module) -> SparseVectorState | None:
    layers = neural_layers(model)
    return layers[0]._state if layers else None
