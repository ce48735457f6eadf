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

This module reads and validates suite files; the typed models, labels and cells it checks live in
:mod:`ntbench.suite_models` and are re-exported here (``from ntbench.suite import Suite`` works).
"""
from __future__ import annotations

import copy
import difflib
import itertools
import os
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ntbench.adapters.sites import AdapterError
from ntbench.registry import UnknownNameError
# the typed models, labels and cells (ntbench.suite_models) are imported from here by the rest of ntbench
from ntbench.suite_models import (EMPTY_LABEL, LOWER_IS_BETTER, PaperClaim, PaperNumbers,  # noqa: F401
                                  PaperTable, Range, ReportSpec, Sampler, Suite, cell_errors, grid_cells, label,
                                  lower_is_better, paper_errors, resolve, same_label, set_dotted, trial_config)

# the columns every row of trials.csv has besides TASK.METRIC ones (ntbench.records.trial_rows): a suite's
# report.metrics may name them
ROW_METRICS = ("duration_s", "step_time_s", "peak_memory_mb", "tokens_per_s", "trainable_params", "adapter_params",
               "tflops_per_step")


class SuiteError(ValueError):
    """All problems found in a suite file, one per line."""

    def __init__(self, path: str, errors: list[str]):
        self.path, self.errors = path, errors
        super().__init__(f"{path}: {len(errors)} error(s)\n" + "\n".join(f"  - {e}" for e in errors))


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
            msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(root, err["loc"])
                near = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
                msg = "unknown key" + (f" (did you mean {near[0]!r}?)" if near else "") + \
                    (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
            value = repr(err.get("input"))
            # the value once: not again where the message quotes it already (as a whole, not inside a word)
            quoted = re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", msg)
            out.append(f"{where}{key}: {msg}" if not key or quoted else f"{where}{key}: {value}: {msg}")
        return out
    return [f"{where}{exc}"]


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
        what = "a folder, not a suite file" if path.is_dir() else "file not found"
        if _chain:  # named by the suite being read: the error is that suite's (its `extends:` key)
            raise SuiteError(str(_chain[0]), [f"extends: {path} (named by {_chain[-1]}): {what}"])
        raise SuiteError(str(path), [what])
    if path.resolve() in _chain:
        cycle = " -> ".join(str(p) for p in _chain[_chain.index(path.resolve()):] + (path.resolve(),))
        raise SuiteError(str(_chain[0]), [f"extends: a cycle: {cycle}"])
    try:
        # ${VAR} expands from the environment (paper suites point at weights this way); an
        # unset variable stays as written, so a suite validates even where weights are absent
        data = yaml.safe_load(os.path.expandvars(path.read_text()))
    except yaml.YAMLError as exc:  # read from a string, the parser calls the file "<unicode string>"
        raise SuiteError(str(path), [f"not valid YAML: {str(exc).replace('<unicode string>', str(path))}"]) from None
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
    keys = list(suite.axes)  # a cell lays its axes on in this order: a whole mapping after one of its keys drops it
    errors += [f"axes.{whole}: listed after axes.{part}, so it replaces that value in every cell; list {whole} first"
               for i, part in enumerate(keys) for whole in keys[i + 1:] if part.startswith(whole + ".")]
    for key, values in suite.axes.items():  # trials.csv and Optuna know a value only by its label
        labels = [label(v) for v in values] if isinstance(values, list) else []
        for dup in sorted({str(x) for x in labels if labels.count(x) > 1}):
            errors.append(f"axes.{key}: two values share the label {dup!r}; each value needs its own")
    errors += _linked_errors(suite)
    errors += _report_metric_errors(suite)
    values = _check_values(suite)
    # a claim naming a misspelled axis is a consequence: the root cause (the axis's own error) comes first
    errors += values + paper_errors(suite)
    if not errors:  # each value is fine on its own: now every combination of them
        errors += _check_cells(suite)
    if errors:
        raise SuiteError(str(path), errors)
    return suite


def _report_metric_errors(suite: Suite) -> list[str]:
    """``report.metrics``: each a row column (ROW_METRICS) or TASK.METRIC that some evaluation reports; a
    misspelled one would otherwise show only after the run, as a report section with no values."""
    from ntbench.eval.evaluate import metric_names
    from ntbench.model.tasks import TASKS

    errors = []
    for i, metric in enumerate(suite.report.metrics):
        task, _, name = metric.partition(".")
        if not name:
            if metric not in ROW_METRICS:
                near = difflib.get_close_matches(metric, ROW_METRICS, n=1)
                errors.append(f"report.metrics[{i}]: {metric!r}: not a metric"
                              + (f" (did you mean {near[0]!r}?)" if near else "")
                              + f"; allowed: TASK.METRIC (e.g. referring.tf_paper_oIoU) or {', '.join(ROW_METRICS)}")
        elif task not in TASKS:
            errors.append(f"report.metrics[{i}]: {metric!r}: unknown task {task!r}; allowed: {', '.join(TASKS.names())}")
        else:  # the names any configuration can report: generated answers and METEOR included
            allowed = metric_names(task, generated=True, meteor=True)
            if name not in allowed:
                near = difflib.get_close_matches(name, allowed, n=1)
                errors.append(f"report.metrics[{i}]: {metric!r}: {task} reports no {name!r}"
                              + (f" (did you mean {task}.{near[0]}?)" if near else "") + f"; allowed: {', '.join(allowed)}")
    return errors


def _linked_errors(suite: Suite) -> list[str]:
    """``linked`` names axes and their values, and sets only keys that no axis or range varies."""
    errors = []
    varied = [*suite.axes, *suite.ranges]
    for key, by_value in suite.linked.items():
        if key not in suite.axes:
            errors.append(f"linked.{key}: not an axis of this suite; allowed: {', '.join(suite.axes) or '(none)'}")
            continue
        labels = [label(v) for v in suite.axes[key]]
        for value_label, settings in by_value.items():
            if not any(same_label(value_label, x) for x in labels):
                errors.append(f"linked.{key}.{value_label}: not a value of axes.{key}; allowed: "
                              f"{', '.join(str(x) for x in labels)}")
            for setting in settings:
                if setting in varied:
                    errors.append(f"linked.{key}.{value_label}.{setting}: {setting!r} is an axis or range of "
                                  "this suite; a linked setting must not vary on its own")
    return errors


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
    return errors + _backbone_errors(config) + _adapter_errors(config)


def _backbone_errors(config: dict[str, Any]) -> list[str]:
    """A backbone named without a vision encoder must be a preset (or an existing folder): that is how the
    trial loads it (:func:`ntbench.model.backbone.load_backbone`), so a misspelt preset (``mirco``) fails
    every trial a minute in; say so now, with the nearest preset. An unset ``${VAR}`` is checked at run time."""
    from ntbench.model.backbone import BACKBONES

    name = config.get("backbone", "tiny-random")
    if not isinstance(name, str) or config.get("vision") or "${" in name or Path(name).expanduser().exists() \
            or name.startswith(("/", "./", "../", "~")):  # a missing path: TrialConfig reports it
        return []
    try:
        BACKBONES.get(name)
    except UnknownNameError as exc:
        return [f"backbone: {exc} (an HF id or local path of an LLM needs `vision:` too)"]
    return []


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
    errors = [e if e.startswith("objective:") else f"defaults.{e}" for e in base]  # objective is top-level
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
