"""`ntbench validate`, `run`, `status`, `report`, `compare`, `evidence` and `verify`: suites and their results."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ntbench.cli.apps import app
from ntbench.cli.ui import (SUITE_HAD_FAILURES, _check_storage, _fail, _fail_invalid, _parse_task_mix, _seed_list,
                            check_out_file, check_out_folder, err, make_data_with_bar, out, print_json,
                            progress_bar, resolve_suite, suite_hint)


def _load_suites(paths: list[Path]):
    from ntbench.suite import SuiteError, load_suite

    suites, failed = [], False
    for path in paths:
        try:
            suites.append(load_suite(resolve_suite(path)))
        except SuiteError as exc:
            failed = True
            err.print(f"[bold red]invalid suite[/] {escape(str(exc))}")
            if exc.errors == ["file not found"] and not path.exists():
                err.print(f"{path}: not a file, nor a shipped suite's name: {suite_hint(path)}")
    if failed:
        raise typer.Exit(2)
    for path, suite in zip(paths, suites):
        for name in unset_variables(suite):
            err.print(f"[bold yellow]warning:[/] {path}: ${{{name}}} is not set, so the suite names the literal "
                      f"'${{{name}}}'; its trials will fail until you `export {name}=...` (README, paper suites)")
    return suites


def unset_variables(suite) -> list[str]:
    """The ``${VAR}`` references left in a suite: variables unset when it was read (a paper suite's weights)."""
    import json
    import re

    return sorted(set(re.findall(r"\$\{(\w+)\}", json.dumps(suite.model_dump(mode="json")))))


@app.command()
def validate(paths: list[Path] = typer.Argument(..., help="suite YAML files or shipped suites' names"),
             as_json: bool = typer.Option(False, "--json", help="print each suite's name, trials and objective "
                                          "as JSON (errors still go to stderr, exit 2)")) -> None:
    """Check suite files (every cell as a full trial config); exit 2 listing every error."""
    from ntbench.suite import grid_cells

    rows = []
    for path, suite in zip(paths, _load_suites(paths)):
        n = len(grid_cells(suite)) if suite.sampler.type == "grid" else suite.sampler.n_trials
        rows.append({"path": str(resolve_suite(path)), "name": suite.name, "trials": n, "sampler": suite.sampler.type,
                     "objective": suite.objective, "direction": suite.direction})
        if not as_json:
            out.print(f"[green]ok[/] {suite.name}: {n} trial{'s' if n != 1 else ''} ({suite.sampler.type}), "
                      f"objective {suite.objective} ({suite.direction})")
    if as_json:
        print_json(rows)


def _run_suite_with_bars(suite, results: Path, storage: Optional[str], workers: int, recover: bool = False,
                         retry_failed: bool = False):

    from ntbench.runner import WorkersFailed

    try:
        return _run_with_bars(suite, results, storage, workers, recover, retry_failed)
    except WorkersFailed as exc:  # a runtime failure: one line, exit 1; finished cells stay stored
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1)


def _run_with_bars(suite, results: Path, storage: Optional[str], workers: int, recover: bool,
                   retry_failed: bool):
    from ntbench.runner import run_suite

    with progress_bar("{task.fields[info]}") as bar:
        suite_bar = bar.add_task(f"suite {suite.name}", total=None, info="")
        # shown from a trial's first step on, when its step count is known (before that it read "0/?")
        trial_bar = bar.add_task("trial", total=None, info="", visible=False)

        def on_total(n: int) -> None:
            bar.update(suite_bar, total=n, info="nothing to run" if n == 0 else "")

        def on_trial() -> None:
            bar.advance(suite_bar)
            bar.reset(trial_bar, visible=False)

        def step(s: int, rec: dict) -> None:
            bar.update(trial_bar, completed=s, total=rec.get("total_steps"), info=f"loss {rec['loss']:.3f}",
                       visible=workers <= 1)
        df = run_suite(suite, results, storage, workers, progress=step, on_trial=on_trial, on_total=on_total,
                       recover_running=recover, retry_failed=retry_failed, make_data=make_data_with_bar(bar, info=""),
                       on_notice=lambda text: bar.console.print(f"[yellow]warning:[/] {text}"))
        # run_suite returns when no cell is left: cells this run did not count ran in another run on
        # the same folder. In a log the last state stays: the whole suite done, no reset trial bar
        task = bar.tasks[suite_bar]
        if task.total is not None and task.completed < task.total:
            bar.update(suite_bar, info=f"{task.total - task.completed:.0f} by another run")
        bar.update(suite_bar, completed=task.total)
        bar.update(trial_bar, visible=False)
        return df


