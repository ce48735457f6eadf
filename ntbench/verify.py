"""Rerun a stored trial with the code checked out now and compare its numbers with the stored ones.

Why: a report's rows carry the commit that made them, and any later change to the code that runs a
trial marks them stale (:mod:`ntbench.freshness`), because nothing says the change left them alone.
Most changes do (a new option that defaults to the old behaviour, a CPU-only path untouched by a
CUDA fix). Rerunning one trial of the suite at HEAD, on the arithmetic setup it ran on, turns "may
differ" into a measurement: identical numbers, or the list of metrics that moved. Each check is
appended to ``verified.json`` in the suite's folder, and the report's banner reads it back.

A rerun proves the rows of that trial's commit and setup were not moved *on the code paths that
trial ran*; rows of the same commit made on another setup (a GPU, another thread count) stay stale.
A micro trial is rerun only on the micro backbone weights that made it (:mod:`ntbench.backbone_record`): another
CPU's arithmetic makes other weights, and a rerun on them would be recorded as "not identical" for a reason
that is not the code.
A cell with another adapter, strategy or task mix may run code the rerun never touched, so the
banner names the trials rerun, and several (``--trial`` repeated) can be checked.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
import yaml
from pydantic import ValidationError

from ntbench.atomic import write_text
from ntbench.backbone_record import RECORD, rerun_refusal
from ntbench.freshness import CODE_ROOT, VERIFIED, micro_version_at, read_verified
from ntbench.provenance import code_git_state, current_setup, setup_label
from ntbench.suite import Suite

# compared on its own (it may sit in a file beside the journal), so left out of the flat comparison
SEPARATE = ("activation_frequency",)


class VerifyError(ValueError):
    """A trial that cannot be rerun here as it ran (missing, unfinished, another setup, dirty tree)."""


def stored_trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials of the suite stored in ``folder`` (read from a copy: the committed journal is not touched)."""
    from ntbench.storage import make_storage

    journal, resolved = folder / "optuna.journal", folder / "suite.resolved.yaml"
    for needed in (journal, resolved):
        if not needed.is_file():
            raise VerifyError(f"{needed}: not found; `ntbench verify` needs a suite's results folder "
                              "(the one holding optuna.journal and suite.resolved.yaml)")
    suite = Suite(**yaml.safe_load(resolved.read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(journal, Path(tmp) / "optuna.journal")
        storage = make_storage(None, Path(tmp))
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        name = suite.study_name() if suite.study_name() in names else (names[0] if len(names) == 1 else None)
        if name is None:
            raise VerifyError(f"{journal}: holds studies {names}, none named {suite.study_name()!r}")
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=True)


def pick_trial(trials: list[optuna.trial.FrozenTrial], number: int | None) -> optuna.trial.FrozenTrial:
    """Trial ``number``, or the quickest complete one (the cheapest check) when None."""
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and "config" in t.user_attrs]
    if number is None:
        if not complete:
            raise VerifyError("no complete trial to rerun")
        return min(complete, key=lambda t: (t.user_attrs.get("duration_s") or math.inf, t.number))
    found = [t for t in complete if t.number == number]
    if not found:
        allowed = ", ".join(str(t.number) for t in complete) or "none"
        raise VerifyError(f"trial {number} is not a complete trial of this suite (complete: {allowed})")
    return found[0]


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k not in SEPARATE:
                out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}  # a leaf, or an empty mapping (kept, so that {} against nothing differs)


def differences(stored: dict, rerun: dict) -> list[str]:
    """Metric paths whose values differ bit for bit (NaN equals NaN; a path on one side only differs)."""
    a, b = _flat(json.loads(json.dumps(stored, default=str))), _flat(json.loads(json.dumps(rerun, default=str)))
    same = lambda x, y: json.dumps(x) == json.dumps(y)  # noqa: E731  (NaN == NaN, 0.1 != 0.1000000001)
    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not same(a[k], b[k]))


