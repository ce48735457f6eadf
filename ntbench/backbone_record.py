"""Which micro backbone made a suite's rows: ``backbone.json`` in the suite's folder, checked on resume and
before a rerun.

The same recipe and seed make other weights on a CPU whose arithmetic differs (another instruction
set or torch build; measured on an AVX-512/AMX machine, README "Reproducibility"), and the trial rows
do not record the CPU. Two cells pair by seed only if both ran on the same backbone, so `ntbench run`
records the weights' hashes with the first rows and refuses to add rows made with other weights, and
`ntbench verify` refuses to rerun a row on other weights: the rerun would differ for a reason that is not the
code, and its "not identical" would be written into the folder's ``verified.json``.

Read by commands only (run, prepare, verify, pool), never by a trial (``ntbench.freshness.REPORT_ONLY``).
"""
from __future__ import annotations

import json
from pathlib import Path

RECORD = "backbone.json"


def reference_manifest() -> Path | None:
    """The micro backbone manifest committed with the results (a source checkout's results/micro), if any."""
    import ntbench
    path = Path(ntbench.__file__).resolve().parent.parent / "results" / "micro" / "prepare.json"
    return path if path.is_file() else None


def weights_differing(reference: dict, mine: dict) -> list[str] | None:
    """The weight files whose hash differs between two micro backbone manifests (None: not comparable).

    Two manifests compare only at the same seed and sizes; config and tokenizer files are left out,
    since they carry library version strings rather than anything training made.
    """
    if (reference.get("seed"), reference.get("sizes")) != (mine.get("seed"), mine.get("sizes")):
        return None
    ref_files, my_files = reference.get("files", {}), mine.get("files", {})
    return sorted(f for f, h in ref_files.items() if f.endswith(".safetensors") and my_files.get(f) != h)


def loss_words(reference: dict, mine: dict) -> str:
    """The pretraining losses (last 50 steps) that differ, as 'lm 1.0427 (here 1.0445), ...'."""
    ref, here = reference.get("losses", {}), mine.get("losses", {})
    return ", ".join(f"{k.removesuffix('_last50')} {ref[k]:.4f} (here {here.get(k, float('nan')):.4f})"
                     for k in sorted(ref) if k.endswith("_last50") and ref[k] != here.get(k))


def read_manifest(folder: Path) -> dict:
    """A prepared micro backbone's manifest (``prepare.json``)."""
    from ntbench.micro import MANIFEST
    return json.loads((folder / MANIFEST).read_text())


def suite_micro_manifest(suite) -> dict | None:
    """The manifest of the prepared micro backbone a suite's cells use (None: no cell uses it, or not prepared)."""
    from ntbench.micro import cache_dir, cache_is_complete
    from ntbench.suite import trial_config

    cells = [{}] + [{k: v} for k, vs in suite.axes.items() for v in vs]  # as the runner's prepare_inputs
    if not any(trial_config(suite, cell).backbone == "micro" for cell in cells):
        return None
    folder = cache_dir()
    return read_manifest(folder) if cache_is_complete(folder) else None


def record(manifest: dict) -> dict:
    """What ``backbone.json`` keeps of a manifest: enough to compare weights and to read the losses."""
    return {k: manifest[k] for k in ("seed", "sizes", "losses") if k in manifest} | {
        "files": {f: h for f, h in manifest.get("files", {}).items() if f.endswith(".safetensors")}}


MIXED = "mixed"  # set in a record when --other-backbone added rows of other weights: trials no longer say which


def has_rows(folder: Path) -> bool:
    """Whether a suite folder holds trials already: a non-empty journal (also of a run killed before it wrote
    trials.csv) or a trials.csv (a database-backed suite keeps only that in the folder)."""
    journal = folder / "optuna.journal"
    return (journal.is_file() and journal.stat().st_size > 0) or (folder / "trials.csv").is_file()