def _summary_table(suite, df) -> None:
    from ntbench.report import readable_table, suite_table

    if df.empty or suite.objective not in df.columns or df[suite.objective].dropna().empty:
        out.print(f"{suite.name}: no completed trials with {suite.objective}")
        return
    _, table = suite_table(suite, df, suite.objective)
    flat = readable_table(table)  # axes in words, as the report's tables
    t = Table(title=f"{suite.name}: {suite.objective} (mean ± 95% t interval, none for n = 1; ★ best, "
                    "≈ difference to the best not distinguishable from 0)")
    for c in flat.columns:
        t.add_column(escape(str(c)))
    for r in flat.itertuples(index=False):
        t.add_row(*[escape(str(v)) for v in r])
    out.print(t)


@app.command()
def run(
    path: Path = typer.Argument(..., help="suite YAML, or a shipped suite's name (ntbench list): beta_grid, "
                                "paper/adapters"),
    results: Path = typer.Option(Path("runs"), help="results root; the suite writes RESULTS/<name>/ (the committed "
                                 "reference results live in results/)"),
    storage: Optional[str] = typer.Option(None, help="Optuna storage shared by workers: a database URL "
                                          "(postgresql+psycopg2://USER@HOST/DB, sqlite:///PATH) or journal:PATH "
                                          "(default: a journal file in RESULTS/<suite>/)"),
    workers: int = typer.Option(1, min=1, help="parallel worker processes on this machine"),
    recover_running: bool = typer.Option(
        False, "--recover-running",
        help="also rerun RUNNING trials no heartbeat vouches for (left on a server by an ntbench "
             "without heartbeats); only when no other worker lives. A dead worker's trials are "
             "rerun without it"),
    retry_failed: bool = typer.Option(False, "--retry-failed",
                                      help="also run again the cells whose trials failed (a plain rerun "
                                           "runs only the missing cells)"),
    other_backbone_ok: bool = typer.Option(False, "--other-backbone",
                                           help="add rows although the folder's backbone.json records other "
                                                "micro backbone weights (they will not pair by seed)"),
    claims_first: bool = typer.Option(False, "--claims-first",
                                      help="queue the cells the suite's paper claims compare before the rest of "
                                           "the grid, so that a run stopped part-way has answered every claim it "
                                           "could (ntbench status counts them)"),
    as_json: bool = typer.Option(False, "--json", help="print the trial rows as JSON"),
) -> None:
    """Run a suite (resumable: only missing cells run; --retry-failed also reruns failed ones) and write
    RESULTS/<suite>/trials.csv.

    Exit codes: 0 every cell complete; 2 a usage or validation error (nothing run); 3 the suite
    finished but some trials failed (their reasons are in trials.csv and the report); 1 a crash."""
    from ntbench.backbone_record import (RECORD, has_rows, mark_mixed, other_backbone, rows_backbone,
                                         suite_micro_manifest, write_record)
    from ntbench.cli.stopping import listen_to_sigint, stopped

    listen_to_sigint()
    (suite,) = _load_suites([path])
    check_out_folder("--results", results)
    _check_storage(storage)
    folder = results / suite.name
    mine = suite_micro_manifest(suite)  # None until prepared: then the record waits for the run's end
    if mine and (why := other_backbone(folder, mine)):
        if not other_backbone_ok:
            _fail(f"{why}. Run this suite on the kind of machine that made it, or into another --results "
                  "folder; --other-backbone adds the rows anyway")
        err.print(f"[bold yellow]warning:[/] {why} (--other-backbone)")
        mark_mixed(folder)  # which weights made which trial is lost: verify will not rerun this folder's trials
    # rows from before the records: this machine's weights must not be recorded as theirs (a later resume or
    # verify would be checked against the wrong weights); without a committed reference to compare, say so
    had_rows = has_rows(folder)
    legacy = had_rows and not (folder / RECORD).is_file()
    unknown_words = (f"[bold yellow]warning:[/] {folder} holds rows from before ntbench recorded which micro "
                     "backbone made them, and no committed reference says; if they were made on a CPU with other "
                     "arithmetic, the new rows do not pair seed by seed with them (README, 'Reproducibility')")
    unknown = legacy and rows_backbone(folder)[0] is None  # no committed reference to take them from
    if unknown and mine:
        err.print(unknown_words)
    from ntbench.cli.grid_queue import ClaimsFirstError, claim_cells_first, keep_places

    try:  # may wait for the folder's claim lock, held by another run's worker between trials
        queued = claim_cells_first(suite, results, storage) if claims_first else keep_places(suite, results, storage)
    except ClaimsFirstError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("[bold yellow]stopped[/] before any trial started")
        raise typer.Exit(130)
    if claims_first:
        err.print(f"claims first: queued {queued.queued} trial(s); "
                  + (f"{queued.moved} waiting trial(s) reordered: " if queued.moved else "")
                  + "the cells the paper claims compare run first, then the rest of the grid in its own order")
    elif queued.moved:
        err.print(f"resuming: {queued.moved} waiting trial(s) reordered so that each cell keeps its place in the "
                  "queue (a cell stopped part-way runs next, not after the rest of the grid)")
    if queued.not_moved:
        err.print(f"[bold yellow]warning:[/] {queued.not_moved}")
    if mine and not had_rows and folder.is_dir() and write_record(folder, mine):  # first, so a killed run keeps it
        err.print(f"recorded the micro backbone's weights in {folder / RECORD}")
    try:
        df = _run_suite_with_bars(suite, results, storage, workers, recover_running, retry_failed)
    except KeyboardInterrupt:
        err.print(f"[bold yellow]stopped[/]: {stopped(folder, storage)}")
        raise typer.Exit(130)  # the shell's code for a run ended by SIGINT
    finally:  # also after Ctrl-C: the rows on disk were made with this backbone (prepared during the run)
        late = mine or suite_micro_manifest(suite)
        if late and not legacy and write_record(folder, late):
            err.print(f"recorded the micro backbone's weights in {folder / RECORD}")
        elif late and unknown and not mine:  # prepared during the run: the warning could not be said before
            err.print(unknown_words)
    failed = int((df.status == "FAIL").sum()) if len(df) else 0
    if as_json:
        print(df.to_json(orient="records"))  # pandas' own JSON: NaN as null, numpy numbers as numbers
    else:
        _summary_table(suite, df)
        out.print(f"{len(df)} trials in {results / suite.name / 'trials.csv'}" + (f", {failed} failed" if failed else ""))
    if failed:
        err.print(f"[bold red]{failed} trial(s) failed[/]: see fail_reason in {results / suite.name / 'trials.csv'}; "
                  "rerun with --retry-failed to run them again")
        raise typer.Exit(SUITE_HAD_FAILURES)


