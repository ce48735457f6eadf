"""Per-backbone default recipes: the ONE place a backbone's validated training configuration lives.

A recipe is a partial trial configuration. :class:`~ntbench.train.trial.TrialConfig` lays what a
user or a suite gives on top of it, so ``TrialConfig(backbone="micro")``, ``ntbench train
--backbone micro``, ``ntbench evidence`` and the micro suites all train the same thing unless
they say otherwise, and a changed recipe changes all of them at once.
"""
from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

# The micro backbone's validated configuration (results/micro/summary.md). Why each value:
# - 1500 steps, LR 3e-3, batch 16: segmentation leaves the trivial-mask level between steps 500 and
#   1000 and is near its plateau by 1500 (diagnosis section 8b); 150-600 steps measured nothing;
# - referring and reasoning drawn twice as often as captioning and t2i: the segmentation tasks are
#   what the paper's ablations score;
# - BCE beside Dice (lambda_bce 1): Dice alone settles on the all-objects mask more often;
# - all 500 val samples scored: 64 samples move oIoU by about 0.04 (diagnosis section 8a);
# - on a GPU, fp32 and no activation checkpointing (both CUDA-only switches, so CPU runs are unchanged):
#   a 128-wide model gains nothing from bf16 or checkpointing, and fp32 keeps a GPU run at the
#   precision of the CPU runs that validated this recipe (its numbers are still another draw:
#   CUDA kernels sum in another order).
MICRO_RECIPE: dict[str, Any] = {
    "lambda_bce": 1.0,
    "eval_samples": 500,
    "train": {"steps": 1500, "batch_size": 16, "lr": 3e-3, "warmup": None,  # None: 10% of the steps
              "tasks": {"referring": 2.0, "reasoning": 2.0, "captioning": 1.0, "t2i": 1.0},
              "bf16": False, "gradient_checkpointing": False},
}

RECIPES: dict[str, dict[str, Any]] = {"micro": MICRO_RECIPE}

# What an adapter trains with on a preset backbone where it differs from the recipe: each adapter's own
# learning rate, chosen on a held-out split (the test split; suites report val) by a study fixed before it ran.
# Micro: results/adapters_lr (1e-3, 3e-3, 1e-2) and results/adapters_lr_higher (3e-2, 1e-1), one seed a cell,
# the rule "the best, unless within 0.02 (one run's noise) of the rate kept so far": LoRA and frozen at 1e-2
# (reasoning oIoU 0.443 and 0.425 against 0.357 and 0.394 at 3e-3; neither takes off at 3e-2); prefix and IA3
# best at the recipe's 3e-3; neural ties 1e-3 with 3e-3 (0.551 / 0.549) and keeps 3e-3. So `ntbench compare lora
# neural` and `ntbench train --adapter lora` compare each adapter at its own rate, as suites/adapters.yaml does
# (its `linked:` block says the same; a test keeps the two in agreement).
ADAPTER_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "micro": {"lora": {"train": {"lr": 1e-2}}, "frozen": {"train": {"lr": 1e-2}}},
}


def recipe_for(backbone: str | None, adapter: str | None = None) -> dict[str, Any]:
    """The recipe of a backbone preset ({} for backbones without one: HF ids, local paths); with ``adapter``,
    what that adapter trains with differently (:data:`ADAPTER_RECIPES`) laid on it."""
    recipe = copy.deepcopy(RECIPES.get(backbone or "", {}))
    for key, value in adapter_recipe(backbone, adapter).items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe


def adapter_recipe(backbone: str | None, adapter: str | None) -> dict[str, Any]:
    """The adapter's own part of a backbone's recipe ({} where it trains as the recipe says)."""
    by_adapter = ADAPTER_RECIPES.get(backbone or "", {})
    if not isinstance(adapter, str) or not by_adapter:
        return {}
    from ntbench.adapters.base import ADAPTERS  # here: only a backbone with adapter recipes needs the registry

    name = ADAPTERS.canonical(adapter) if adapter in ADAPTERS else adapter  # an alias trains as its adapter
    return copy.deepcopy(by_adapter.get(name, {}))


def _explicit(value: Any) -> dict[str, Any]:
    """Only what was actually given: a pydantic model contributes the fields set on it."""
    if isinstance(value, BaseModel):
        return value.model_dump(include=value.model_fields_set)
    return dict(value or {})


def with_recipe(data: dict[str, Any], default_backbone: str) -> dict[str, Any]:
    """``data`` (a partial trial config) laid over its backbone's recipe for its adapter; given values always win."""
    from ntbench.train.trial import TrialConfig  # here: the config module imports this one

    adapter = data.get("adapter", TrialConfig.model_fields["adapter"].default)
    recipe = recipe_for(data.get("backbone", default_backbone), adapter)
    if not recipe:
        return data
    merged = {**recipe, **{k: v for k, v in data.items() if k != "train"}}
    given = data.get("train")
    if given is not None and not isinstance(given, (dict, BaseModel)):
        merged["train"] = given  # not a mapping: left for pydantic to report under its key
    elif "train" in data or "train" in recipe:
        merged["train"] = {**recipe.get("train", {}), **_explicit(given)}
    return merged
