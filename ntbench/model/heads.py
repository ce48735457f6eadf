"""Light task heads: the mask decoder (segmentation) and the generation head (text-to-image).

Mask decoder, after the reference design (shared/notes/reference-code.md), scaled to any
encoder: each chosen vision layer's patch features are projected to ``width`` and added to a
running state, followed by one pre-LN transformer layer; the task token's hidden state
conditions the state through FiLM at the first (deepest) layer; the patch grid is then upsampled
by three convolutional stages to the image size.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MaskDecoder(nn.Module):
    def __init__(self, llm_width: int, vision_width: int, n_layers: int, width: int = 64, heads: int = 4):
        super().__init__()
        self.reduce = nn.ModuleList(nn.Linear(vision_width, width) for _ in range(n_layers))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(n_layers))
        self.film = nn.Linear(llm_width, 2 * width)
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, width // 2, 2, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(width // 2, width // 4, 2, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(width // 4, 1, 2, stride=2))

    def forward(self, token_state: torch.Tensor, vision_layers: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """token_state [N, H_llm]; vision_layers: per layer [N, P, D_vis] patch features (no CLS).

        Returns mask logits [N, *size].
        """
        x = None
        for i, (feats, reduce, block) in enumerate(zip(vision_layers, self.reduce, self.blocks)):
            x = reduce(feats) if x is None else x + reduce(feats)
            if i == 0:
                scale, shift = self.film(token_state).chunk(2, dim=-1)
                x = x * (1 + scale[:, None]) + shift[:, None]
            x = block(x)
        n, p, w = x.shape
        g = int(math.isqrt(p))
        grid = x.transpose(1, 2).reshape(n, w, g, g)
        logits = self.head(grid)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0]


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
