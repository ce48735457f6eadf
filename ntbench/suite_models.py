"""What a suite is: the typed models of a suite file (:class:`Suite`, its sampler, report layout and
the paper's claims), the labels and cells of its axes, and the trial config of a cell.

Reading a suite file (YAML, ``extends:``) and validating every cell is :mod:`ntbench.suite`, which
re-exports every name here; import them from there.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


# metrics where less is better: distances between image distributions and costs, matched on the last dotted
# part of the name, case-insensitive (a suite's objective defaults to minimizing them)
LOWER_IS_BETTER = ("fid", "kid", "params", "flops", "step_time", "memory", "loss", "seconds")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller ``metric`` is better: FID, KID, parameters, TFLOPs, time, memory, losses."""
    last = metric.rsplit(".", 1)[-1].lower()
    return any(tag in last for tag in LOWER_IS_BETTER) or last.endswith(("_s", "_mb"))


class Sampler(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["grid", "tpe", "random"] = "grid"
    n_trials: int | None = Field(None, ge=1, description="trial budget (tpe/random)")
    seed: int = 0


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    log: bool = False
    type: Literal["float", "int"] = "float"


class ReportSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: str | None = Field(None, description="axis shown as table rows")
    cols: str | None = Field(None, description="axis shown as table columns")
    metrics: list[str] = Field(default_factory=list, description="extra metric columns (task.key)")
    plot: Literal["heatmap", "lines", "bars", "none"] = "none"
    baseline: str | None = Field(None, description="a rows value that deltas are computed against")


class PaperNumbers(BaseModel):
    """The paper's printed numbers for a claim's two sides, in the paper's units."""
    model_config = ConfigDict(extra="forbid")
    a: float = Field(description="the paper's number for cell a")
    b: float = Field(description="the paper's number for b (a cell, or the paper's counterpart of a value)")


class PaperClaim(BaseModel):
    """One claim of a paper table: cell a against cell b (or a fixed value) on one metric.

    A cell names a value for every axis with more than one value (``train.seed`` excepted: the
    claim pairs the two cells by seed). What the paper claims about a - b is ``expect``; left out,
    it is the sign of the paper's own numbers."""
    model_config = ConfigDict(extra="forbid")
    says: str = Field(description="the claim in words, as the paper makes it")
    a: dict[str, Any] = Field(description="cell a: axis key -> value")
    b: dict[str, Any] | float = Field(description="cell b (axis key -> value), or a value in ntbench's units")
    paper: PaperNumbers
    expect: Literal["higher", "lower", "same"] | None = Field(
        None, description="a against b as the paper claims it (default: the sign of paper.a - paper.b)")
    metric: str | None = Field(None, description="default: the suite's objective; else one of report.metrics")
    note: str = Field("", description="where the numbers come from when the paper is ambiguous")

    def expected(self) -> str:
        if self.expect:
            return self.expect
        gap = self.paper.a - self.paper.b
        return "higher" if gap > 0 else "lower" if gap < 0 else "same"


class PaperTable(BaseModel):
    """The paper's table (or figure) a suite re-asks, and the claims of it the report judges."""
    model_config = ConfigDict(extra="forbid")
    table: str = Field(description="the paper's table or figure, e.g. 'Table 6 (top)'")
    source: str = Field("", description="where in the paper the claims are made, and how numbers were read")
    claims: list[PaperClaim] = Field(min_length=1)


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # an identifier: the name becomes a folder under the results root and must not leave it
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                      description="identifier (letters, digits, _ . -): the suite's folder under the results root")
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    ranges: dict[str, Range] = Field(default_factory=dict)
    sampler: Sampler = Field(default_factory=Sampler)
    objective: str = "reasoning.tf_paper_oIoU"
    direction: Literal["maximize", "minimize"] = Field(
        None, description="left out: minimize for a lower-is-better objective (FID, KID, costs), else maximize",
        validate_default=False)
    report: ReportSpec = Field(default_factory=ReportSpec)
    # With a fixed step budget a 1-task cell gives its task several times the updates of a 4-task
    # cell; the paper (like its reference code: fixed epochs, each batch split across the tasks)
    # keeps the total fixed. ``main_task_updates`` instead scales each cell's steps so the
    # objective's task gets as many updates as under the defaults' task mix.
    budget: Literal["total_steps", "main_task_updates"] = Field(
        "total_steps", description="total_steps: every cell trains train.steps (the paper's design); "
                                   "main_task_updates: the objective's task gets the defaults' number of updates")
    paper: PaperTable | None = Field(None, description="the paper's claims this suite tests (report: paper vs ntbench)")
    # Settings that follow an axis value rather than vary on their own: the learning rate each
    # adapter was tuned to, say. A cell stays named by its axis values (labels, claims, report rows
    # unchanged); its trial config carries the linked settings, so every row records them.
    linked: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="axis key -> value (as labelled) -> {dotted key: value} set in "
                                           "the cells with that value, e.g. {adapter: {lora: {train.lr: 0.001}}}")

    @model_validator(mode="after")
    def _direction_follows_the_objective(self) -> "Suite":
        # set here, not as a plain default, so that `objective: t2i.FID` alone does not maximize FID; a suite
        # that names its objective's usual direction, or leaves a higher-is-better one's out, hashes as before
        if self.direction is None:
            self.direction = "minimize" if lower_is_better(self.objective) else "maximize"
        return self

    def content_hash(self) -> str:
        """The suite's content plus the recipes of the backbones it names: a changed recipe changes
        what the cells train, so it must not resume a study run under the old one."""
        from ntbench.train.recipes import recipe_for

        backbones = {self.defaults.get("backbone")} | set(map(str, self.axes.get("backbone", [])))
        in_effect = adapter_recipes_in_effect(self)
        recipes = {}
        for b in sorted({str(b) for b in backbones} | set(in_effect)):
            recipe = recipe_for(b)
            if recipe or b in in_effect:
                recipes[b] = _hashed_recipe(recipe) | ({"adapters": in_effect[b]} if b in in_effect else {})
        # the paper's claims change what the report says, not what a cell trains: not in the hash
        content = self.model_dump(exclude={"paper"}) | ({"recipes": recipes} if recipes else {})
        if content["budget"] == "total_steps":  # the default leaves the studies of earlier suites their names
            del content["budget"]
        if not content["linked"]:  # likewise
            del content["linked"]
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def study_name(self) -> str:
        """Derived from the content: editing a suite starts a new study instead of clashing."""
        return f"{self.name}-{self.content_hash()}"


