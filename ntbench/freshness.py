"""Are stored result rows from the code HEAD would run, and from the micro backbone it would build?

Every trial row carries ``prov.git_commit`` and ``prov.git_dirty`` (:mod:`ntbench.provenance`).
A row is *stale* when the code that runs a trial (:data:`RUN_CODE`) differs at its commit from HEAD, when it came from a dirty tree, or when the
micro backbone it used has another version than HEAD's. Rows carry no backbone version, but the
version is a constant in the code (``MICRO_VERSION`` in ``ntbench/micro/recipe.py``, earlier
``ntbench/micro.py``), so it is read from the row's commit in git. A report with stale rows says so in a banner at the top.

A second banner, :func:`setup_banner`, says when a suite's rows come from more than one arithmetic
setup (CPU or which GPU, thread count, torch version): a seed is bit-reproducible only within one,
so a pair of cells split across setups compares two unlike draws, and pairing loses its power.
"""
from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import logging

import pandas as pd

from ntbench.provenance import row_setup

log = logging.getLogger(__name__)

# where MICRO_VERSION has lived (the module became a package): the first that exists at a commit counts
RECIPES = ("ntbench/micro/recipe.py", "ntbench/micro.py")
_VERSION = re.compile(r"^MICRO_VERSION\s*=\s*(\d+)", re.M)
CODE_ROOT = Path(__file__).resolve().parents[1]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:  # no git on this machine: nothing can be checked
        return subprocess.CompletedProcess(["git", *args], 128, "", str(exc))


def micro_version_at(root: Path, commit: str) -> int | None:
    """``MICRO_VERSION`` in the recipe at ``commit`` (None: unknown commit or no recipe there)."""
    for recipe in RECIPES:
        res = _git(root, "show", f"{commit}:{recipe}")
        found = _VERSION.search(res.stdout) if res.returncode == 0 else None
        if found:
            return int(found.group(1))
    return None


# the code that can change a trial's numbers: the library, the strategy plugins and, in pyproject.toml, the
# [project] table (dependency ranges, Python version; the tool sections, e.g. the import-linter layers, do not
# count). Results, documentation, tests, suites (a row carries its own resolved configuration) and CI do not
# count, so committing results or fixing a README does not age the rows
RUN_CODE = ("ntbench", "strategies")
PROJECT_FILE = "pyproject.toml"
# modules that only read finished rows or finished trials (tables, plots, their statistics, this check, the rerun
# check, pooling suite folders, the per-template breakdown of a saved trial, which backbone made a folder's rows,
# the evaluation set's noise between two saved trials):
# a trial never runs them (a test keeps trials from importing them), so a change to how results are reported or
# checked does not age the results
REPORT_ONLY = ("ntbench/report.py", "ntbench/plots.py", "ntbench/paper_table.py", "ntbench/stats.py",
               "ntbench/freshness.py", "ntbench/verify.py", "ntbench/wall_time.py", "ntbench/refresh.py",
               "ntbench/breakdown.py", "ntbench/pool.py", "ntbench/backbone_record.py",
               "ntbench/eval_noise.py", "ntbench/saved_trial.py")
# the command line: it only turns arguments into a configuration, which every row records (and `verify`
# reruns from the row's own copy), and calls the library. The layers contract (pyproject.toml) keeps the
# library from importing it, and a test keeps it from setting global state (threads, determinism, seeds,
# environment), so a change to a command's options or messages does not age the results either. Two
# channels stay outside that argument, kept thin on purpose: the data callback (`ui.make_data_with_bar`
# only wraps `ntbench.data.cache.resolve_data` with a bar) and `prepare`, which builds the micro backbone
# through `ntbench.micro` (whose code and MICRO_VERSION do count)
CLI_ONLY = ("ntbench/cli",)
# the modules that turn a suite file into each cell's trial config. Every row records the config it ran (the
# journal's ``config`` attribute), so a change to them ages a row only if HEAD now resolves the row's cell to
# another config: that is checked row by row (:func:`configs_head_reproduces`) instead of assumed, and a row
# whose commit differs from HEAD in these files alone, with a config HEAD reproduces, is not stale
# The backbones' recipes (ntbench/train/recipes.py) are of the same kind: they act only when a config is built,
# and a recorded config is complete, so the recipe changes nothing in a rerun of it
CONFIG_ONLY = ("ntbench/suite.py", "ntbench/suite_models.py", "ntbench/train/recipes.py")


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def project_table(text: str) -> str:
    """The ``[project]`` table of a pyproject.toml and its sub-tables (``[project.optional-dependencies]``,
    ``[project.entry-points...]``, ...), also root-level ``project.x = ...`` keys; blank lines dropped and
    line endings normalised. What can change how the project installs, so a change to it ages the rows."""
    kept, table = [], ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            table = header.group(1).replace('"', "").replace(" ", "")
        root_key = not table and line.lstrip().startswith("project.")
        if (table == "project" or table.startswith("project.") or root_key) and line.strip():
            kept.append(line.rstrip())
    return "\n".join(kept)