@app.command()
def status(folder: Path = typer.Argument(..., help="a suite's results folder, e.g. runs/beta_grid (or the suite's "
                                                    "name or file: then its folder under runs/)"),
           storage: Optional[str] = typer.Option(None, help="the storage the suite ran with (`run --storage`): a "
                                                 "database URL or journal:PATH; read only, nothing written"),
           as_json: bool = typer.Option(False, "--json", help="print the counts, running and next trials and estimate as JSON")
           ) -> None:
    """How far a suite is, safe while it runs: trials complete, running, waiting and failed, the next three cells a
    resume takes (a cell stopped by Ctrl-C first, in its place), and the time left."""
    from ntbench.wall_time import storage_trials, suite_progress

    folder = _status_folder(folder)
    if storage:
        _existing_sqlite(storage)
        _check_storage(storage)
    try:
        p = suite_progress(folder, trials=storage_trials(storage, folder) if storage else None)
    except FileNotFoundError as exc:
        _fail(str(exc))
    except Exception as exc:  # a damaged journal: one line, not a traceback
        _fail(f"{storage or folder / 'optuna.journal'}: not readable as a suite's storage ({type(exc).__name__}: {exc})")
    if as_json:
        print_json(p)
        return
    minutes = lambda s: "-" if s is None else f"{s / 60:.1f} min"  # noqa: E731
    stopped, failed = p["interrupted_attempts"], p["failed_attempts"] - p["interrupted_attempts"]
    left = p["running"] + p["to_start"]
    counts = (f"[bold]{p['complete']}[/] of {p['total']} trials complete, {p['running']} running, {p['to_start']} to start"
              if left else f"[bold]complete[/]: {p['complete']} of {p['total']} trials")
    attempts = "".join([f"; {stopped} interrupted attempt{'s' if stopped != 1 else ''} (stopped by Ctrl-C: "
                        + ("their cells run again)" if left else "their cells ran again)") if stopped else "",
                        f"; {failed} failed attempt{'s' if failed != 1 else ''}" if failed else ""])
    if p["time_left_s"] is None or not left:
        estimate = ""
    elif p["running"]:
        estimate = f"; about {minutes(p['time_left_s'])} left at {p['running']} running worker(s)"
    else:  # nothing runs: the estimate has no worker count to go by
        estimate = f"; about {minutes(p['time_left_s'])} left at one worker (none running now; halve it for --workers 2)"
    out.print(f"{folder}: {counts}{attempts}; a trial takes {minutes(p['median_trial_s'])} (median){estimate}")
    if p["claims"] is not None:
        out.print(f"paper claims with an interval so far: {p['claims_with_interval']} of {p['claims']} "
                  "(both cells on two shared seeds or more; `ntbench report` judges them)")
    from ntbench.plots import cell_text  # the report's words for a cell (plots imports pandas: not at start-up)

    for t in p["running_trials"]:
        out.print(f"  running  #{t['number']} {escape(cell_text(t['params']))} for {minutes(t['running_s'])}")
    for t in p["next_trials"]:
        out.print(f"  next     {'#' + str(t['number']) if t['number'] is not None else '(stopped, runs again)'} "
                  f"{escape(cell_text(t['params']))}")
    if p["last_complete"]:
        out.print(f"last complete ({p['objective'] or 'objective'}):")
    for t in p["last_complete"]:
        out.print(f"  complete #{t['number']} {escape(cell_text(t['params']))}: {t['value']:.4g}")


