"""Suite YAML: typed defaults for a trial, the axes to vary, and the sampler.

    name: beta_grid
    description: Table 6 (top): reasoning-seg oIoU over beta x number of tasks
    defaults:                 # a partial TrialConfig (see ntbench.train.trial)
      backbone: micro
      adapter: neural
      train: {steps: 300}
    axes:                     # dotted key into the trial config -> values (a full grid)
      adapter_options.beta: [0.1, 0.2, 0.3]
      train.tasks: [{reasoning: 1}, {reasoning: 1, referring: 1}]
      train.seed: [0]
    sampler: {type: grid}     # or {type: tpe, n_trials: 30} with `ranges`
    objective: reasoning.tf_paper_oIoU
    report: {rows: train.tasks, cols: adapter_options.beta, plot: heatmap}

Every cell is validated as a full TrialConfig before anything runs, so a wrong key, a wrong
type, an out-of-range beta or an unknown strategy is reported with its dotted key at once.

``paper:`` (optional) names the paper's table the suite re-asks and the claims of it that the report
judges at its end (paper vs ntbench)::

    paper:
      table: Table 6 (top)
      source: where in the paper the claims are made
      claims:
        - says: four tasks, beta 0.4 beats beta 0.1
          a: {adapter_options.beta: 0.4, train.tasks: {reasoning: 1, referring: 1, captioning: 1, t2i: 1}}
          b: {adapter_options.beta: 0.1, train.tasks: {reasoning: 1, referring: 1, captioning: 1, t2i: 1}}
          paper: {a: 62.8, b: 62.0}   # as printed; their sign is the claim unless `expect` says otherwise
          # expect: higher | lower | same;  metric: (default: the objective);  note: ...
          # b may be a number instead of a cell: a fixed value in ntbench's units

A cell names a value of every varied axis but the seed; ``validate`` checks each against the axes.
The claims change what the report says, not what a cell trains: they are not in the study's name.

``extends: base.yaml`` (a path relative to the suite file) starts from another suite: mappings
merge key by key, the extending file wins, lists and other values replace. So a family of suites
(``suites/paper/``) writes only what differs.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ntbench.adapters.sites import AdapterError
from ntbench.registry import UnknownNameError


class SuiteError(ValueError):
    """All problems found in a suite file, one per line."""

    def __init__(self, path: str, errors: list[str]):
        self.path, self.errors = path, errors
        super().__init__(f"{path}: {len(errors)} error(s)\n" + "\n".join(f"  - {e}" for e in errors))


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
    direction: Literal["maximize", "minimize"] = "maximize"
    report: ReportSpec = Field(default_factory=ReportSpec)
    # With a fixed step budget a 1-task cell gives its task several times the updates of a 4-task
    # cell; the paper (like its reference code: fixed epochs, each batch split across the tasks)
    # keeps the total fixed. ``main_task_updates`` instead scales each cell's steps so the
    # objective's task gets as many updates as under the defaults' task mix.
    budget: Literal["total_steps", "main_task_updates"] = Field(
        "total_steps", description="total_steps: every cell trains train.steps (the paper's design); "
                                   "main_task_updates: the objective's task gets the defaults' number of updates")
    paper: PaperTable | None = Field(None, description="the paper's claims this suite tests (report: paper vs ntbench)")

    def content_hash(self) -> str:
        """The suite's content plus the recipes of the backbones it names: a changed recipe changes
        what the cells train, so it must not resume a study run under the old one."""
        from ntbench.train.recipes import recipe_for

        backbones = {self.defaults.get("backbone")} | set(map(str, self.axes.get("backbone", [])))
        recipes = {b: recipe_for(b) for b in sorted(str(b) for b in backbones) if recipe_for(b)}
        # the paper's claims change what the report says, not what a cell trains: not in the hash
        content = self.model_dump(exclude={"paper"}) | ({"recipes": recipes} if recipes else {})
        if content["budget"] == "total_steps":  # the default leaves the studies of earlier suites their names
            del content["budget"]
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def study_name(self) -> str:
        """Derived from the content: editing a suite starts a new study instead of clashing."""
        return f"{self.name}-{self.content_hash()}"


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
    config = copy.deepcopy(suite.defaults)
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def grid_cells(suite: Suite) -> list[dict[str, Any]]:
    """Every combination of axis values (values, not labels), in a stable order."""
    keys = list(suite.axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(suite.axes[k] for k in keys))]


def _model_in(ann: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation: ``M``, ``M | None``, ``list[M]``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return next((m for m in map(_model_in, get_args(ann)) if m is not None), None)


def _allowed_keys(root: type[BaseModel] | None, loc: tuple) -> list[str]:
    model = root
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list of models: the same model
            continue
        field = model.model_fields.get(str(part)) if model else None
        model = _model_in(getattr(field, "annotation", None))
    return list(model.model_fields) if model else []


def _key(loc: tuple) -> str:
    """``('paper', 'claims', 2, 'a')`` -> ``paper.claims[2].a``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _format_error(where: str, exc: Exception, root: type[BaseModel] | None = None) -> list[str]:
    if isinstance(exc, ValidationError):
        out = []
        for err in exc.errors():
            key = _key(err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(root, err["loc"])
                msg = "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
            out.append(f"{where}{key}: {err.get('input')!r}: {msg}")
        return out
    return [f"{where}{exc}"]


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


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: mappings merge key by key, anything else in ``over`` replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def read_suite_file(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The suite's mapping with its ``extends:`` chain merged in (not validated yet).

    Raises:
        SuiteError: a missing file, invalid YAML, not a mapping, or an ``extends`` cycle.
    """
    path = Path(path)
    if not path.is_file():
        raise SuiteError(str(path), ["file not found" if not _chain else f"extended by {_chain[-1]}: file not found"])
    if path.resolve() in _chain:
        cycle = " -> ".join(str(p) for p in _chain[_chain.index(path.resolve()):] + (path.resolve(),))
        raise SuiteError(str(_chain[0]), [f"extends: a cycle: {cycle}"])
    try:
        # ${VAR} expands from the environment (paper suites point at weights this way); an
        # unset variable stays as written, so a suite validates even where weights are absent
        data = yaml.safe_load(os.path.expandvars(path.read_text()))
    except yaml.YAMLError as exc:
        raise SuiteError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise SuiteError(str(path), ["expected a mapping with keys name, defaults, axes, sampler, ..."])
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise SuiteError(str(path), [f"extends: {parent!r}: expected one path, relative to this file"])
    return deep_merge(read_suite_file(path.parent / parent, _chain + (path.resolve(),)), data)


def load_suite(path: str | Path) -> Suite:
    """Read and fully validate a suite file; raises SuiteError listing every problem."""
    data = read_suite_file(path)
    try:
        suite = Suite(**data)
    except ValidationError as exc:
        raise SuiteError(str(path), _format_error("", exc, Suite)) from None
    errors: list[str] = []
    if suite.sampler.type == "grid" and suite.ranges:
        errors.append(f"ranges: {list(suite.ranges)}: ranges need sampler.type tpe or random; allowed for grid: axes")
    if suite.sampler.type != "grid" and not suite.sampler.n_trials:
        errors.append("sampler.n_trials: required for tpe/random samplers")
    for key, values in suite.axes.items():
        if not isinstance(values, list) or not values:
            errors.append(f"axes.{key}: must be a non-empty list of values")
    varied = [*suite.axes, *suite.ranges]
    for part in ("rows", "cols"):  # a report layout on a key that never varies has nothing to lay out
        key = getattr(suite.report, part)
        if key is not None and key not in varied:
            errors.append(f"report.{part}: {key!r} is not an axis or range of this suite; allowed: "
                          f"{', '.join(varied) or '(none: the suite has no axes)'}")
    for key, values in suite.axes.items():  # trials.csv and Optuna know a value only by its label
        labels = [label(v) for v in values] if isinstance(values, list) else []
        for dup in sorted({str(x) for x in labels if labels.count(x) > 1}):
            errors.append(f"axes.{key}: two values share the label {dup!r}; each value needs its own")
    errors += paper_errors(suite)
    errors += _check_values(suite)
    if not errors:  # each value is fine on its own: now every combination of them
        errors += _check_cells(suite)
    if errors:
        raise SuiteError(str(path), errors)
    return suite


def _adapter_errors(config: dict[str, Any]) -> list[str]:
    """Adapter name, options and strategy of a resolved trial config, checked on their own."""
    from ntbench.adapters import ADAPTERS
    from ntbench.adapters.options import validate_options
    from ntbench.strategies import make_strategy

    name, options = config.get("adapter", "neural"), config.get("adapter_options", {}) or {}
    try:
        cls = ADAPTERS.get(name)
        opts = validate_options(cls.options_model, ADAPTERS.canonical(name), options)
        if hasattr(opts, "strategy"):
            make_strategy(opts.strategy, beta=opts.beta, **opts.strategy_options)
    except (AdapterError, UnknownNameError, ValueError, FileNotFoundError) as exc:
        return [f"adapter_options: {exc}" if not isinstance(exc, UnknownNameError) or "adapter " not in str(exc)
                else f"adapter: {exc}"]
    return []


def _probe(suite: Suite, overrides: dict[str, Any]) -> list[str]:
    from ntbench.train.trial import TrialConfig

    try:
        config = resolve(suite, overrides)
    except KeyError as exc:
        return [f"{exc.args[0]}: cannot set this key (a parent key is not a mapping)"]
    errors = []
    try:
        errors += _objective_errors(suite, TrialConfig.model_validate(config))
    except ValidationError as exc:
        errors += [e for e in _format_error("", exc, TrialConfig) if not e.startswith(": ")]
    except (AdapterError, UnknownNameError, ValueError, FileNotFoundError):
        pass  # adapter problems are reported below, once and precisely
    return errors + _adapter_errors(config)


def _objective_errors(suite: Suite, cfg) -> list[str]:
    """An objective no trial will report fails every trial with an empty reason: say so now."""
    from ntbench.eval.evaluate import metric_names
    from ntbench.model.tasks import TASKS

    task, _, name = suite.objective.partition(".")
    if not name:
        return [f"objective: {suite.objective!r}: expected TASK.METRIC, e.g. reasoning.tf_paper_oIoU"]
    if task not in TASKS:
        return [f"objective: {suite.objective!r}: unknown task {task!r}; allowed: {', '.join(TASKS.names())}"]
    if cfg.train.tasks.get(TASKS.canonical(task), 0) <= 0:
        return [f"objective: {suite.objective!r}: this cell does not train {task!r} "
                f"(train.tasks: {', '.join(t for t, r in cfg.train.tasks.items() if r > 0)})"]
    allowed = metric_names(task, generated=cfg.eval_generated, meteor=cfg.meteor)
    if name not in allowed:
        return [f"objective: {suite.objective!r}: {task} reports no {name!r} here; allowed: {', '.join(allowed)}"]
    return []


def _check_values(suite: Suite) -> list[str]:
    """Every default and every axis/range value, each resolved into a full trial config.

    An error already present in the defaults is reported once, under ``defaults``.
    """
    base = _probe(suite, {})
    errors = [f"defaults.{e}" for e in base]
    for key, values in suite.axes.items():
        for i, value in enumerate(values):
            errors += [f"axes.{key}[{i}] = {value!r} -> {e}" for e in _probe(suite, {key: value}) if e not in base]
    for key, rng in suite.ranges.items():
        for end in ("low", "high"):
            errors += [f"ranges.{key}.{end} -> {e}" for e in _probe(suite, {key: getattr(rng, end)}) if e not in base]
    return list(dict.fromkeys(errors))


def _cells_to_check(suite: Suite) -> list[dict[str, Any]]:
    """Every grid cell; with ranges (tpe/random), every axis combination at each corner of the ranges."""
    corners = [dict(zip(suite.ranges, ends)) for ends in
               itertools.product(*((r.low, r.high) for r in suite.ranges.values()))]
    return [{**cell, **corner} for cell in grid_cells(suite) for corner in corners]


def _check_cells(suite: Suite) -> list[str]:
    """Each cell as a whole TrialConfig. Values valid one by one can still clash: an option that one
    adapter of an axis takes and another does not (``adapter: [neural, lora]`` with
    ``adapter_options.dz``) fails only in the cells that combine them. Each distinct problem is
    reported once, with the first cell that shows it and how many cells do."""
    found: dict[str, list[dict[str, Any]]] = {}
    for cell in _cells_to_check(suite):
        for error in _probe(suite, cell):
            found.setdefault(error, []).append(cell)
    out = []
    for error, cells in found.items():
        where = ", ".join(f"{k} = {v!r}" for k, v in cells[0].items())
        more = f" (and {len(cells) - 1} more cells)" if len(cells) > 1 else ""
        out.append(f"cell {{{where}}}{more} -> {error}")
    return out


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
