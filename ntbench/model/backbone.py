"""Backbones: a frozen causal LM, a frozen CLIP-style vision encoder and a tokenizer.

A backbone is named by a preset (``tiny-random``: built from tiny configs, for tests and CI)
or given as Hugging Face ids / local paths, loaded with ``from_pretrained`` and
``local_files_only=True``: ntbench never downloads.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import transformers
from torch import nn
from transformers import (AutoModelForCausalLM, AutoTokenizer, CLIPVisionConfig, CLIPVisionModel,
                          LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast)

from ntbench.registry import Registry

transformers.utils.logging.disable_progress_bar()  # ntbench draws its own bars; keep stderr readable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SPECIAL = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}


class BackboneError(ValueError):
    """A backbone that cannot be loaded offline, or parts that do not fit together."""


DEFAULT_SEG_LAYERS = (-1, -2, -3)  # vision hidden-state layers the mask decoder reads


@dataclass
class Backbone:
    name: str
    llm: nn.Module
    tokenizer: PreTrainedTokenizerFast
    vision: nn.Module
    image_decoder: nn.Module | None = None  # embedding -> image, for text-to-image
    # a vision->LLM projection trained with the LLM (LLaVA's mm_projector): the model's projection starts from it
    projector: nn.Linear | None = None
    # a mask decoder pretrained on prompts (SAM's role; micro v5): the model's decoder starts from it
    mask_decoder_prior: dict | None = None
    seg_layers: tuple[int, ...] = DEFAULT_SEG_LAYERS
    meta: dict = field(default_factory=dict)
    # load_backbone's arguments (paths made absolute): a saved model reloads its backbone from them
    source: dict | None = None

    @property
    def image_size(self) -> int:
        return int(self.vision.config.image_size)

    @property
    def vision_width(self) -> int:
        return int(self.vision.config.hidden_size)

    @property
    def llm_width(self) -> int:
        return int(self.llm.config.hidden_size)

    def fingerprint(self) -> str | None:
        """A short hash of the first values of every LLM and vision parameter (None on the meta device).

        Why: a saved model keeps only what was trained and reloads the frozen backbone by name or
        path; a backbone prepared again or replaced under the same path would then give other
        numbers without an error. Reading a few values per tensor costs milliseconds even at 7B.
        """
        params = list(self.llm.parameters()) + list(self.vision.parameters())
        if any(p.device.type == "meta" for p in params):
            return None
        digest = hashlib.sha256()
        for p in params:
            digest.update(p.detach().reshape(-1)[:16].float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def check(self) -> "Backbone":
        """Raise BackboneError if the parts do not fit together."""
        n_vis = int(self.vision.config.num_hidden_layers)
        bad = [layer for layer in self.seg_layers if not -n_vis <= layer <= n_vis]
        if bad:
            raise BackboneError(f"seg_layers {list(self.seg_layers)}: {bad} out of range for a vision encoder "
                                f"with {n_vis} layers (allowed: -{n_vis}..{n_vis})")
        emb = self.llm.get_input_embeddings().num_embeddings
        if len(self.tokenizer) > emb:
            raise BackboneError(f"the tokenizer has {len(self.tokenizer)} tokens but the LLM's embedding has "
                                f"only {emb} rows: they do not belong together")
        if self.tokenizer.pad_token_id is None:
            raise BackboneError("the tokenizer has no pad token; set one (e.g. tokenizer.pad_token = eos)")
        return self


BACKBONES: Registry[Callable[..., Backbone]] = Registry("backbone preset")
# The micro preset's recipe trains on generated data and caches under NTBENCH_HOME: a layer above
# this one. It is named here and imported on first use, so the model layer never imports it.
BACKBONES.register_lazy("micro", "ntbench.micro.cache:micro_backbone",
                        description="ntbench's own backbone pretrained on the micro world (prepared once, cached)")


def word_tokenizer(texts: list[str], extra: list[str] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer (HF ``tokenizers``) over the words of ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    # show_progress off: its native bar writes straight to the terminal under rich's bars and left a
    # stale copy of them on screen at every trial
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL.values()) + list(extra), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    from tokenizers import decoders
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


@functools.lru_cache(maxsize=2)
def _microworld_texts(n: int = 400) -> tuple[str, ...]:
    from ntbench.data.microworld import MicroWorldConfig, make_sample

    cfg = MicroWorldConfig(seed=12345)
    texts = []
    for k in range(n):
        s, _ = make_sample(cfg, "train", k)
        texts += [s.caption, s.question, s.answer, s.t2i_prompt] + [r for o in s.objects for r in o.refs] + \
            [g["text"] for g in s.groups]
    return tuple(texts + ["describe the image .", "segment", "draw", "generate", "yes", "no"])


@BACKBONES.register("tiny-random", description="random tiny LLaMA + CLIP ViT from configs (tests, CI)")
def tiny_random(seed: int = 0, image_size: int = 64) -> Backbone:
    torch.manual_seed(seed)
    tokenizer = word_tokenizer(list(_microworld_texts()))
    llm = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id))
    vision = CLIPVisionModel(CLIPVisionConfig(image_size=image_size, patch_size=8, hidden_size=32,
                                              intermediate_size=64, num_hidden_layers=3, num_attention_heads=4))
    decoder = ImageDecoder(32, image_size)
    return Backbone("tiny-random", llm, tokenizer, vision, decoder, seg_layers=(-1, -2, -3)).check()


def random_backbone(llm_shape: str, vision_shape: str, seed: int = 0, device: str | None = None) -> Backbone:
    """Random weights in named shapes (ntbench.model.shapes) with the micro world's word tokenizer:
    the real cost of a paper-scale model with no download. Built on the GPU where there is one."""
    from ntbench.model.shapes import random_llm, random_vision

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = word_tokenizer(list(_microworld_texts()))
    llm = random_llm(llm_shape, device, seed=seed, pad_token_id=tokenizer.pad_token_id,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = random_vision(vision_shape, device, seed=seed)
    decoder = ImageDecoder(int(vision.config.hidden_size), int(vision.config.image_size)).to(device)
    return Backbone(f"random:{llm_shape}+{vision_shape}", llm, tokenizer, vision, decoder,
                    seg_layers=(-1, -2, -3)).check()


@BACKBONES.register("random-7b", description="LLaMA-2-7B + CLIP ViT-L/14 shapes, random weights "
                                              "(paper-scale GPU smoke runs; nothing downloaded)")
def random_7b(seed: int = 0) -> Backbone:
    return random_backbone("llama-2-7b", "clip-vit-l-14", seed)


@BACKBONES.register("random-tiny", description="random-7b's code path at tiny shapes (tests)")
def random_tiny(seed: int = 0) -> Backbone:
    return random_backbone("tiny", "tiny", seed)


class ImageDecoder(nn.Module):
    """Embedding -> RGB image in [0, 1]: a linear map to an 8x8 grid, then 2x upsampling stages."""

    def __init__(self, embed_dim: int, image_size: int, width: int = 32):
        super().__init__()
        self.grid = 8
        self.fc = nn.Linear(embed_dim, width * self.grid * self.grid)
        stages, size = [], self.grid
        while size < image_size:
            stages += [nn.ConvTranspose2d(width, width, 2, stride=2), nn.ReLU()]
            size *= 2
        self.up = nn.Sequential(*stages)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        self.image_size = image_size
        self.width = width

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x = self.fc(emb).view(-1, self.width, self.grid, self.grid)
        x = self.out(self.up(x))
        x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


def load_backbone(name: str | None = None, llm: str | None = None, vision: str | None = None,
                  **preset_options) -> Backbone:
    """A preset by ``name``, or an LLM and a vision encoder by HF id / local path (offline only).

    Raises:
        BackboneError: not available offline, or the parts do not fit together.
        UnknownNameError: an unknown preset name.
    """
    for given in (name, llm, vision):  # a filesystem path (not an HF id or preset name) that is not there
        if given and given.startswith(("/", "./", "../", "~")) and not Path(given).expanduser().exists():
            raise BackboneError(f"{given}: not found (a backbone path must exist)")
    if name is not None and llm is None and vision is None and not Path(name).exists():
        backbone = BACKBONES.get(name)(**preset_options)
        backbone.source = {"name": name, **preset_options}
        return backbone
    llm = llm or name
    if llm is None or vision is None:
        raise BackboneError("give a backbone preset name, or both an LLM and a vision encoder (HF id or local path)")
    try:
        model = AutoModelForCausalLM.from_pretrained(llm, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(llm, local_files_only=True)
    except OSError as exc:
        raise BackboneError(f"LLM {llm!r} is not available offline: it must be a local path or a model already in "
                            f"the Hugging Face cache (ntbench never downloads). ({str(exc).splitlines()[0]})") from None
    try:
        vis = CLIPVisionModel.from_pretrained(vision, local_files_only=True)
    except OSError as exc:
        raise BackboneError(f"vision encoder {vision!r} is not available offline: it must be a local path or a "
                            f"cached model (ntbench never downloads). ({str(exc).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    source = {"llm": _absolute(llm), "vision": _absolute(vision)}
    return Backbone(f"{llm}+{vision}", model, tokenizer, vis, source=source).check()


def _absolute(given: str) -> str:
    """A local path made absolute (a run is evaluated from any folder); an HF id as it is."""
    path = Path(given).expanduser()
    return str(path.resolve()) if path.exists() else given
