"""Light task heads: the mask decoder (segmentation) and the generation head (text-to-image).

Mask decoder, after the reference design (shared/notes/reference-code.md), scaled to any
encoder: the task token's hidden state is first whitened (``StateWhitening``); each chosen vision layer's patch features are projected to ``width`` and added to a
running state, followed by one pre-LN transformer layer; the task token's hidden state
conditions the state through FiLM at the first (deepest) layer; the patch grid is then upsampled
by three convolutional stages to the image size.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class StateWhitening(nn.Module):
    """ZCA whitening of the task token's hidden state with running statistics: BatchNorm's idea
    across dimensions instead of per dimension.

    Why: an LLM's last hidden states are strongly anisotropic. On the micro backbone the singular
    values of the centred states span 8.4 to 0.002, and the words that say *which* object to
    segment live in low-variance directions: a linear probe read the target's shape at 0.99 from
    whitened states but 0.49-0.66 from layer-normed or standardised ones after the same 900 Adam
    steps, and a decoder fed the raw state settled on the all-objects mask
    (results/micro/diagnosis/diagnosis.md, section 7). BERT-whitening fixes the same anisotropy
    for sentence embeddings.

    The statistics are buffers, updated in training mode without gradient (a cumulative average
    for the first 1/momentum batches, then an exponential one, so they follow an LLM being
    tuned); the gradient flows through the fixed affine map. ``eps`` is relative to the largest
    eigenvalue and caps how much a near-empty direction is amplified.
    """

    def __init__(self, width: int, momentum: float = 0.01, eps: float = 1e-4, refresh_every: int | None = None):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        # eigh of a width x width matrix each step is free at micro sizes, not at 4096
        self.refresh_every = refresh_every or (1 if width <= 1024 else 20)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("second_moment", torch.eye(width))
        self.register_buffer("transform", torch.eye(width))
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        self.batches_seen += 1
        rate = max(self.momentum, 1.0 / float(self.batches_seen))
        self.mean.lerp_(x.mean(0), rate)
        self.second_moment.lerp_(x.T @ x / x.shape[0], rate)
        if int(self.batches_seen) % self.refresh_every == 0 or int(self.batches_seen) == 1:
            cov = self.second_moment - torch.outer(self.mean, self.mean)
            lam, vec = torch.linalg.eigh((cov + cov.T) / 2)
            lam = lam.clamp(min=0) + self.eps * lam.max().clamp(min=1e-12)
            self.transform.copy_(vec @ torch.diag(lam.rsqrt()) @ vec.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):  # low-variance directions need fp32
            x = x.float()
            if self.training and x.shape[0] > 1:
                self._update(x.detach())
            return (x - self.mean) @ self.transform


class PixelRefiner(nn.Module):
    """Token-conditioned CNN over the pixels (and the coarse mask) at half the image size: four
    residual 3x3 convolutions with dilations 1, 2, 4, 8 (receptive field 31 px), FiLM by the task
    token before each. Why: the micro vision encoder's 8-px patches do not let the decoder find an
    object by its *shape*; with this path and ~1200 steps it starts to
    (results/micro/diagnosis/diagnosis.md). Off by default."""

    def __init__(self, llm_width: int, channels: int = 32):
        super().__init__()
        self.inp = nn.Conv2d(3 + 1, channels, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in (1, 2, 4, 8))
        self.films = nn.ModuleList(nn.Linear(llm_width, 2 * channels) for _ in range(len(self.convs) + 1))
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, token_state: torch.Tensor, pixels: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """pixels [N, 3, h, w] at any size; coarse: the decoder's mask logits [N, H, W]."""
        size = tuple(coarse.shape[-2:])
        half = (max(1, size[0] // 2), max(1, size[1] // 2))
        h = self.inp(torch.cat([F.interpolate(pixels, size=half, mode="bilinear", align_corners=False),
                                F.interpolate(coarse[:, None], size=half, mode="bilinear", align_corners=False)], 1))
        for i, film in enumerate(self.films):
            scale, shift = film(token_state).chunk(2, dim=-1)
            h = F.relu(h * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
            if i < len(self.convs):
                h = h + self.convs[i](h)
        return coarse + F.interpolate(self.out(h), size=size, mode="bilinear", align_corners=False)[:, 0]


DEFAULT_DECODER_WIDTH = 64


class MaskDecoder(nn.Module):
    def __init__(self, llm_width: int, vision_width: int, n_layers: int, width: int = DEFAULT_DECODER_WIDTH,
                 heads: int = 4, pixel_refiner: bool = False, whiten_state: bool = True):
        super().__init__()
        self.whiten = StateWhitening(llm_width) if whiten_state else nn.Identity()
        self.refiner = PixelRefiner(llm_width) if pixel_refiner else None
        self.reduce = nn.ModuleList(nn.Linear(vision_width, width) for _ in range(n_layers))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(n_layers))
        self.film = nn.Linear(llm_width, 2 * width)
        # token-to-patch similarity: a direct "where is it" map, added as an input channel
        self.query = nn.Linear(llm_width, width)
        self.key = nn.Linear(width, width)
        self.head = nn.Sequential(
            nn.Conv2d(width + 1, width, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, width // 2, 2, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(width // 2, width // 4, 2, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(width // 4, width // 4, 2, stride=2), nn.ReLU())
        # pixel skip path: object boundaries at full resolution come from the image itself
        self.pixels = nn.Sequential(nn.Conv2d(3, width // 4, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(width // 2, 1, 3, padding=1)

    # not part of a shipped prior (ntbench.micro.seg_prior): the whitening's statistics are those of
    # the tuned LLM's states, and the optional refiner is not pretrained
    UNSHIPPED = ("whiten.", "refiner.")

    def prior_state(self) -> dict[str, torch.Tensor]:
        """The tensors a pretrained prior ships: all but the whitening statistics and the refiner."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.UNSHIPPED)}

    def load_prior(self, state: dict[str, torch.Tensor]) -> bool:
        """Start from a shipped prior when this decoder has its shapes (True); otherwise, e.g. another
        ``width``, stay as initialised (False)."""
        own = self.prior_state()
        if set(own) != set(state) or any(own[k].shape != v.shape for k, v in state.items()):
            return False
        self.load_state_dict(state, strict=False)
        return True

    def forward(self, token_state: torch.Tensor, vision_layers: list[torch.Tensor], size: tuple[int, int],
                pixels: torch.Tensor | None = None) -> torch.Tensor:
        """token_state [N, H_llm]; vision_layers: per layer [N, P, D_vis] patch features (no CLS);
        pixels: the normalised images [N, 3, h, w] (optional skip path).

        Returns mask logits [N, *size].
        """
        token_state = self.whiten(token_state)
        x = None
        for i, (feats, reduce, block) in enumerate(zip(vision_layers, self.reduce, self.blocks)):
            x = reduce(feats) if x is None else x + reduce(feats)
            if i == 0:
                scale, shift = self.film(token_state).chunk(2, dim=-1)
                x = x * (1 + scale[:, None]) + shift[:, None]
            x = block(x)
        n, p, w = x.shape
        g = int(math.isqrt(p))
        sim = torch.einsum("nd,npd->np", self.query(token_state), self.key(x)) / math.sqrt(w)
        grid = torch.cat([x.transpose(1, 2).reshape(n, w, g, g), sim.view(n, 1, g, g)], dim=1)
        feats = F.interpolate(self.head(grid), size=size, mode="bilinear", align_corners=False)
        if pixels is None:
            skip = torch.zeros(n, feats.shape[1], *size, device=feats.device, dtype=feats.dtype)
        else:
            skip = self.pixels(F.interpolate(pixels, size=size, mode="bilinear", align_corners=False))
        logits = self.out(torch.cat([feats, skip], dim=1))[:, 0]
        if self.refiner is not None and pixels is not None:
            logits = self.refiner(token_state, pixels, logits)
        return logits


class GenerationHead(nn.Module):
    """MLP from the <GEN> hidden state to the frozen vision encoder's image-embedding space."""

    def __init__(self, llm_width: int, embed_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(llm_width, 2 * llm_width), nn.GELU(), nn.Linear(2 * llm_width, embed_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean soft Dice loss over masks; logits and target [N, H, W]."""
    prob = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    inter = (prob * t).sum(-1)
    return (1 - (2 * inter + eps) / (prob.sum(-1) + t.sum(-1) + eps)).mean()