def _existing_sqlite(url: str) -> None:
    """`status` reads: an SQLite URL naming no file is a mistake, and opening it would create an empty database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return  # malformed: _check_storage says how
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).is_file():
        _fail(f"--storage {url}: {parsed.database} does not exist (status reads a suite's storage, it creates none)")


def _status_folder(given: Path) -> Path:
    """The folder `status` reads: ``given`` if it is one; for a suite's name or file (what `run` took), the
    folder `run` writes under its default results root, ``runs/<suite name>``."""
    from ntbench.suite import Suite, SuiteError, read_suite_file

    if given.is_dir():
        if (given / "pooled.json").is_file() and not (given / "optuna.journal").is_file():
            _fail(f"{given}: a pooled folder (`ntbench pool`): it has no storage and no run to follow; its "
                  "sources do (pooled.json names them), and `ntbench report` reads it")
        return given
    suite_file = resolve_suite(given)
    if suite_file.is_file():
        try:
            name = Suite(**read_suite_file(suite_file)).name
        except (SuiteError, ValueError) as exc:
            _fail(f"{given}: a suite file, but not a valid one ({exc}); `ntbench status` takes a suite's results folder")
        if (Path("runs") / name).is_dir():
            err.print(f"{given}: the suite {name}; its results folder under the default root: runs/{name}")
            return Path("runs") / name
        _fail(f"{given}: the suite {name}, but runs/{name} does not exist: give its results folder "
              f"(`ntbench run --results ROOT` writes ROOT/{name})")
    _fail(f"{given}: no such folder; `ntbench status` takes a suite's results folder, e.g. runs/beta_grid"
          + ("" if given.suffix else f" ({suite_hint(given)})"))


@app.command()
def report(results: Path = typer.Option(Path("runs"), help="results root (results/ for the committed ones)"),
           as_json: bool = typer.Option(False, "--json", help="print the files written, per suite, as JSON")) -> None:
    """Tables (CSV + markdown) and plots for every suite under RESULTS, plus RESULTS/README.md."""
    from ntbench.refresh import refresh_trials_csv
    from ntbench.report import report_suite, write_index

    # a suite still running, or stopped before its run wrote trials.csv: its rows come from the storage
    for folder in sorted(p.parent for p in results.glob("*/optuna.journal")):
        try:
            rebuilt = refresh_trials_csv(folder)
        except Exception as exc:  # one damaged storage stops no other suite's report; its table stays as it was
            err.print(f"[yellow]warning[/] {folder.name}: trials.csv not rebuilt from {folder / 'optuna.journal'} "
                      f"({type(exc).__name__}: {exc})")
            continue
        if rebuilt is not None and not as_json:
            err.print(f"{folder.name}: trials.csv rebuilt from its storage ({rebuilt} rows; the run is still going "
                      "or was stopped before it wrote them)")
    folders = sorted(p.parent for p in results.glob("*/suite.resolved.yaml") if (p.parent / "trials.csv").is_file())
    if not folders:
        hint = " (the committed results: --results results)" if Path("results").is_dir() and results != Path("results") else ""
        _fail(f"no suite results under {results} (a suite's folder holds trials.csv); run a suite first{hint}")
    suites = {}
    for folder in folders:
        made = report_suite(folder)
        suites[folder.name] = {"report": str(folder / "report.md"), **{k: [str(p) for p in v] for k, v in made.items()}}
        if not as_json:
            out.print(f"{folder.name}: {len(made['tables'])} tables, {len(made['plots'])} plots -> {folder / 'report.md'}")
    index = write_index(results)
    if as_json:
        print_json({"suites": suites, "index": str(index)})
    else:
        out.print(f"index: {index}")


@app.command()
def pool(sources: list[Path] = typer.Argument(..., help="suite folders that ran parts of one grid, e.g. the "
                                                          "same cells on seeds 0-4 and on seeds 5-9"),
         out_folder: Path = typer.Option(..., "--out", help="the new folder (e.g. runs/beta_pair_10seeds)"),
         name: Optional[str] = typer.Option(None, help="the pooled suite's name (default: the first's + _pooled)"),
         as_json: bool = typer.Option(False, "--json", help="print what came from where as JSON")) -> None:
    """Pool suite folders that ran parts of one grid (more seeds, more cells) into one folder that
    `ntbench report` reads, keeping every row's provenance; settings must agree, axis values are united."""
    from ntbench.pool import PoolError, pool_suites

    try:
        summary = pool_suites(sources, out_folder, name)
    except PoolError as exc:
        _fail(str(exc))
    if as_json:
        print_json({"folder": str(out_folder), **summary})
        return
    parts = ", ".join(f"{Path(s['folder']).name} ({s['trials']})" for s in summary["sources"])
    dropped = f"; {summary['repeats_dropped']} repeated rows with identical numbers kept once" \
        if summary["repeats_dropped"] else ""
    out.print(f"pooled {parts} -> {out_folder}: {summary['rows']} rows{dropped}. "
              f"Then: ntbench report --results {out_folder.parent}")


