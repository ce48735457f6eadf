"""Activation strategies: which entries of the sparse vector Z^u stay active (paper Eq. 3, §5.5).

A strategy turns Z^u (shape [..., Dz]) into a boolean keep-mask. Built-in strategies live as
plugins in the top-level ``strategies/`` package, one file each; third-party packages add their
own through the ``ntbench.strategies`` entry-point group, and a suite may name a Python file
(``path/to/file.py`` or ``path/to/file.py:name``) that registers one.

All randomness comes from a :class:`Draws` object built from a seeded generator, so the same
seed gives the same masks, and a recomputation (gradient checkpointing) gives the same masks too.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import pkgutil
import threading
from importlib.metadata import entry_points
from pathlib import Path

import torch

from ntbench.registry import Registry, UnknownNameError, lazy

ENTRY_POINT_GROUP = "ntbench.strategies"


class Draws:
    """The random numbers one adapted layer may use in one forward pass.

    In training every call draws fresh numbers from generators seeded by (seed, forward pass,
    layer). In evaluation there is no rate fluctuation and per-entry noise is one fixed vector
    per layer, broadcast over tokens: a token's mask then depends on its own activations only,
    so KV-cache decoding sees the same masks as a full forward pass.

    ``rate_noise`` is the standard normal of the rate fluctuation when the caller drew it ahead
    (the neural adapter draws every layer's at the start of a pass, as a tensor on the device, so
    that a compiled forward neither breaks its graph at a generator nor recompiles for each new
    keep count). ``seed`` may be a callable: it is then only evaluated when a generator is
    needed, so strategies that use no per-entry noise never read the pass counter.
    """

    def __init__(self, seed, training: bool, device: torch.device | str = "cpu",
                 rate_noise: torch.Tensor | None = None, rate_noise_value: float | None = None):
        self.training = training
        self.device = torch.device(device)
        self._seed = seed
        self._rate_noise = rate_noise
        self._rate_noise_value = rate_noise_value  # the same number as a Python float (eager mode)
        self._cpu: torch.Generator | None = None
        self._dev: torch.Generator | None = None

    @property
    def seed(self) -> int:
        if callable(self._seed):
            self._seed = self._seed()
        return self._seed

    def _generator(self, on_device: bool) -> torch.Generator:
        # One generator object per thread and device, re-seeded by each Draws at its first use: the
        # same streams as a fresh generator per layer and pass, without allocating one each time
        # (layers run one after another, so no two Draws interleave their draws)
        if on_device:
            if self._dev is None:
                self._dev = _reused_generator(self.device).manual_seed(self.seed)
            return self._dev
        if self._cpu is None:
            self._cpu = _reused_generator(torch.device("cpu")).manual_seed(self.seed ^ 0x5EED)
            if self.training and self._rate_noise is not None:
                # the rate normal was drawn ahead from this stream: skip it, so the per-entry noise
                # is the same numbers as when the layer drew both itself
                torch.randn((), generator=self._cpu)
        return self._cpu

    def normal(self) -> float | torch.Tensor:
        """A standard normal scalar (0.0 in evaluation: no fluctuation); a 0-d tensor where the
        caller drew it ahead (:func:`rate_normal` gives the same number)."""
        if not self.training:
            return 0.0
        if self._rate_noise is not None:
            # Under torch.compile the rate is data (a 0-d tensor), so the graph does not specialise
            # on k; in eager mode a Python float keeps the cheap topk path (launch overhead of
            # a handful of tiny tensor ops per layer is what an eager step pays for)
            if torch.compiler.is_compiling():
                return self._rate_noise
            return self._rate_noise_value if self._rate_noise_value is not None else float(self._rate_noise)
        return float(torch.randn((), generator=self._generator(False)))

    def uniform(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """Uniform [0, 1) noise of ``shape`` on the layer's device (fixed per layer in eval)."""
        if self.device.type == "meta":
            return torch.empty(shape, device=self.device)
        gen = self._generator(self.device.type != "cpu")
        if self.training:
            return torch.rand(shape, generator=gen, device=self.device)
        return torch.rand(shape[-1], generator=gen, device=self.device).expand(shape)


    def uniform_like(self, z: torch.Tensor) -> torch.Tensor:
        """Uniform [0, 1) noise, one number per entry of ``z``.

        Training: fresh draws, as :meth:`uniform`. Evaluation: a hash of each entry's own value
        (at bf16 precision, so the tiny differences between a cached and a full forward rarely
        matter), its index and the layer seed. A token's noise then depends on that token alone
        (KV-cache decoding sees the same masks), yet tokens and tasks get different numbers; a
        fixed vector broadcast over tokens would give them all the same random choice."""
        if self.training or self.device.type == "meta":
            return self.uniform(z.shape)
        m32 = 0xFFFFFFFF
        bits = (z.detach().float().view(torch.int32).to(torch.int64) >> 16) & 0xFFFF
        index = torch.arange(z.shape[-1], device=z.device, dtype=torch.int64)
        h = (bits * 0x9E3779B1 + index * 0x85EBCA77 + (self.seed & m32)) & m32
        h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & m32  # murmur3-style finaliser: every input bit moves every output bit
        h = ((h ^ (h >> 12)) * 0x297A2D39) & m32
        h = h ^ (h >> 15)
        return (h.double() / 2**32).to(z.dtype if z.is_floating_point() else torch.float32)