def code_differs(root: Path, commit: str, head: str, beyond_config: bool = False) -> bool | None:
    """Whether the code that runs a trial differs between ``commit`` and ``head`` (None: unknown commit):
    :data:`RUN_CODE` less :data:`REPORT_ONLY` and :data:`CLI_ONLY`, and pyproject.toml's ``[project]`` table;
    with ``beyond_config``, also less :data:`CONFIG_ONLY`."""
    left_out = REPORT_ONLY + CLI_ONLY + (CONFIG_ONLY if beyond_config else ())
    res = _git(root, "diff", "--quiet", commit, head, "--", *RUN_CODE, *(f":(exclude){p}" for p in left_out))
    code = {0: False, 1: True}.get(res.returncode)
    if code is not False:
        return code
    # the diff above knew both commits; a commit without the file compares as an empty table
    old, new = (_git(root, "show", f"{c}:{PROJECT_FILE}") for c in (commit, head))
    return project_table(old.stdout if old.returncode == 0 else "") != \
        project_table(new.stdout if new.returncode == 0 else "")


VERIFIED = "verified.json"  # a suite folder's record of `ntbench verify` reruns (ntbench.verify)


def read_verified(folder: Path | None) -> list[dict]:
    """The well-formed reruns recorded in ``folder/verified.json`` ([] when there are none).

    A hand-edited or truncated file must not stop a report, nor vouch for rows: entries that lack a
    field, or whose ``identical`` is not literally true or false, are left out with a warning."""
    path = Path(folder) / VERIFIED if folder is not None else None
    if path is None or not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        log.warning("%s: not valid JSON (%s); its reruns are ignored", path, exc)
        return []
    good = [e for e in entries if isinstance(e, dict) and isinstance(e.get("trial"), int)
            and isinstance(e.get("identical"), bool) and all(isinstance(e.get(k), str) for k in ("row_commit", "commit", "setup"))
            and e.get("row_dirty") is not True] if isinstance(entries, list) else []
    if not isinstance(entries, list) or len(good) < len(entries):
        log.warning("%s: %s malformed entries ignored", path, len(entries) - len(good) if isinstance(entries, list) else "all")
    return good


def _reruns(root: Path, head: str, verified: list[dict]) -> dict[tuple[str, str], dict[str, list[int]]]:
    """Reruns made with HEAD's trial code, by the (commit, setup) of the rows they checked: the trials
    that came back identical and those that did not."""
    out: dict[tuple[str, str], dict[str, list[int]]] = {}
    same_as_head: dict[str, bool] = {}
    for e in verified:
        at = e["commit"]
        if at not in same_as_head:  # a rerun starts from the row's own config: the suite modules are not on its path
            same_as_head[at] = code_differs(root, at, head, beyond_config=True) is False
        if same_as_head[at]:
            found = out.setdefault((e["row_commit"], e["setup"]), {"identical": [], "different": []})
            found["identical" if e["identical"] else "different"].append(e["trial"])
    return out


def _micro_version_now(root: Path) -> int | None:
    for recipe in RECIPES:
        found = _VERSION.search((root / recipe).read_text()) if (root / recipe).is_file() else None
        if found:
            return int(found.group(1))
    return None


def configs_head_reproduces(suite, df: pd.DataFrame, configs: dict[int, dict]) -> set[int]:
    """The trials (numbers) whose recorded config HEAD's suite code resolves their cell to again.

    Args:
        suite: the suite the rows were run from (its ``suite.resolved.yaml``).
        df: trial rows (``trial`` and the ``param.<axis>`` labels).
        configs: trial number -> the config the trial ran (the journal's ``config`` attribute).
    """
    from ntbench.suite_models import same_label, trial_config
    from ntbench.suite_models import label as axis_label

    def normal(config: dict) -> str:
        return json.dumps(config, sort_keys=True, default=str)

    out = set()
    for row in df.to_dict("records"):
        number, recorded = row.get("trial"), configs.get(row.get("trial"))
        if recorded is None:
            continue
        cell = {}
        for key, values in suite.axes.items():
            found = [v for v in values if same_label(row.get(f"param.{key}"), axis_label(v))]
            if len(found) != 1:
                break
            cell[key] = found[0]
        else:
            try:
                mine = trial_config(suite, cell).model_dump()
            except (ValueError, KeyError):  # a cell HEAD cannot resolve: not reproduced
                continue
            if normal(mine) == normal(recorded):
                out.add(int(number))
    return out


