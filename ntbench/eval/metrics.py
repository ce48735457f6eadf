"""Metrics: segmentation under both conventions, captioning (pycocoevalcap), FID/KID
(torch-fidelity) and neural-tuning activation frequencies.

Segmentation conventions (shared/notes/reference-code.md):
- ``paper`` (the reference code, hence the paper's tables): per mask, IoU = I/U with an
  empty/empty pair counted 0; mIoU = mean IoU, oIoU = ΣI/ΣU, Pr@0.5..0.9, mDice.
- ``lisa`` (LISA / PixelLM): gIoU = mean of I/(U + 1e-5) with empty/empty counted 1.0;
  cIoU = ΣI/ΣU.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _inter_union(preds: list[np.ndarray], gts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted masks for {len(gts)} ground-truth masks")
    inter = np.array([np.logical_and(p, g).sum() for p, g in zip(preds, gts)], dtype=np.float64)
    union = np.array([np.logical_or(p, g).sum() for p, g in zip(preds, gts)], dtype=np.float64)
    sizes = np.array([np.asarray(p, bool).sum() + np.asarray(g, bool).sum() for p, g in zip(preds, gts)], dtype=np.float64)
    return inter, union, sizes


def segmentation_metrics(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, float]:
    """Both conventions on paired binary masks; keys say which convention each belongs to."""
    if not gts:
        return {}
    inter, union, sizes = _inter_union(preds, gts)
    iou_paper = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    dice = np.where(sizes > 0, 2 * inter / np.maximum(sizes, 1), 0.0)
    iou_lisa = np.where(union > 0, inter / (union + 1e-5), 1.0)
    out = {"paper_mIoU": float(iou_paper.mean()), "paper_oIoU": float(inter.sum() / max(union.sum(), 1.0)),
           "paper_mDice": float(dice.mean())}
    for t in THRESHOLDS:
        out[f"paper_Pr@{t}"] = float((iou_paper >= t).mean())
    out["lisa_gIoU"] = float(iou_lisa.mean())
    out["lisa_cIoU"] = float(inter.sum() / union.sum()) if union.sum() > 0 else 1.0
    out["n_masks"] = float(len(gts))
    return out


def _tokens(text: str) -> str:
    # PTBTokenizer needs Java; a lowercase word split keeps BLEU/CIDEr/ROUGE pure Python
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def caption_metrics(references: dict[str, list[str]], hypotheses: dict[str, str],
                    meteor: bool = True) -> dict[str, Any]:
    """BLEU-4, CIDEr, ROUGE-L and METEOR (when Java is present; otherwise reported as missing)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(hypotheses):
        raise ValueError("references and hypotheses must cover the same ids")
    if not references:
        return {}
    gts = {k: [_tokens(r) for r in v] for k, v in references.items()}
    res = {k: [_tokens(hypotheses[k]) or "empty"] for k in references}
    out: dict[str, Any] = {"BLEU-4": float(Bleu(4).compute_score(gts, res, verbose=0)[0][3]),
                           "CIDEr": float(Cider().compute_score(gts, res)[0]),
                           "ROUGE-L": float(Rouge().compute_score(gts, res)[0])}
    if not meteor:
        out["METEOR"], out["METEOR_note"] = None, "not requested"
    elif shutil.which("java") is None:
        out["METEOR"], out["METEOR_note"] = None, "Java not found: METEOR not computed (not 0)"
    else:
        from pycocoevalcap.meteor.meteor import Meteor
        scorer = Meteor()
        try:
            out["METEOR"] = float(scorer.compute_score(gts, res)[0])
        finally:
            scorer.close() if hasattr(scorer, "close") else None
    return out


# -- FID / KID with the micro world's own feature extractor ---------------------------------------

_EXTRACTOR = "ntbench-vision"
_CURRENT: dict[str, Any] = {}


def _register_extractor() -> None:
    import torch_fidelity
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if _EXTRACTOR in FEATURE_EXTRACTORS_REGISTRY:
        return

    class VisionEncoderFeatures(FeatureExtractorBase):
        """Pooled features of the frozen vision encoder the current evaluation registered."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)

        @staticmethod
        def get_provided_features_list():
            return ("pooled",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "pooled"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, x):
            return (_CURRENT["encode"](x).float(),)

    torch_fidelity.register_feature_extractor(_EXTRACTOR, VisionEncoderFeatures)


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def fid_kid(real: torch.Tensor, fake: torch.Tensor, encode=None, inception_weights: str | None = None) -> dict[str, float]:
    """FID and KID between uint8 image sets [N, 3, H, W].

    Features come from ``encode(uint8 batch)`` (e.g. the frozen vision encoder's pooled output,
    registered as a torch-fidelity feature extractor), or, for real runs, from Inception-v3 with
    weights read from the local file ``inception_weights``. Nothing is ever downloaded.
    """
    import torch_fidelity

    n = min(len(real), len(fake))
    if inception_weights is not None:
        if not Path(inception_weights).is_file():
            raise FileNotFoundError(f"Inception weights {inception_weights} not found (ntbench never downloads them)")
        extractor = {"feature_extractor": "inception-v3-compat", "feature_extractor_weights_path": str(inception_weights)}
    elif encode is not None:
        _register_extractor()
        _CURRENT["encode"] = encode
        extractor = {"feature_extractor": _EXTRACTOR}
    else:
        raise ValueError("fid_kid needs an encode function or a local Inception weights file")
    try:
        metrics = torch_fidelity.calculate_metrics(
            input1=_Images(fake), input2=_Images(real), fid=True, kid=True, cuda=torch.cuda.is_available(),
            verbose=False, batch_size=64, kid_subset_size=max(2, min(n, 100)), save_cpu_ram=True, **extractor)
    finally:
        # ``encode`` closes over the evaluated model: kept here, it would keep the whole model (a
        # 7B one: 27 GB of GPU memory) alive into the next trial of the same process
        _CURRENT.pop("encode", None)
    return {"FID": float(metrics["frechet_inception_distance"]),
            "KID": float(metrics["kernel_inception_distance_mean"])}