def rows_backbone(folder: Path, reference: Path | None = None) -> tuple[dict | None, str]:
    """The record of the weights that made ``folder``'s rows, and how that is known ((None, "") when nothing
    says): the folder's ``backbone.json``; for a folder whose rows predate the records, the committed reference
    (``reference``, default :func:`reference_manifest`). Every committed suite without a record was run before
    2026-12-06, when the first machine whose arithmetic makes other weights appeared, so on the machine that
    made the reference."""
    path = folder / RECORD
    if path.is_file():
        return json.loads(path.read_text()), f"{path} records the micro backbone that made this folder's rows"
    ref = reference if reference is not None else reference_manifest()
    if has_rows(folder) and ref is not None and ref.is_file():
        return json.loads(ref.read_text()), (f"{folder} records no micro backbone (its rows predate the records), "
                                             f"so they are taken to come from the committed reference {ref}")
    return None, ""


def _mismatch(made: dict, mine: dict, whose: str, what: str, consequence: str) -> str | None:
    """Why ``made`` (the rows' weights, known as ``whose`` says) and ``mine`` (``what``) differ, ending with
    ``consequence``; None when they are the same weights."""
    differs = weights_differing(made, mine)
    if differs is None:
        return f"{whose}: a micro backbone of another seed or sizes than {what}"
    if differs:
        return f"{whose}, and {what} differs ({', '.join(differs)}; losses: {loss_words(made, mine)}){consequence}"
    return None


def other_backbone(folder: Path, mine: dict, reference: Path | None = None) -> str | None:
    """Why the rows in ``folder`` were made with other weights than ``mine`` (None: same, or unknown)."""
    made, whose = rows_backbone(folder, reference)
    if made is None or made.get(MIXED):
        return None  # a mixed folder was let in on purpose (--other-backbone); verify refuses its trials
    return _mismatch(made, mine, whose, "this machine's",
                     ", so new rows would not pair seed by seed with the old ones")


def mark_mixed(folder: Path, reference: Path | None = None) -> None:
    """Record that rows of other weights joined the folder (``--other-backbone``): which weights made which trial
    is then unknown, so no trial of it can be rerun bit for bit (:func:`rerun_refusal`)."""
    from ntbench.atomic import write_json

    made, _ = rows_backbone(folder, reference)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RECORD, {**record(made or {}), MIXED: True})


def write_record(folder: Path, mine: dict) -> Path | None:
    """Write ``backbone.json`` where the folder has none yet (the first run's backbone); its path, if written."""
    from ntbench.atomic import write_json

    path = folder / RECORD
    if path.is_file() or not folder.is_dir():
        return None
    write_json(path, record(mine))
    return path


def rerun_refusal(folder: Path, config: dict, row_version: int | None = None,
                  reference: Path | None = None) -> str | None:
    """Why a stored micro trial of ``folder`` cannot be rerun bit for bit here (None: it can, the trial does not use
    the micro backbone, or nothing says which weights made it). ``row_version``: the micro version at the row's
    commit; a row of another version reruns on HEAD's backbone by design, so the comparison is the code's."""
    from ntbench.micro import MICRO_VERSION, cache_dir, cache_is_complete

    if config.get("backbone") != "micro" or (row_version is not None and row_version != MICRO_VERSION):
        return None
    made, whose = rows_backbone(folder, reference)
    if made is None:
        return None
    if made.get(MIXED):
        return (f"{folder / RECORD}: rows made with other micro backbone weights were added to this folder "
                "(--other-backbone), and a row does not say which weights made it, so none can be rerun bit for bit")
    here = cache_dir()
    if not cache_is_complete(here):
        return (f"the micro backbone is not prepared on this machine ({here}): run `ntbench prepare` first, so that "
                "verify can check it is the one that made these rows")
    return _mismatch(made, read_manifest(here), whose, "this machine's",
                     ": a CPU with other arithmetic makes other weights, so a rerun here would differ whatever the "
                     "code did. Verify these rows on the kind of machine that made them")