@app.command()
def compare(
    adapters: list[str] = typer.Argument(..., help="adapter names, e.g. lora neural"),
    backbone: str = typer.Option("micro", help="a backbone preset (`ntbench list`), HF id or local folder"),
    steps: Optional[int] = typer.Option(None, min=1, help="default: the backbone's recipe, else 200"),
    seeds: str = typer.Option("0,1,2", help="comma-separated seeds"),
    tasks: Optional[str] = typer.Option(None, help="comma-separated, equal weights (default: the recipe's mix)"),
    results: Path = typer.Option(Path("runs"), help="results root"), workers: int = typer.Option(1, min=1),
    data: Optional[str] = typer.Option(None, help="dataset folder or microworld:N (default: the micro world)"),
    eval_samples: Optional[int] = typer.Option(None, min=1, help="default: the recipe's, else 32"),
    csv: Optional[Path] = typer.Option(None, help="CSV of the side-by-side table (default: RESULTS/compare-.../compare.csv)"),
    as_json: bool = typer.Option(False, "--json", help="print the table (metric -> adapter -> mean ± 95% t "
                                 "interval), the CSV path and the trial rows as JSON"),
) -> None:
    """Train each adapter on the same backbone, data, budget and seeds, then print them side by side with the
    difference to the first adapter, paired by seed. This runs trials (a suite under RESULTS, resumable): on the
    micro backbone a trial takes about 5-6 min on a 2-core CPU, so `lora neural` on 3 seeds is ~35 min."""
    import pandas as pd

    from ntbench.compare import compare_suite, paired_differences, side_by_side

    check_out_folder("--results", results)
    check_out_file("--csv", csv)

    seed_list = _seed_list(seeds)
    from ntbench.suite import SuiteError
    try:
        suite = compare_suite(adapters, backbone, steps, seed_list,
                              [t for t in tasks.split(",") if t] if tasks else None, data=data, eval_samples=eval_samples)
    except SuiteError as exc:
        _fail(str(exc))
    df = _run_suite_with_bars(suite, results, None, workers)
    table = side_by_side(df)
    path = csv or results / suite.name / "compare.csv"
    table.to_csv(path)
    if as_json:
        import json

        print_json({"table": json.loads(table.to_json(orient="index")), "csv": str(path),
                    "trials": json.loads(df.to_json(orient="records"))})
        return
    from ntbench.suite import trial_config
    n_steps = trial_config(suite, {}).train.steps
    # each adapter's own rate where the backbone's recipe tuned one (ntbench.train.recipes.ADAPTER_RECIPES)
    rates = ", ".join(f"{a} {trial_config(suite, {'adapter': a}).train.lr:g}" for a in adapters)
    t = Table(title=f"{' vs '.join(adapters)} on {backbone}, {n_steps} steps, learning rate {rates}, seeds {seed_list} "
                    "(mean ± 95% t interval)")
    t.add_column("metric")
    for c in table.columns:
        t.add_column(str(c), justify="right")
    for idx, r in table.iterrows():
        t.add_row(str(idx), *[str(v) for v in r.values])
    out.print(t)
    if len(adapters) > 1 and adapters[0] in set(df.get("param.adapter", [])):
        diffs = paired_differences(df, adapters[0])
        diffs.to_csv(path.with_name(path.stem + "_paired.csv"), index=False)
        d = Table(title=f"difference to {adapters[0]}, paired by seed: mean and 95% t interval")
        for col in ("adapter", "metric", "seeds", "Δ", "95% CI", "MDE"):
            d.add_column(col, justify="right")
        for r in diffs.to_dict("records"):
            ci = "no interval" if pd.isna(r["low"]) else f"[{r['low']:+.4g}, {r['high']:+.4g}]"
            kind = "paired" if r["paired"] else "Welch"
            d.add_row(f"{r['adapter']} − {adapters[0]}", r["metric"], f"{r['n']} ({kind})", f"{r['mean']:+.4g}", ci,
                      "-" if pd.isna(r["mde"]) else f"{r['mde']:.3g}")
        out.print(d)
    out.print(f"wrote {path}")


