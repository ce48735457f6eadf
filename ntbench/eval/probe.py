"""Linear probes of the ``<OBJ-i>`` states: does the LLM's hidden state at a segmentation tag say
which object is meant?

Why it exists: on the micro backbone segmentation stayed at the all-objects mask until the states
were measured (results/micro/diagnosis/diagnosis.md, sections 3 and 7). Per task, layer and
position (the tag itself and the token before it), a linear classifier is fitted on part of the
tags and scored on the rest for the target's colour and shape, beside the majority-class rate.
A state that a linear probe cannot read is one no light mask decoder will read either.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.nn import functional as F

from ntbench.data.io import SampleDataset
from ntbench.eval.evaluate import build_items
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.batching import collate

ATTRIBUTES = ("colour", "shape")


def linear_probe_accuracy(x_train: torch.Tensor, y_train: list, x_test: torch.Tensor, y_test: list,
                          max_iter: int = 300, l2: float = 1e-3) -> float:
    """Accuracy on the test rows of a multinomial logistic regression fitted on the train rows.

    Features are standardised with the training rows' statistics, and the fit runs L-BFGS to
    convergence: a probe stopped early would under-report what the states hold.

    Args:
        x_train, x_test: [n, d] features.
        y_train, y_test: labels (any hashable values); test labels unseen in training count as misses.
        max_iter: L-BFGS iterations.
        l2: weight penalty, so separable data still gives a finite solution.

    Returns:
        The fraction of test rows classified correctly.
    """
    classes = sorted(set(y_train), key=str)
    target = torch.tensor([classes.index(c) for c in y_train])
    mean, std = x_train.float().mean(0), x_train.float().std(0) + 1e-5
    x = (x_train.float() - mean) / std
    generator = torch.Generator().manual_seed(0)  # the probe's own initialisation, whatever the caller's RNG
    linear = torch.nn.Linear(x.shape[1], len(classes))
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.01)
        linear.bias.zero_()
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), target) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred = linear((x_test.float() - mean) / std).argmax(1).tolist()
    return float(np.mean([classes[p] == y for p, y in zip(pred, y_test)]))


def object_state_probe(model: AllInTokenModel, dataset: SampleDataset, tasks: tuple[str, ...] = ("referring", "reasoning"),
                       n_items: int = 1000, batch_size: int = 32, train_fraction: float = 0.7,
                       offsets: tuple[int, ...] = (-1, 0), seed: int = 0) -> list[dict]:
    """Probe the target's attributes from the model's states at each ``<OBJ-i>`` tag.

    Args:
        model: the all-in-token model (put in eval mode here); untrained heads are fine, only the LLM
            states are read.
        dataset: a split whose objects carry ``colour`` and ``shape`` attributes (the micro world).
        tasks: segmentation tasks to build items for.
        n_items: items per task (the first that can serve the task, as in evaluation).
        batch_size: items per forward pass.
        train_fraction: share of the tags (in item order) the probe is fitted on.
        offsets: positions relative to the tag (0: the tag, -1: the token before it).
        seed: builds the items.

    Returns:
        One row per (task, layer, offset, attribute): ``accuracy``, ``majority`` (the test rows'
        most frequent class), ``n_train``, ``n_test``. Layer 0 is the embedding output.
    """
    model.eval()
    by_id = {s.id: s for s in dataset.samples}
    rows = []
    for task in tasks:
        items = build_items(dataset, task, n_items, seed)
        feats: dict[tuple[int, int], list[torch.Tensor]] = defaultdict(list)
        labels: dict[str, list] = {a: [] for a in ATTRIBUTES}
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch = collate(chunk, model.tokenizer)
            states, off = model.layer_states(batch, model.encode_images(batch["images"]))
            for layer, hidden in enumerate(states):
                for d in offsets:
                    feats[layer, d].append(hidden[batch["seg_b"], off + batch["seg_t"] + d].float().cpu())
            tags = model.tokenizer.convert_ids_to_tokens(batch["input_ids"][batch["seg_b"], batch["seg_t"]].tolist())
            for row, tag in zip(batch["seg_b"].tolist(), tags):  # "<OBJ-k>" names target_objects[k - 1]
                item = chunk[row]
                obj = by_id[item.sample_id].objects[item.example.target_objects[int(tag[5:-1]) - 1]]
                for a in ATTRIBUTES:
                    labels[a].append(obj.attributes.get(a))
        n = len(labels[ATTRIBUTES[0]])
        cut = int(n * train_fraction)
        for (layer, d), parts in sorted(feats.items()):
            x = torch.cat(parts)
            for a in ATTRIBUTES:
                y = labels[a]
                test = y[cut:]
                majority = max(test.count(c) for c in set(test)) / len(test) if test else float("nan")
                rows.append({"task": task, "layer": layer, "offset": d, "attribute": a, "n_train": cut,
                             "n_test": n - cut, "majority": majority,
                             "accuracy": linear_probe_accuracy(x[:cut], y[:cut], x[cut:], test) if test else float("nan")})
    return rows
