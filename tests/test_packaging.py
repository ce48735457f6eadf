"""What a non-editable install holds: every package, and the suites as package data."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ntbench
from ntbench.cli import app, ui

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed_for_the_wheel():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in [*ROOT.glob("ntbench/**/__init__.py"),
                                                                 *ROOT.glob("strategies/**/__init__.py")]}
    assert found - set(SETUPTOOLS["packages"]) == set()


def test_every_suite_file_ships_as_package_data():
    src = ROOT / SETUPTOOLS["package-dir"]["ntbench._suites"]
    assert src == ROOT / "suites"
    for path in src.rglob("*.yaml"):
        package = ".".join(("ntbench._suites", *path.parent.relative_to(src).parts))
        assert package in SETUPTOOLS["packages"], path
        assert any(path.match(glob) for glob in SETUPTOOLS["package-data"][package]), path


def test_the_installed_copy_is_where_the_wheel_puts_it(monkeypatch):
    assert ui.suites_dir() == ROOT / "suites"  # in a checkout: the source of truth
    monkeypatch.setattr(ui, "CHECKOUT_SUITES", ROOT / "no-such-folder")
    assert ui.suites_dir() == Path(ntbench.__file__).parent / "_suites"  # ntbench._suites of the wheel


def test_list_and_validate_find_shipped_suites_by_name():
    import json
    listed = json.loads(CliRunner().invoke(app, ["list", "--json"]).stdout)["suites"]
    names = {p.relative_to(ui.suites_dir()).with_suffix("").as_posix() for p in ui.suites_dir().rglob("*.yaml")
             if not p.name.startswith("_")}  # paper/_base.yaml is what the paper suites extend, not a suite to run
    assert {"beta_grid", "smoke", "paper/adapters"} <= names and set(listed) == names and "paper/_base" not in listed
    result = CliRunner().invoke(app, ["validate", "smoke", "paper/adapters", "suites/beta_grid.yaml", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in json.loads(result.stdout)] == [
        str(ui.suites_dir() / "smoke.yaml"), str(ui.suites_dir() / "paper/adapters.yaml"),
        "suites/beta_grid.yaml" if Path("suites/beta_grid.yaml").exists() else str(ui.suites_dir() / "beta_grid.yaml")]


@pytest.mark.parametrize("name", ["nosuch", "paper/nosuch"])
def test_an_unknown_suite_name_exits_2(name):
    result = CliRunner().invoke(app, ["run", name, "--results", "/nonexistent-results"])
    assert result.exit_code == 2 and "not found" in result.output and "ntbench list" in result.output


@pytest.mark.parametrize("given, meant", [("quickstrat", "quickstart"), ("paper_adapters", "paper/adapters"),
                                          ("suites/beta_gird.yaml", "beta_grid")])
def test_a_misspelled_suite_name_gets_the_nearest_shipped_one(given, meant):
    result = CliRunner().invoke(app, ["validate", given])
    assert result.exit_code == 2 and f"did you mean {meant!r}?" in result.output


def test_report_on_an_empty_root_points_at_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()  # a checkout: the committed results are there
    result = CliRunner().invoke(app, ["report"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "no suite results under runs" in text and "--results results" in text


def test_a_paper_suite_read_without_its_variables_warns_which_to_set(monkeypatch):
    for name in ("NTBENCH_LLM", "NTBENCH_VISION", "NTBENCH_MMUD"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["validate", "paper/adapters"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "${NTBENCH_LLM} is not set" in text and "export NTBENCH_LLM=" in text
    monkeypatch.setenv("NTBENCH_LLM", "/weights/llama")
    monkeypatch.setenv("NTBENCH_VISION", "/weights/clip")
    monkeypatch.setenv("NTBENCH_MMUD", "/data/mmud")
    assert "is not set" not in CliRunner().invoke(app, ["validate", "paper/adapters"]).output


def test_command_help_wraps_to_the_terminal_not_at_the_sources_line_breaks():
    from typer.testing import CliRunner

    from ntbench.cli import app, reflowed

    assert reflowed("""One sentence
        wrapped in the source.

        A second paragraph.""") == "One sentence wrapped in the source.\n\nA second paragraph."
    # `train`'s docstring breaks after "(ntbench.train.recipes: the micro backbone's"; at 200 columns the
    # paragraph fits on one line, so the help shows it whole
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
    assert "(ntbench.train.recipes: the micro backbone's validated configuration)" in shown