@app.command()
def evidence(
    seeds: str = typer.Option("0,1,2", help="comma-separated seeds"),
    steps: Optional[int] = typer.Option(None, min=1, help="default: the micro recipe (ntbench.train.recipes)"),
    eval_samples: Optional[int] = typer.Option(None, min=1, help="val samples scored per task (default: the recipe's "
                                               "500, all of the micro world's val split; at 64 the eval set alone "
                                               "moves oIoU by about 0.04)"),
    out_dir: Path = typer.Option(Path("runs/evidence"), "--out", help="folder for trials.csv and summary.md"),
    tasks: str = typer.Option("", help="task mix as for `ntbench train`, e.g. referring:2,reasoning:2,captioning,t2i "
                                       "(default: the recipe's)"),
    lr: Optional[float] = typer.Option(None, min=1e-8, help="peak learning rate of both methods (default: each "
                                                       "method's own in the recipe, ntbench.train.recipes)"),
    lambda_bce: Optional[float] = typer.Option(None, min=0.0, help="weight of the per-pixel BCE term added to Dice "
                                               "(default: the recipe's)"),
    as_json: bool = typer.Option(False, "--json", help="print the trial rows, the checks and the summary path as JSON"),
) -> None:
    """Neural vs frozen vs trivial masks over seeds on the micro backbone (is the default meaningful?)."""
    import shlex

    from ntbench.evidence import run_evidence, write_summary

    check_out_folder("--out", out_dir)

    seed_list = _seed_list(seeds)
    mix = None
    if tasks.strip():
        from pydantic import ValidationError

        from ntbench.registry import UnknownNameError
        from ntbench.train.trainer import TrainConfig
        try:
            mix = TrainConfig(tasks=_parse_task_mix(tasks)).tasks  # unknown names: "did you mean", before training
        except (ValidationError, UnknownNameError) as exc:
            _fail_invalid(exc)
    with err.status("running evidence trials") as status:
        df = run_evidence(seed_list, steps, out_dir, eval_samples=eval_samples, tasks=mix,
                          lr=lr, lambda_bce=lambda_bce,
                          progress=lambda msg: status.update(f"evidence: {msg}"))
    command = "ntbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = write_summary(df, out_dir, command)
    if as_json:
        import json

        from ntbench.evidence import summarize
        print_json({"summary": str(out_dir / "summary.md"), "checks": summarize(df)[1],
                    "trials": json.loads(df.to_json(orient="records"))})
    else:
        out.print(text)