def stale_rows(df: pd.DataFrame, backbone: str | None, root: Path = CODE_ROOT, verified: list[dict] = (),
               config_reproduced: set[int] | None = None) -> dict:
    """Counts of complete rows made by other code, a dirty tree, or another micro backbone version.

    Args:
        df: trial rows (``prov.git_commit``, ``prov.git_dirty``; ``param.backbone`` if an axis).
        backbone: the suite's default backbone, for rows without a ``param.backbone`` column.
        root: the git checkout of the code (default: this package's).
        verified: ``ntbench verify`` reruns (:func:`read_verified`). A row made by trial code that
            differs from HEAD's moves from ``other_code`` to ``rechecked`` when a rerun of its commit,
            on its setup, with HEAD's trial code gave identical numbers; a rerun that differed is
            listed in ``contradicted`` and keeps its commit's rows of that setup stale.
        config_reproduced: trials whose recorded config HEAD resolves again (:func:`configs_head_reproduces`):
            a row whose commit differs from HEAD only in :data:`CONFIG_ONLY` is fresh if it is one of them.

    Returns:
        ``{"rows", "head", "other_code": {commit: n}, "rechecked": {commit: (n, [trials])},
        "contradicted": {commit: [trials]}, "unknown_commit": {commit: n}, "no_commit", "dirty",
        "micro_now", "micro_other": {version: n}}``.
    """
    done = df[df.status == "COMPLETE"] if "status" in df else df
    head = _git(root, "rev-parse", "HEAD").stdout.strip() or None
    commits = done["prov.git_commit"] if "prov.git_commit" in done else pd.Series([None] * len(done), index=done.index)
    backbones = done["param.backbone"] if "param.backbone" in done else \
        pd.Series([backbone] * len(done), index=done.index)
    micro_now = _micro_version_now(root)
    setups_ = done.apply(row_setup, axis=1) if len(done) else pd.Series([], dtype=object)
    reruns = _reruns(root, head, list(verified)) if head and verified else {}
    differs, beyond, versions = {}, {}, {}
    other, unknown, micro_other = Counter(), Counter(), Counter()
    rechecked: dict[str, list] = {}
    contradicted: dict[str, set] = {}
    dirty_rows = done["prov.git_dirty"].astype(str).str.lower().eq("true") if "prov.git_dirty" in done else \
        pd.Series([False] * len(done), index=done.index)
    dirty = int(dirty_rows.sum())
    numbers = done["trial"] if "trial" in done else pd.Series([None] * len(done), index=done.index)
    for commit, bb, setup, row_dirty, number in zip(commits, backbones, setups_, dirty_rows, numbers):
        if not isinstance(commit, str) or not commit:
            continue
        if head and commit not in differs:
            differs[commit] = code_differs(root, commit, head)
            if differs[commit] and config_reproduced is not None:  # only the suite modules differ: fresh if ...
                beyond[commit] = code_differs(root, commit, head, beyond_config=True) is False
        # ... HEAD resolves this row's cell to the config it ran
        config_fresh = bool(beyond.get(commit)) and not row_dirty and number in config_reproduced
        if differs.get(commit) is None:
            unknown[commit] += 1
        elif differs[commit] and not config_fresh:
            found = reruns.get((commit, setup), {"identical": [], "different": []})
            if found["different"]:
                contradicted.setdefault(commit, set()).update(found["different"])
            # a clean rerun of this commit, on this row's setup, vouches for its clean rows only
            if found["identical"] and not found["different"] and not row_dirty:
                entry = rechecked.setdefault(commit, [0, set()])
                entry[0] += 1
                entry[1].update(found["identical"])
            else:
                other[commit] += 1
        if bb == "micro":
            versions.setdefault(commit, micro_version_at(root, commit))
            if versions[commit] is not None and versions[commit] != micro_now:
                micro_other[versions[commit]] += 1
    no_commit = int(sum(not isinstance(c, str) or not c for c in commits))
    rechecked = {c: (n, sorted(t)) for c, (n, t) in rechecked.items()}
    contradicted = {c: sorted(t) for c, t in contradicted.items()}
    return {"rows": len(done), "head": head, "other_code": dict(other), "rechecked": rechecked,
            "contradicted": contradicted, "unknown_commit": dict(unknown),
            "no_commit": no_commit, "dirty": dirty, "micro_now": micro_now, "micro_other": dict(micro_other)}


