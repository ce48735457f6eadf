"""The all-in-token multimodal model (paper §3.1).

Image patch features from a frozen vision encoder go through a trainable projection and become
image tokens placed before the text embeddings; the LLM reads them through ``inputs_embeds``.
New tokens ``<GEN>`` and ``<OBJ-1..N>`` get their own trainable input and output rows (the
LLM's own vocabulary stays frozen unless ``train_embeddings``). The hidden state of each
``<OBJ-i>`` feeds the mask decoder; the one of ``<GEN>`` feeds the generation head.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ntbench.adapters import apply_adapter, trainable_parameters
from ntbench.model.backbone import CLIP_MEAN, CLIP_STD, Backbone
from ntbench.model.heads import DEFAULT_DECODER_WIDTH, GenerationHead, MaskDecoder, dice_loss
from ntbench.model.tasks import GEN_TOKEN, obj_token


@torch.no_grad()
def init_projector_as_bos(projector: nn.Linear, embed: nn.Embedding, bos: int | None, std: float) -> None:
    """Image tokens start as copies of the BOS embedding plus a small image-dependent part.

    Why: a text-only LLM has never seen image tokens. With the default initialisation they are
    35x the norm of a word embedding on the micro backbone and pull the text's attention: a
    linear probe read the target's shape from the <OBJ-1> state at 0.51 with image tokens
    present against 0.93 without, and segmentation stayed at the all-objects mask. Starting as
    BOS, a token every LLM learned to attend to and ignore, the image tokens leave the text
    states nearly as without them (probe 0.86) until the projection learns what to send
    (results/micro/diagnosis/diagnosis.md, section 7). Without a BOS token: the mean embedding.
    """
    if embed.weight.device.type == "meta":
        return
    anchor = embed.weight[bos] if bos is not None else embed.weight.mean(0)
    projector.weight.mul_(0.25 * std)
    projector.bias.copy_(anchor.float())


class AllInTokenModel(nn.Module):
    def __init__(self, backbone: Backbone, adapter: str = "neural", adapter_options: dict | None = None,
                 max_objects: int = 8, train_embeddings: bool = False, decoder_width: int = DEFAULT_DECODER_WIDTH,
                 lambda_seg: float = 1.0, lambda_gen: float = 10.0, lambda_bce: float = 0.0,
                 pixel_refiner: bool = False, whiten_state: bool = True, seed: int | None = None):
        super().__init__()
        self.backbone_name = backbone.name
        # what save_pretrained records to rebuild this model (the adapter's options come from its handle)
        self.backbone_source, self.backbone_fingerprint = backbone.source, backbone.fingerprint()
        self.init_options = {"max_objects": max_objects, "train_embeddings": train_embeddings,
                             "decoder_width": decoder_width, "lambda_seg": lambda_seg, "lambda_gen": lambda_gen,
                             "lambda_bce": lambda_bce, "pixel_refiner": pixel_refiner,
                             "whiten_state": whiten_state, "seed": seed}
        self.tokenizer = tok = backbone.tokenizer
        new_tokens = [GEN_TOKEN] + [obj_token(i) for i in range(1, max_objects + 1)]
        tok.add_special_tokens({"additional_special_tokens": new_tokens})
        ids = tok.convert_tokens_to_ids(new_tokens)
        self.base_vocab = min(ids)  # every id from here on is a new task token
        if sorted(ids) != list(range(self.base_vocab, self.base_vocab + len(ids))):
            raise ValueError("task tokens must get consecutive ids at the end of the tokenizer")
        self.llm = apply_adapter(backbone.llm, adapter, **(adapter_options or {}))
        self.vision = backbone.vision.eval().requires_grad_(False)
        self.seg_layers = tuple(backbone.seg_layers)
        self.image_size = backbone.image_size
        self.image_decoder = backbone.image_decoder.eval().requires_grad_(False) if backbone.image_decoder else None
        h, v = backbone.llm_width, backbone.vision_width
        if seed is not None:
            # The heads' initialisation depends on the seed alone, not on how many random numbers the
            # adapter drew before (LoRA r=8 vs r=16, neural Dz 64 vs 128): cells that share a seed
            # then start from the same heads, and their paired difference is not diluted by it.
            torch.manual_seed((seed * 0x9E3779B1 + 0x7F4A7C15) % 2**63)
        embed = self.llm.get_input_embeddings()
        std = float(embed.weight.detach().float().std()) if embed.weight.device.type != "meta" else 0.02
        self.projector = nn.Linear(v, h)
        if backbone.projector is not None:  # the backbone's own, trained with its LLM (micro v4, LLaVA)
            self.projector.load_state_dict(backbone.projector.state_dict())
        else:
            init_projector_as_bos(self.projector, embed, self.tokenizer.bos_token_id, std)
        self.new_embed = nn.Parameter(torch.randn(len(ids), h) * std)
        self.new_out = nn.Parameter(torch.randn(len(ids), h) * std)
        self.mask_decoder = MaskDecoder(h, v, len(self.seg_layers), width=decoder_width,
                                        pixel_refiner=pixel_refiner, whiten_state=whiten_state)
        # the backbone's pretrained decoder (micro v5), when this one has its shape (decoder_width)
        self.decoder_prior = bool(backbone.mask_decoder_prior) and \
            self.mask_decoder.load_prior(backbone.mask_decoder_prior)
        self.gen_head = GenerationHead(h, v)
        self.lambda_seg, self.lambda_gen, self.lambda_bce = lambda_seg, lambda_gen, lambda_bce
        self.train_embeddings = train_embeddings
        own = [self.projector, self.mask_decoder, self.gen_head]
        params = [self.new_embed, self.new_out] + [p for m in own for p in m.parameters()]
        if train_embeddings:
            params += list(embed.parameters()) + list(self.llm.get_output_embeddings().parameters())
        for p in params:
            p.requires_grad_(True)
        self._head_params = params
        # the CLIP normalisation as buffers: built once on the model's device, because a tensor made
        # from a Python list on every call is a host-to-device copy that CUDA graph capture forbids
        self.register_buffer("clip_mean", torch.tensor(CLIP_MEAN)[:, None, None], persistent=False)
        self.register_buffer("clip_std", torch.tensor(CLIP_STD)[:, None, None], persistent=False)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write what was trained (tokenizer, heads, adapter) and the config that rebuilds the rest;
        the frozen backbone is not copied (see :mod:`ntbench.model.pretrained`). Returns the directory."""
        from ntbench.model.pretrained import save_model

        return save_model(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone: Backbone | None = None) -> "AllInTokenModel":
        """The model saved in ``directory``, in eval mode on the CPU; its backbone is loaded again by
        name or path unless ``backbone`` is given.

        Raises:
            FileNotFoundError: ``directory`` holds no saved model.
            BackboneError: the backbone differs from the one the model was saved with.
        """
        from ntbench.model.pretrained import load_model

        return load_model(cls, directory, backbone)

    @property
    def image_tokens(self) -> int:
        """LLM tokens one image becomes (one per vision patch)."""
        return self.vision.config.image_size ** 2 // self.vision.config.patch_size ** 2

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The adapter's parameters, then the projection, the new token rows and the heads."""
        seen, out = set(), []
        for p in trainable_parameters(self.llm) + self._head_params:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    # -- inputs -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> dict[str, Any]:
        """uint8 [B, 3, H, W] -> patch tokens, mask-decoder features and the pooled embedding."""
        x = images.float() / 255.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        mean = self.clip_mean.to(x.device, torch.float32)
        std = self.clip_std.to(x.device, torch.float32)
        dtype = next(self.vision.parameters()).dtype
        pixels = ((x - mean) / std).to(dtype)
        out = self.vision(pixel_values=pixels, output_hidden_states=True)
        return {"patches": out.last_hidden_state[:, 1:], "pooled": out.pooler_output, "pixels": pixels,
                "seg": [out.hidden_states[layer][:, 1:] for layer in self.seg_layers]}

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self.llm.get_input_embeddings()(ids.clamp(max=self.base_vocab - 1))
        is_new = ids >= self.base_vocab
        new = self.new_embed.to(emb.dtype)[(ids - self.base_vocab).clamp(min=0)]
        return torch.where(is_new[..., None], new, emb)

    def _inputs(self, batch: dict, vision: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        """[image tokens; text embeddings], their attention mask, and the number of image tokens."""
        img = self.projector(vision["patches"].to(self.projector.weight.dtype))
        text = self.embed_text(batch["input_ids"])
        n_img = img.shape[1]
        inputs = torch.cat([img.to(text.dtype), text], dim=1)
        mask = torch.cat([batch["uses_image"][:, None].long().expand(-1, n_img), batch["text_mask"]], dim=1)
        return inputs, mask, n_img

    def run_llm(self, batch: dict, vision: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Logits over base vocabulary + task tokens, last hidden states, and the text offset."""
        inputs, mask, n_img = self._inputs(batch, vision)
        out = self.llm(inputs_embeds=inputs, attention_mask=mask, output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states[-1]
        logits = self._logits(out.logits, hidden)
        if logits.shape[1] != inputs.shape[1]:  # prompt-learning wrappers may prepend virtual tokens
            logits, hidden = logits[:, -inputs.shape[1]:], hidden[:, -inputs.shape[1]:]
        return logits, hidden, n_img

    @torch.no_grad()
    def layer_states(self, batch: dict, vision: dict) -> tuple[tuple[torch.Tensor, ...], int]:
        """Hidden states of every LLM layer (embeddings first) over [image tokens; text], and the text offset."""
        inputs, mask, n_img = self._inputs(batch, vision)
        states = self.llm(inputs_embeds=inputs, attention_mask=mask, output_hidden_states=True, use_cache=False).hidden_states
        return tuple(h[:, -inputs.shape[1]:] for h in states), n_img  # prompt-learning wrappers prepend tokens

    # -- training -----------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Losses: total = text + λ_seg·seg + λ_gen·gen (each 0 when the batch has no such target);
        seg = Dice + λ_bce·BCE (the paper uses Dice alone: λ_bce 0)."""
        vision = self.encode_images(batch["images"])
        logits, hidden, off = self.run_llm(batch, vision)
        text_logits = logits[:, off:-1]
        labels = batch["labels"][:, 1:]
        zero = hidden.sum() * 0.0
        loss_txt = F.cross_entropy(text_logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=-100) if (labels != -100).any() else zero
        loss_seg = zero
        if len(batch["seg_b"]):
            states = hidden[batch["seg_b"], off + batch["seg_t"]].float()
            feats = [f[batch["seg_b"]].float() for f in vision["seg"]]
            pred = self.mask_decoder(states, feats, tuple(batch["seg_masks"].shape[-2:]),
                                     vision["pixels"][batch["seg_b"]].float())
            loss_seg = dice_loss(pred, batch["seg_masks"])
            if self.lambda_bce:
                loss_seg = loss_seg + self.lambda_bce * F.binary_cross_entropy_with_logits(
                    pred.float(), batch["seg_masks"].float())
        loss_gen = zero
        if len(batch["gen_b"]):
            pred = self.gen_head(hidden[batch["gen_b"], off + batch["gen_t"]].float())
            loss_gen = F.mse_loss(pred, vision["pooled"][batch["gen_b"]].float())
        total = loss_txt + self.lambda_seg * loss_seg + self.lambda_gen * loss_gen
        return {"loss": total, "loss_txt": loss_txt.detach(), "loss_seg": loss_seg.detach(),
                "loss_gen": loss_gen.detach()}

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_masks(self, hidden: torch.Tensor, vision: dict, rows: torch.Tensor,
                      positions: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Binary masks [N, *size] from the hidden states at (rows, positions)."""
        if len(rows) == 0:
            return torch.zeros((0, *size), dtype=torch.bool, device=hidden.device)
        logits = self.mask_decoder(hidden[rows, positions].float(), [f[rows].float() for f in vision["seg"]], size,
                                   vision["pixels"][rows].float())
        return logits > 0

    @torch.no_grad()
    def generate(self, batch: dict, max_new_tokens: int = 32, use_cache: bool | None = None) -> dict[str, Any]:
        """Greedy decoding of left-padded prompts, batched.

        With a key/value cache (the default where the adapter supports it) the prompt is read once and
        each new token costs one position; otherwise every step re-reads the whole sequence (prefix
        tuning). Both give the same tokens. Returns the generated ids per row, the hidden states of the
        whole sequence (``answer_hidden_full``; the generated tokens start at ``offset``) to decode
        <OBJ-i> and <GEN> tokens, and the vision features.
        """
        from ntbench.adapters import adapter_handle

        if use_cache is None:
            use_cache = adapter_handle(self.llm).supports_kv_cache
        vision = self.encode_images(batch["images"])
        ids, mask = batch["input_ids"], batch["text_mask"]
        eos = self.tokenizer.eos_token_id
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        start = ids.shape[1]
        if use_cache:
            logits, hidden, off, cache = self._prefill(batch, vision)
            steps = []
            # a model that did not fill a cache for the whole prompt (an argument it ignores, a wrapper)
            # would decode from the new token alone: re-read the sequence instead
            use_cache = getattr(cache, "get_seq_length", lambda: -1)() == hidden.shape[1]
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _, _ = self.run_llm({**batch, "input_ids": ids, "text_mask": mask}, vision)
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.tokenizer.pad_token_id), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            done |= nxt == eos
            if use_cache:  # read the new token: its hidden state (for <OBJ-i>) and the next logits
                logits, step_hidden, cache = self._extend(nxt, batch, mask, vision, cache)
                steps.append(step_hidden)
            if bool(done.all()):
                break
        if use_cache:
            hidden = torch.cat([hidden] + steps, dim=1)
        else:
            _, hidden, off = self.run_llm({**batch, "input_ids": ids, "text_mask": mask}, vision)
        return {"ids": ids[:, start:], "hidden": hidden[:, off + start - 1: off + ids.shape[1] - 1],
                "answer_hidden_full": hidden, "offset": off + start, "vision": vision}

    def _cache_kw(self, cache) -> dict[str, Any]:
        # transformers >= 5 names the argument ``cache``; older releases ``past_key_values``
        import inspect

        name = "cache" if "cache" in inspect.signature(self.llm.forward).parameters else "past_key_values"
        return {name: cache, "use_cache": True}

    def _prefill(self, batch: dict, vision: dict):
        inputs, mask, n_img = self._inputs(batch, vision)
        out = self.llm(inputs_embeds=inputs, attention_mask=mask, output_hidden_states=True, **self._cache_kw(None))
        hidden = out.hidden_states[-1]
        return self._logits(out.logits, hidden), hidden, n_img, _cache_of(out)

    def _extend(self, token: torch.Tensor, batch: dict, text_mask: torch.Tensor, vision: dict, cache):
        n_img = vision["patches"].shape[1]
        mask = torch.cat([batch["uses_image"][:, None].long().expand(-1, n_img), text_mask], dim=1)
        out = self.llm(inputs_embeds=self.embed_text(token[:, None]), attention_mask=mask,
                       output_hidden_states=True, **self._cache_kw(cache))
        hidden = out.hidden_states[-1]
        return self._logits(out.logits, hidden), hidden, _cache_of(out)

    def _logits(self, base_logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the base vocabulary, then the task tokens."""
        return torch.cat([base_logits[..., :self.base_vocab], hidden @ self.new_out.to(hidden.dtype).T], dim=-1)


def _cache_of(out) -> Any:
    return getattr(out, "cache", None) if getattr(out, "cache", None) is not None else out.past_key_values