def check_rerunnable(folder: Path, number: int | None = None) -> tuple[optuna.trial.FrozenTrial, str, dict]:
    """Everything that can refuse a rerun, checked before any work: returns the trial, this setup
    (with the row's thread count, which this sets) and the code's git state. Raises :class:`VerifyError`."""
    trial = pick_trial(stored_trials(Path(folder)), number)
    prov = trial.user_attrs.get("summary", {}).get("provenance", {})
    if prov.get("git_dirty") is not False or not prov.get("git_commit"):
        raise VerifyError(f"trial {trial.number} was made from a tree with uncommitted changes (or records no clean "
                          "commit): its code is not a commit's, so a rerun cannot vouch for that commit's rows")
    threads, before = prov.get("torch_threads"), torch.get_num_threads()
    if isinstance(threads, int) and threads >= 1:
        torch.set_num_threads(threads)  # bit-exact only at the row's thread count (suite workers run one each)
    row_setup, here = setup_label(prov.get("cuda"), threads, prov.get("torch")), current_setup()
    git = code_git_state()
    refusal = None
    if row_setup is None or row_setup != here:
        refusal = (f"trial {trial.number} ran on {row_setup or 'an unrecorded setup'}, this machine is {here}: "
                   "its numbers can be rerun bit for bit only on the setup that made them")
    elif not git.get("git_commit") or git.get("git_dirty"):
        refusal = ("the code here has uncommitted changes (or is not a git checkout): a rerun would "
                   "not say anything about a commit; commit or stash, then verify")
    else:  # the same setup words, but another CPU may have made other micro weights (rows do not record the CPU)
        try:
            refusal = rerun_refusal(Path(folder), trial.user_attrs.get("config", {}),
                                    micro_version_at(CODE_ROOT, prov["git_commit"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a corrupt record must not leave threads changed
            refusal = f"{Path(folder) / RECORD}: cannot be read ({exc}), so which micro backbone made the rows is unknown"
    if refusal:
        torch.set_num_threads(before)
        raise VerifyError(refusal)
    return trial, here, git


def _stored_map(folder: Path, trial: optuna.trial.FrozenTrial) -> Any:
    """The trial's activation map: a file beside the journal, or (older suites) inside its summary."""
    name = trial.user_attrs.get("activation_frequency_file")
    if name and (folder / name).is_file():
        return json.loads((folder / name).read_text())
    return (trial.user_attrs.get("summary", {}).get("metrics") or {}).get("activation_frequency")


def verify_trial(folder: Path, number: int | None = None,
                 progress: Callable[[int, dict], None] | None = None,
                 run: Callable[..., dict] | None = None,
                 checked: tuple[optuna.trial.FrozenTrial, str, dict] | None = None) -> dict[str, Any]:
    """Rerun one stored trial at HEAD on its own setup; record and return the comparison.

    Args:
        folder: a suite's results folder (``optuna.journal``, ``suite.resolved.yaml``).
        number: the trial to rerun (default: the quickest complete one).
        progress: per-step callback, as ``run_trial`` takes (its record also holds ``total_steps``).
        run: what trains a config (default ``run_trial``; tests pass a stand-in).
        checked: what :func:`check_rerunnable` returned for this folder and number, when the caller
            ran it already (the journal is then not read a second time).

    Returns:
        the entry appended to ``folder/verified.json``: ``trial``, ``row_commit``, ``commit``,
        ``setup``, ``identical``, ``differing`` (metric paths), ``compared`` (how many), ``seconds``.

    Raises:
        VerifyError: no such complete trial; the trial was made from a dirty tree, or ran on another
            setup (device, thread count, torch version) than this machine's, or on other micro backbone
            weights than this machine's (another CPU's arithmetic); its stored configuration
            no longer validates; the code here has uncommitted changes or no git state.
    """
    from ntbench.train.trial import TrialConfig, run_trial

    folder = Path(folder)
    trial, here, git = checked or check_rerunnable(folder, number)
    summary, config = trial.user_attrs.get("summary", {}), trial.user_attrs["config"]
    prov = summary.get("provenance", {})
    try:
        cfg = TrialConfig(**config)
    except ValidationError as exc:
        raise VerifyError(f"trial {trial.number}: its stored configuration does not hold with this code: {exc}") from None
    start = time.perf_counter()
    rerun = (run or run_trial)(cfg, progress=progress and (  # the bar also needs how many steps
        lambda s, rec: progress(s, {**rec, "total_steps": cfg.train.steps})))
    stored = {"metrics": summary.get("metrics") or {}, "loss_first": summary.get("loss_first"),
              "loss_last": summary.get("loss_last")}
    diff = differences(stored, {"metrics": rerun["metrics"], "loss_first": rerun.get("loss_first"),
                                "loss_last": rerun.get("loss_last")})
    stored_map, rerun_map = _stored_map(folder, trial), rerun["metrics"].get("activation_frequency")
    if (stored_map is not None or rerun_map is not None) and \
            json.dumps(stored_map) != json.dumps(json.loads(json.dumps(rerun_map))):
        diff.append("metrics.activation_frequency")  # also when only one side has a map
    entry = {"trial": trial.number, "params": trial.params, "row_commit": prov.get("git_commit"),
             "row_dirty": prov.get("git_dirty"), "commit": git["git_commit"], "setup": here,
             "identical": not diff, "differing": diff[:20], "n_differing": len(diff),
             "compared": len(_flat(json.loads(json.dumps(stored, default=str)))) + (stored_map is not None),
             "seconds": round(time.perf_counter() - start, 1),
             "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    entries = read_verified(folder) + [entry]
    write_text(folder / VERIFIED, json.dumps(entries, indent=1) + "\n")
    return entry