def banner(df: pd.DataFrame, backbone: str | None, root: Path = CODE_ROOT, folder: Path | None = None,
           config_reproduced: set[int] | None = None) -> list[str]:
    """Markdown lines for the top of a report (empty when every row is from HEAD's code and backbone).

    ``folder``: the suite's results folder, whose ``verified.json`` (``ntbench verify``) may show that
    rows made by older trial code are what HEAD's code gives. ``config_reproduced``: see :func:`stale_rows`."""
    s = stale_rows(df, backbone, root, read_verified(folder), config_reproduced)
    notes = []
    if s["micro_other"]:
        made = ", ".join(f"{n} on v{v}" for v, n in sorted(s["micro_other"].items()))
        notes.append(f"rows made on another micro backbone version ({made}); this code builds v{s['micro_now']}")
    if s["other_code"]:
        made = ", ".join(f"{n} by {c[:10]}" for c, n in sorted(s["other_code"].items()))
        notes.append(f"rows made by code that differs from the code this report was made with, commit "
                     f"{str(s['head'])[:10]} ({made})")
    for commit, trials in sorted(s["contradicted"].items()):
        notes.append(f"`ntbench verify` reran trial{'s' if len(trials) > 1 else ''} {', '.join(map(str, trials))} "
                     f"of commit {commit[:10]} with this code and got different numbers (verified.json)")
    if s["head"] is None and s["rows"]:
        notes.append("this code is not a git checkout, so the rows' code versions cannot be checked")
    elif s["unknown_commit"]:
        made = ", ".join(f"{n} by {c[:10]}" for c, n in sorted(s["unknown_commit"].items()))
        notes.append(f"rows made by commits this checkout does not have ({made})")
    if s["no_commit"]:
        notes.append(f"{s['no_commit']} rows carry no git commit")
    if s["dirty"]:
        notes.append(f"{s['dirty']} rows made from a tree with uncommitted code changes")
    lines = []
    if s["rechecked"]:
        made = "; ".join(f"{n} rows by {c[:10]}, rerun: trial{'s' if len(t) > 1 else ''} {', '.join(map(str, t))}"
                         for c, (n, t) in sorted(s["rechecked"].items()))
        lines += ["> **Rechecked.** The trial code changed after some rows were made, and `ntbench verify` reran "
                  f"one or more of their trials with this code on the same setup: identical numbers ({made}; "
                  "verified.json). Cells that run other code paths (another adapter, strategy or task) were "
                  "not rerun themselves.", ""]
    if not notes:
        return lines
    return lines + ["> **Stale results.** Of the " + f"{s['rows']} complete rows: " + "; ".join(notes) + ". These numbers "
            "may not be what the current code gives; rerun the suite to refresh them.", ""]


def setups(df: pd.DataFrame) -> Counter:
    """Complete rows per arithmetic setup (rows that do not record one are left out)."""
    done = df[df.status == "COMPLETE"] if "status" in df else df
    if done.empty or not all(c in done for c in ("prov.torch_threads", "prov.torch")):
        return Counter()
    return Counter(label for label in done.apply(row_setup, axis=1) if isinstance(label, str))


def setup_banner(df: pd.DataFrame) -> list[str]:
    """Markdown lines for the top of a report where one seed's rows span arithmetic setups (else []).

    Pairing compares cells within a seed, so rows on two setups do no harm while each seed stays on
    one; a seed split across setups pairs two unlike runs.
    """
    found = setups(df)
    if len(found) < 2:
        return []
    done = df[df.status == "COMPLETE"] if "status" in df else df
    labels = done.apply(row_setup, axis=1)
    if "param.train.seed" in done:
        split = sorted(seed for seed, group in labels.groupby(done["param.train.seed"]) if group.dropna().nunique() > 1)
        if not split:
            return []
        where = f"seed{'s' if len(split) > 1 else ''} {', '.join(str(x) for x in split)} ran on more than one"
    else:
        where = "the suite has no seed axis, and its rows ran on more than one"
    made = "; ".join(f"{n} on {label}" for label, n in sorted(found.items()))
    return [f"> **Mixed machines.** The complete rows come from {len(found)} arithmetic setups ({made}), and "
            f"{where}. A seed is bit-reproducible only within one setup, so a paired difference across "
            "setups compares two unlike runs, and its interval may be wider than a one-setup run's. "
            "Rerun the suite on one kind of machine to compare like with like.", ""]
