"""What the command modules share: the consoles, the one-line error, the progress bar and option parsing."""
from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

out = Console(soft_wrap=True)  # a line piped to grep stays one line; a terminal wraps it anyway
err = Console(stderr=True, soft_wrap=True)  # error messages stay greppable, unwrapped

SUITE_HAD_FAILURES = 3  # `run` finished, but not every trial completed


CHECKOUT_SUITES = Path(__file__).resolve().parents[2] / "suites"  # absent in an installed ntbench


# (category, message regex) of third-party notices a user cannot act on, silenced while a command runs
KNOWN_WARNINGS = [
    (DeprecationWarning, r"__array__ implementation doesn't accept a copy keyword"),  # pycocotools on numpy 2
    (FutureWarning, r"`past_key_values` is deprecated"),  # transformers, from its own generate()
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),  # transformers, from peft
    (UserWarning, r"Converting a tensor with requires_grad=True to a scalar"),  # torch: float(loss) in a message
    (Warning, r".* is experimental \(supported from v"),  # optuna's ExperimentalWarning on stable APIs
]


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """While a command runs: the known third-party warnings are dropped and any other warning is one
    line on stderr ("warning: ..."), not a source excerpt printed ahead of the command's output.
    Spawned workers inherit these filters (``ntbench.runner`` hands them on)."""
    with warnings.catch_warnings():  # restored afterwards: the library and its callers keep theirs
        for category, message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)

        def show(message, category, filename, lineno, file=None, line=None):
            err.print(f"[yellow]warning:[/] {category.__name__}: {escape(str(message).splitlines()[0])} "
                      f"({Path(filename).name}:{lineno})", highlight=False)
        warnings.showwarning = show
        yield


def suites_dir() -> Path:
    """The shipped suites: the checkout's ``suites/`` (the source of truth) or, in an installed
    ntbench, the copy the wheel holds as ``ntbench/_suites/`` (see pyproject.toml)."""
    checkout = CHECKOUT_SUITES
    if checkout.is_dir():
        return checkout
    from importlib.resources import files

    return Path(str(files("ntbench") / "_suites"))


def resolve_suite(path: Path) -> Path:
    """A suite file as given, else a shipped suite by name: ``beta_grid``, ``paper/adapters`` or
    ``suites/beta_grid.yaml`` (the README's form) all name ``suites_dir()/beta_grid.yaml``."""
    if path.exists():
        return path
    shipped = suites_dir()
    parts = path.parts[1:] if path.parts[:1] == ("suites",) else path.parts
    for candidate in (shipped.joinpath(*parts), shipped.joinpath(*parts).with_suffix(".yaml")):
        if parts and candidate.is_file():
            return candidate
    return path  # not found: load_suite says so (and `suite_hint` what was probably meant)


def shipped_suites() -> dict[str, Path]:
    """The shipped suites by the name `ntbench run NAME` takes (``beta_grid``, ``paper/adapters``); a file
    whose name starts with ``_`` (``paper/_base.yaml``) is a base other suites extend, not a suite to run."""
    shipped = suites_dir()
    return {p.relative_to(shipped).with_suffix("").as_posix(): p for p in sorted(shipped.rglob("*.yaml"))
            if not p.name.startswith("_")}


def suite_hint(path: Path) -> str:
    """For a suite that is neither a file nor a shipped suite's name: the nearest shipped name, if any."""
    import difflib

    given = path.as_posix().removeprefix("suites/").removesuffix(".yaml")
    near = difflib.get_close_matches(given, list(shipped_suites()), n=1, cutoff=0.7)
    return (f"did you mean {near[0]!r}? " if near else "") + "(`ntbench list` shows the shipped suites)"


def _fail(message: str) -> None:
    """A usage or validation error: one line on stderr, exit code 2."""
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _fail_invalid(exc: Exception) -> None:
    """A pydantic ValidationError (or any other config error) as one line naming each key, exit 2."""
    from pydantic import ValidationError

    from ntbench.suite import _format_error

    if isinstance(exc, ValidationError):
        _fail("; ".join(e.removeprefix(": ") for e in _format_error("", exc)))
    _fail(str(exc))


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_out_folder(option: str, path: Optional[Path]) -> None:
    """An output folder checked before any work: neither it nor a parent may be a file (exit 2)."""
    found = _existing_ancestor(path) if path is not None else None
    if found is not None and not found.is_dir():
        _fail(f"{option} {path}: " + ("exists and is not a folder" if found == path else f"{found} is a file"))