# recipe switches that act only on CUDA (bf16 autocast, activation checkpointing): left out of a suite's
# hash, so pinning them renames no study. A half-run CPU study keeps resuming across such a change;
# a study moved between CPU and GPU is flagged anyway (runner.setup_notice, the report's banner)
CUDA_ONLY_TRAIN_KEYS = ("bf16", "gradient_checkpointing")


def _hashed_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in recipe.get("train", {}).items() if k not in CUDA_ONLY_TRAIN_KEYS}
    return {**recipe, "train": train} if "train" in recipe else recipe


def adapter_recipes_in_effect(suite: Suite) -> dict[str, dict[str, dict[str, Any]]]:
    """The adapter-specific recipe settings (``ntbench.train.recipes.ADAPTER_RECIPES``) that some cell of
    ``suite`` trains with: backbone -> adapter -> {dotted key: value}, leaving out what every such cell sets
    itself (an lr axis or range, a `linked` lr). In the study's hash: a changed per-adapter setting changes
    what those cells train, and a suite whose cells set it themselves keeps its study name."""
    from ntbench.train.recipes import adapter_recipe
    from ntbench.train.trial import TrialConfig

    default_backbone, default_adapter = (TrialConfig.model_fields[k].default for k in ("backbone", "adapter"))
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for cell in grid_cells(suite):
        config = resolve(suite, cell)
        backbone = str(config.get("backbone", default_backbone))
        adapter = config.get("adapter", default_adapter)
        for path, value in leaf_paths(adapter_recipe(backbone, adapter)):
            key = ".".join(path)
            if key not in suite.ranges and not _has_path(config, path):
                found.setdefault(backbone, {}).setdefault(str(adapter), {})[key] = value
    return found


