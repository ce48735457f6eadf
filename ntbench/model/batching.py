"""Turn task examples into padded tensors: token ids, label masks and task-token positions."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ntbench.model.tasks import GEN_TOKEN, TaskExample, obj_token


@dataclass
class Item:
    example: TaskExample
    image: torch.Tensor         # uint8 [3, H, W]
    masks: torch.Tensor         # uint8 [n_objects, H, W]
    sample_id: str


def encode_text(tokenizer, prompt: str, answer: str | None) -> tuple[list[int], int]:
    """[bos] prompt [answer eos]; returns ids and the prompt length (answer starts there)."""
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False).input_ids
    n_prompt = len(ids)
    if answer is not None:
        ids += tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    return ids, n_prompt


def collate(items: list[Item], tokenizer, teacher_forced: bool = True) -> dict:
    """Pad a batch. Teacher-forced: prompt + answer, right padded, labels on the answer only.
    Otherwise: the prompt alone, left padded, ready for generation."""
    encoded = [encode_text(tokenizer, it.example.prompt, it.example.answer if teacher_forced else None)
               for it in items]
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id
    b = len(items)
    input_ids = torch.full((b, width), pad, dtype=torch.long)
    text_mask = torch.zeros((b, width), dtype=torch.long)
    labels = torch.full((b, width), -100, dtype=torch.long)
    obj_ids = {tokenizer.convert_tokens_to_ids(obj_token(i)): i for i in range(1, 65)}
    gen_id = tokenizer.convert_tokens_to_ids(GEN_TOKEN)
    seg_b, seg_t, seg_masks, gen_b, gen_t = [], [], [], [], []
    for row, ((ids, n_prompt), it) in enumerate(zip(encoded, items)):
        offset = 0 if teacher_forced else width - len(ids)
        input_ids[row, offset:offset + len(ids)] = torch.tensor(ids)
        text_mask[row, offset:offset + len(ids)] = 1
        if not teacher_forced:
            continue
        labels[row, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
        for t in range(n_prompt, len(ids)):
            tag = obj_ids.get(ids[t])
            if tag is not None and tag <= len(it.example.target_objects):
                seg_b.append(row)
                seg_t.append(t)
                seg_masks.append(it.masks[it.example.target_objects[tag - 1]])
            elif ids[t] == gen_id:
                gen_b.append(row)
                gen_t.append(t)
    size = items[0].image.shape[-2:]
    return {
        "images": torch.stack([it.image for it in items]),
        "input_ids": input_ids, "text_mask": text_mask, "labels": labels,
        "uses_image": torch.tensor([it.example.uses_image for it in items]),
        "seg_b": torch.tensor(seg_b, dtype=torch.long), "seg_t": torch.tensor(seg_t, dtype=torch.long),
        "seg_masks": torch.stack(seg_masks) if seg_masks else torch.zeros((0, *size), dtype=torch.uint8),
        "gen_b": torch.tensor(gen_b, dtype=torch.long), "gen_t": torch.tensor(gen_t, dtype=torch.long),
        "tasks": [it.example.task for it in items], "ids": [it.sample_id for it in items],
    }


def to_device(batch: dict, device: torch.device | str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