_GENERATORS = threading.local()


def _reused_generator(device: torch.device) -> torch.Generator:
    cache = _GENERATORS.__dict__.setdefault("by_device", {})
    if device not in cache:
        cache[device] = torch.Generator(device=device)
    return cache[device]


def rate_normal(seed: int) -> float:
    """The rate-fluctuation normal that ``Draws(seed, training=True).normal()`` draws."""
    gen = _reused_generator(torch.device("cpu")).manual_seed(seed ^ 0x5EED)
    return float(torch.randn((), generator=gen))


def keep_count(rate: float | torch.Tensor, dz: int) -> int | torch.Tensor:
    """k = round(r * Dz), clamped to 1..Dz (round half up, not Python's banker's rounding).

    A tensor rate gives a 0-d int64 tensor, computed in float64 like the Python path, so both
    give the same k; a compiled graph then takes k as data instead of specialising on it."""
    if isinstance(rate, torch.Tensor):
        return torch.floor(rate.double() * dz + 0.5).clamp(1, dz).long()
    return max(1, min(dz, math.floor(rate * dz + 0.5)))


def top_k_mask(score: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Boolean mask of the k largest entries of ``score`` along the last dimension.

    For a tensor k (a per-pass draw) the mask is ``rank < k`` from one stable sort: the same set
    as ``topk`` wherever the scores have no ties, with a shape that does not depend on k."""
    if isinstance(k, torch.Tensor):
        order = score.argsort(dim=-1, descending=True, stable=True)
        ranks = torch.arange(score.shape[-1], device=score.device)
        return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, order, (ranks < k.to(score.device)).expand_as(score))
    if k >= score.shape[-1]:
        return torch.ones_like(score, dtype=torch.bool)
    idx = score.topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, idx, True)


class ActivationStrategy:
    """Base class. Subclasses implement :meth:`keep_mask`.

    Args:
        beta: target activation rate β in (0, 1].
        std_ratio: fluctuation as a fraction of β: the rate drawn per layer and forward pass
            is r ~ N(β, (std_ratio·β)²), i.e. the paper's f% = std_ratio·β (0 disables it).
    """

    name = "base"
    sparse = True  # False for strategies that keep everything (the paper's "SDR off")

    def __init__(self, beta: float = 0.4, std_ratio: float = 0.1):
        if not isinstance(beta, (int, float)) or not 0.0 < float(beta) <= 1.0:
            raise ValueError(f"beta must be in (0, 1], got {beta!r}")
        if not isinstance(std_ratio, (int, float)) or std_ratio < 0:
            raise ValueError(f"std_ratio must be >= 0, got {std_ratio!r}")
        self.beta = float(beta)
        self.std_ratio = float(std_ratio)

    def rate(self, draws: Draws) -> float | torch.Tensor:
        if self.beta >= 1.0:
            # β = 1 means every neuron (the paper's dense row); a fluctuation around 1 could only
            # go down, so half the passes would drop neurons
            return 1.0
        return self.beta * (1.0 + self.std_ratio * draws.normal())

    def keep_mask(self, z: torch.Tensor, draws: Draws) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def options(self) -> dict:
        return {"beta": self.beta, "std_ratio": self.std_ratio}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"


STRATEGIES: Registry[type[ActivationStrategy]] = Registry("activation strategy", ActivationStrategy)


def _discover() -> None:
    import strategies as builtin  # the top-level plugin package shipped with ntbench

    for info in pkgutil.iter_modules(builtin.__path__):
        importlib.import_module(f"strategies.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, type) and issubclass(obj, ActivationStrategy) and ep.name not in STRATEGIES:
            STRATEGIES.register(ep.name, obj)


discover_strategies = lazy(_discover)


_LOADED_FILES: dict[Path, list[str]] = {}


def load_strategy_file(path: str | Path) -> list[str]:
    """Import a plugin file once; returns the names it registered."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"strategy plugin file not found: {path}")
    key = path.resolve()
    if key in _LOADED_FILES:
        return _LOADED_FILES[key]
    before = set(STRATEGIES.names())
    spec = importlib.util.spec_from_file_location(f"ntbench_plugin_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    _LOADED_FILES[key] = sorted(set(STRATEGIES.names()) - before)
    return _LOADED_FILES[key]


def strategy_class(spec: str) -> type[ActivationStrategy]:
    """Resolve a registered name, or ``file.py`` / ``file.py:name`` of a plugin file."""
    discover_strategies()
    file_part, _, name = spec.partition(":") if ".py" in spec else ("", "", spec)
    if file_part:
        new = load_strategy_file(file_part)
        if not name:
            if len(new) != 1:
                raise ValueError(f"{file_part} registered {new or 'no strategies'}; "
                                 f"name one as {file_part}:NAME")
            name = new[0]
    return STRATEGIES.get(name)


def make_strategy(spec: str = "gaussian", beta: float = 0.4, **options) -> ActivationStrategy:
    """Build a strategy by name with β and its own options (clear error on unknown options)."""
    cls = strategy_class(spec)
    try:
        return cls(beta=beta, **options)
    except TypeError as exc:
        raise ValueError(f"bad options for activation strategy {spec!r}: {exc}") from None


__all__ = ["ActivationStrategy", "Draws", "STRATEGIES", "UnknownNameError", "keep_count",
           "make_strategy", "rate_normal", "strategy_class", "top_k_mask", "discover_strategies"]