@app.command()
def verify(folder: Path = typer.Argument(..., help="a suite's results folder, e.g. results/alpha_grid"),
           trial: Optional[list[int]] = typer.Option(None, "--trial", help="trial number to rerun (repeatable; "
                                                     "default: the quickest complete trial)"),
           as_json: bool = typer.Option(False, "--json", help="print the recorded checks as JSON")) -> None:
    """Rerun stored trials with the code checked out now, on the setup they ran on, and compare every
    number; appends to FOLDER/verified.json, which the report's banner reads (then run `ntbench report`)."""
    from ntbench.verify import VerifyError, check_rerunnable, verify_trial

    entries = []
    for number in trial or [None]:
        try:
            checked = check_rerunnable(folder, number)  # refusals before the bar, which would read as work started
            with progress_bar("loss {task.fields[loss]}") as bar:
                task = bar.add_task(f"rerun trial {number if number is not None else '(quickest)'}", total=None, loss="-")

                def step(s: int, rec: dict) -> None:
                    bar.update(task, completed=s, total=rec.get("total_steps"), loss=f"{rec.get('loss', float('nan')):.4f}")
                entry = verify_trial(folder, number, progress=step, checked=checked)
        except VerifyError as exc:
            _fail(str(exc))
        entries.append(entry)
        if not as_json:
            verdict = "[green]identical[/]" if entry["identical"] else \
                f"[bold red]{entry['n_differing']} of {entry['compared']} numbers differ[/]: " + ", ".join(entry["differing"][:5])
            out.print(f"trial {entry['trial']} (made by {str(entry['row_commit'])[:10]}, rerun at {entry['commit'][:10]}, "
                      f"{entry['setup']}, {entry['seconds']:.0f} s): {verdict}")
    if as_json:
        print_json(entries)
    elif entries:
        out.print(f"recorded in {folder / 'verified.json'}; `ntbench report` shows it in the banner")
    if any(not e["identical"] for e in entries):
        raise typer.Exit(1)