def check_out_file(option: str, path: Optional[Path]) -> None:
    """An output file checked before any work: not a folder, and its folder not under a file (exit 2)."""
    if path is None:
        return
    if path.is_dir():
        _fail(f"{option} {path}: is a folder; name a file")
    check_out_folder(option, path.parent)


def print_json(obj) -> None:
    """The one thing a ``--json`` command writes on stdout (its messages and bars go to stderr)."""
    import json

    print(json.dumps(obj, indent=2, default=str))


def make_data_with_bar(bar: Progress, **fields):
    """A ``make_data`` for ``run_suite``: a micro world not yet generated gets its own line on
    ``bar``, saying what it generates (``fields``: the bar's extra fields)."""
    def make(spec: Optional[str]) -> Path:
        from ntbench.data.cache import resolve_data, samples_to_generate

        n = samples_to_generate(spec)
        if not n:
            return resolve_data(spec)
        what = "the default micro world" if spec is None else f"the micro world {spec}"
        task = bar.add_task(f"generating {what} ({n:,} samples, once)", total=n, **fields)
        return resolve_data(spec, progress=lambda k: bar.advance(task, k))
    return make


def _check_storage(url: Optional[str]) -> None:
    """A malformed ``--storage`` URL exits 2, an unreachable one 1: one line naming it, nothing written."""
    from ntbench.storage import StorageError, check_storage

    try:
        check_storage(url)
    except StorageError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2 if exc.usage else 1)


def progress_bar(*fields: str) -> Progress:
    """The one progress bar of every long command: description, bar, done/total, extra ``fields``
    (rich format strings such as "loss {task.fields[loss]}"), time left; drawn on stderr.

    On a terminal the bars are transient: each command prints its own result when done, and a bar
    left behind (a suite's trial bar is reset to 0/N after its last trial) read as work still to do.
    In a file or a CI log the final state is written once, as a record."""
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    *(TextColumn(f) for f in fields), TimeRemainingColumn(), console=err,
                    transient=err.is_terminal)


def _parse_options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; values parsed as YAML scalars (numbers, true/false, null, strings)."""
    import yaml

    opts = {}
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--option {pair!r}: expected KEY=VALUE, e.g. --option beta=0.3")
        key, value = pair.split("=", 1)
        opts[key.strip()] = yaml.safe_load(value)
    return opts


def _seed_list(seeds: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; not integers, none, or a seed twice (its trials would be counted as two
    independent runs and narrow every interval) exits 2 with one line."""
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        _fail(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2")
    if not seed_list:
        _fail(f"--seeds {seeds!r}: no seeds; expected comma-separated integers, e.g. 0,1,2")
    twice = sorted({x for x in seed_list if seed_list.count(x) > 1})
    if twice:
        _fail(f"--seeds {seeds!r}: seed {', '.join(map(str, twice))} given more than once")
    return seed_list


def _parse_task_mix(tasks: str) -> dict[str, float]:
    """'referring,reasoning:2' -> {'referring': 1.0, 'reasoning': 2.0} (task names are checked by TrainConfig)."""
    ratios = {}
    for part in [t.strip() for t in tasks.split(",") if t.strip()]:
        name, _, ratio = part.partition(":")
        try:
            ratios[name] = float(ratio) if ratio else 1.0
        except ValueError:
            _fail(f"--tasks {part!r}: the ratio after ':' must be a number")
    return ratios


def _trial_fields(config: Optional[Path], sets: list[str]) -> dict:
    """A trial config file's fields with ``--set KEY=VALUE`` pairs (dotted keys, YAML values) on top."""
    import yaml

    from ntbench.suite import set_dotted

    fields: dict = {}
    if config is not None:
        if not config.is_file():
            _fail(f"--config {config}: not found")
        try:
            fields = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as exc:
            _fail(f"--config {config}: not valid YAML ({str(exc).splitlines()[0]})")
        if not isinstance(fields, dict):
            _fail(f"--config {config}: expected a mapping of TrialConfig fields")
    for pair in sets:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--set {pair!r}: expected KEY=VALUE with a dotted TrialConfig key, e.g. -s eval_split=test")
        try:
            set_dotted(fields, key.strip(), yaml.safe_load(value))
        except KeyError:
            _fail(f"--set {pair!r}: {key.strip()!r} goes through a field that is not a mapping")
    return fields