def leaf_paths(mapping: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every leaf of a nested mapping with the keys that lead to it (an empty mapping is a leaf)."""
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out += leaf_paths(value, (*prefix, key))
        else:
            out.append(((*prefix, key), value))
    return out


def _has_path(config: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = config
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


EMPTY_LABEL = "default"  # an empty mapping sets nothing: the cell runs on the defaults


def label(value: Any) -> Any:
    """A short, hashable label for an axis value (Optuna parameters must be primitives).

    An empty mapping is ``"default"``: an empty string would come back from trials.csv as NaN."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict) and not value:
        return EMPTY_LABEL
    # a task mix ({reasoning: 1, t2i: 2}); not a flag ({ema: false}): a bool is an int, but "ema:0" misleads
    if isinstance(value, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        if all(v == 1 for v in value.values()):
            return "+".join(value)
        return "+".join(f"{k}:{v:g}" for k, v in value.items())
    return json.dumps(value, sort_keys=True)


def set_dotted(config: dict, key: str, value: Any) -> None:
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise KeyError(key)
    node[parts[-1]] = value


def resolve(suite: Suite, overrides: dict[str, Any]) -> dict[str, Any]:
    """The defaults with a cell's axis values laid on, then the settings linked to those values."""
    config = copy.deepcopy(suite.defaults)
    for key, value in overrides.items():
        # a copy: a later axis that sets a key inside this value (adapter_options, then adapter_options.beta)
        # must not write into the suite's own axis value, whose label names the cell in the storage
        set_dotted(config, key, copy.deepcopy(value))
    for key, value in overrides.items():
        for value_label, settings in suite.linked.get(key, {}).items():
            if same_label(label(value), value_label):
                for setting, setting_value in settings.items():
                    set_dotted(config, setting, copy.deepcopy(setting_value))
    return config


def grid_cells(suite: Suite) -> list[dict[str, Any]]:
    """Every combination of axis values (values, not labels), in a stable order."""
    keys = list(suite.axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(suite.axes[k] for k in keys))]


def trial_config(suite: Suite, overrides: dict[str, Any]):
    """The cell's TrialConfig, its steps set by the suite's budget rule."""
    from ntbench.train.trial import TrialConfig

    cfg = TrialConfig(**resolve(suite, overrides))
    if suite.budget == "main_task_updates":
        reference = TrialConfig(**resolve(suite, {}))
        main = suite.objective.partition(".")[0]
        updates = reference.train.steps * _share(reference.train.tasks, main, "defaults")
        steps = max(1, round(updates / _share(cfg.train.tasks, main, f"cell {overrides}")))
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": steps})})
    return cfg


def _share(tasks: dict[str, float], main: str, where: str) -> float:
    total = sum(r for r in tasks.values() if r > 0)
    if tasks.get(main, 0) <= 0:
        raise ValueError(f"budget main_task_updates: the {where} does not train the objective's task {main!r}")
    return tasks[main] / total


def same_label(x: Any, y: Any) -> bool:
    """Axis labels equal, as written in a suite or as read back from trials.csv (1 == 1.0 == "1.0")."""
    if x is None or y is None:
        return x is None and y is None
    try:
        return float(x) == float(y)
    except (TypeError, ValueError):
        return str(x) == str(y)


def cell_errors(suite: Suite, cell: dict[str, Any], where: str) -> list[str]:
    """A claim's cell names one value of each varied axis (not the seed), each a value of that axis."""
    errors = []
    for key, value in cell.items():
        if key == "train.seed":
            errors.append(f"{where}.{key}: a claim pairs its cells over the seeds; name no seed")
        elif key not in suite.axes:
            errors.append(f"{where}.{key}: not an axis of this suite; allowed: "
                          f"{', '.join(k for k in suite.axes if k != 'train.seed') or '(none)'}")
        elif not any(same_label(label(value), label(v)) for v in suite.axes[key]):
            errors.append(f"{where}.{key}: {value!r} is not a value of this axis; allowed: "
                          f"{', '.join(repr(v) for v in suite.axes[key])}")
    missing = [k for k, v in suite.axes.items() if k != "train.seed" and len(v) > 1 and k not in cell]
    if missing:
        errors.append(f"{where}: names no value for the axis(es) {', '.join(missing)} (each varies in this suite)")
    return errors


def paper_errors(suite: Suite, table: PaperTable | None = None) -> list[str]:
    """Every claim of the suite's ``paper`` block (or of ``table``) checked against the suite's axes."""
    table = table or suite.paper
    if table is None:
        return []
    errors = []
    metrics = [suite.objective, *suite.report.metrics]
    for i, claim in enumerate(table.claims):
        where = f"paper.claims[{i}]"
        errors += cell_errors(suite, claim.a, f"{where}.a")
        if isinstance(claim.b, dict):
            errors += cell_errors(suite, claim.b, f"{where}.b")
            if claim.a == claim.b:
                errors.append(f"{where}: a and b are the same cell")
        if claim.metric is not None and claim.metric not in metrics:
            errors.append(f"{where}.metric: {claim.metric!r}: the report shows only the objective and report.metrics; "
                          f"allowed: {', '.join(metrics)}")
    return errors
