"""The import graph has one direction: the layers contract in pyproject.toml, checked by import-linter."""
import pkgutil
import re
from pathlib import Path

import ntbench

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _contract() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"][0]


def test_imports_follow_the_layers():
    from importlinter.cli import lint_imports

    # exit code 0: every contract kept (a broken one prints the offending import chain)
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True) == 0


def test_every_top_level_module_is_in_a_layer():
    """A module left out of the contract would escape it: a new module must be given its layer."""
    listed = {name for layer in _contract()["layers"] for name in re.split(r"\s*\|\s*", layer)}
    modules = {f"ntbench.{m.name}" for m in pkgutil.iter_modules(ntbench.__path__)}
    assert modules - listed == set()
    assert listed - modules == set()  # a stale name means the contract checks less than it says
