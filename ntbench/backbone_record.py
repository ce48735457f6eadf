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


def other_backbone(folder: Path, mine: dict) -> str | None:
    """Why the rows in ``folder`` were made with other weights than ``mine`` (None: same, or unknown)."""
    path = folder / RECORD
    if not path.is_file():
        return None
    made = json.loads(path.read_text())
    differs = weights_differing(made, mine)
    if differs is None:
        return f"{path} records a micro backbone of another seed or sizes than this one"
    if differs:
        return (f"{path} records the micro backbone that made this folder's rows, and this machine's differs "
                f"({', '.join(differs)}; losses: {loss_words(made, mine)}), so new rows would not pair seed by "
                "seed with the old ones")
    return None


def write_record(folder: Path, mine: dict) -> Path | None:
    """Write ``backbone.json`` where the folder has none yet (the first run's backbone); its path, if written."""
    from ntbench.atomic import write_json

    path = folder / RECORD
    if path.is_file() or not folder.is_dir():
        return None
    write_json(path, record(mine))
    return path


def legacy_folder(folder: Path) -> bool:
    """A folder with rows but no record: written before ntbench kept one (a run writes its record even when
    stopped), so which backbone made its rows is not known."""
    return not (folder / RECORD).is_file() and (folder / "trials.csv").is_file()


def rerun_refusal(folder: Path, config: dict, reference: Path | None = None) -> str | None:
    """Why a stored micro trial of ``folder`` cannot be rerun bit for bit here (None: it can, or the trial does
    not use the micro backbone). The rows' backbone is the folder's record; a folder from before the records is
    taken to hold rows of the committed reference backbone (``reference``, default :func:`reference_manifest`),
    and said so, since every committed suite was run on the machine that made it unless its record says otherwise.
    """
    from ntbench.micro import cache_dir, cache_is_complete

    if config.get("backbone") != "micro":
        return None
    path = folder / RECORD
    source = path if path.is_file() else (reference if reference is not None else reference_manifest())
    if source is None or not source.is_file():
        return None  # nothing says which weights made the rows: the rerun's comparison is all there is
    here = cache_dir()
    if not cache_is_complete(here):
        return (f"the micro backbone is not prepared on this machine ({here}): run `ntbench prepare` first, so that "
                f"verify can check it is the one that made these rows ({source})")
    made, mine = json.loads(source.read_text()), read_manifest(here)
    differs = weights_differing(made, mine)
    whose = (f"{path} records the micro backbone that made these rows" if source == path else
             f"{folder} records no backbone (its rows predate the records), so they are taken to come from the "
             f"committed reference {source}")
    if differs is None:
        return f"{whose}, of another seed or sizes than this machine's"
    if differs:
        return (f"{whose}, and this machine's differs ({', '.join(differs)}; losses: {loss_words(made, mine)}): "
                "a CPU with other arithmetic makes other weights, so a rerun here would differ whatever the code "
                "did. Verify these rows on the kind of machine that made them")
    return None
