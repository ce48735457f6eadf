"""Reports and compare from fake rows: intervals only where seeds give one, the MDE for the seed
count, the stale-results banner, paired differences in `compare`, plots' words and baselines."""
import json
import math
import subprocess

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import ntbench.report as report
from ntbench.paper_table import claims_with_interval
from ntbench.suite import Suite

OBJ = "reasoning.tf_paper_oIoU"
BETA = "param.adapter_options.beta"
T975_2, T80_2 = 4.302653, 1.060660  # t(2, 0.975), t(2, 0.80): three seeds
TRIVIAL = report.trivial_baselines  # the real one, before the fixture below replaces it


def _folder(tmp_path, values: dict[float, list[float]], backbone="tiny-random", report_spec=None):
    axes = {"adapter_options.beta": list(values), "train.seed": list(range(max(len(v) for v in values.values())))}
    suite = Suite(name="s", description="fake", defaults={"backbone": backbone}, axes=axes, objective=OBJ,
                  report=report_spec or {"rows": "adapter_options.beta", "plot": "bars"})
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "suite.resolved.yaml").write_text(yaml.safe_dump(suite.model_dump(mode="json")))
    rows = [{"trial": i, "status": "COMPLETE", BETA: b, "param.train.seed": s, OBJ: v}
            for i, (b, s, v) in enumerate((b, s, v) for b, vals in values.items() for s, v in enumerate(vals))]
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)
    return folder


@pytest.fixture(autouse=True)
def no_dataset(monkeypatch):
    """Trivial baselines are tested on their own; here they are fixed numbers (no dataset read)."""
    monkeypatch.setattr(report, "trivial_baselines", lambda suite, folder, metric: {"all_objects": 0.304})


def test_a_report_from_a_one_seed_suite_shows_no_interval(tmp_path):
    folder = _folder(tmp_path, {0.3: [0.40], 0.5: [0.45]})
    report.report_suite(folder)
    text = (folder / "report.md").read_text()
    assert "±" not in text and "≈" not in text
    assert "0.400 (n = 1)" in text and "0.450 (n = 1) ★" in text
    assert "per cell n = 1" in text and "Intervals: none" in text
    assert "Minimum detectable effect: not estimable" in text
    diff = pd.read_csv(folder / "diff_vs_best_reasoning.tf_paper_oIoU.csv")
    assert diff.half_width.isna().all() and not diff.distinguishable.any()


def test_a_three_seed_report_states_seeds_interval_kind_and_mde_by_hand(tmp_path):
    # the difference 0.5 - 0.3 is 0.02, 0.03, 0.01 on seeds 0, 1, 2: mean 0.02, sd 0.01
    folder = _folder(tmp_path, {0.3: [0.40, 0.45, 0.50], 0.5: [0.42, 0.48, 0.51]})
    report.report_suite(folder)
    text = (folder / "report.md").read_text()
    mde = (T975_2 + T80_2) * 0.01 / math.sqrt(3)  # 0.030965
    assert "Seeds: [0, 1, 2]; per cell n = 3." in text
    assert "paired by seed" in text and f"**{mde:.4f}**" in text
    half = T975_2 * 0.01 / math.sqrt(3)  # the paired interval straddles 0: not distinguishable
    assert f"[{-0.02 - half:+.4f}, {-0.02 + half:+.4f}]" in text
    assert "0.450 ± " in text and "≈" in text  # 0.3 is within noise of the best, 0.5 (mean 0.470)


def test_delta_table_pairs_by_seed_against_the_baseline_row(tmp_path):
    suite = Suite(name="s", defaults={"backbone": "tiny-random"}, objective=OBJ,
                  axes={"train.tasks": [{"reasoning": 1}, {"reasoning": 1, "t2i": 1}], "train.seed": [0, 1, 2]},
                  report={"rows": "train.tasks", "baseline": "reasoning"})
    df = pd.DataFrame([{"status": "COMPLETE", "param.train.tasks": t, "param.train.seed": s, OBJ: v}
                       for t, vals in (("reasoning", [0.40, 0.45, 0.50]), ("reasoning+t2i", [0.42, 0.48, 0.51]))
                       for s, v in enumerate(vals)])
    delta = report.delta_table(suite, df, OBJ)
    (row,) = delta.to_dict("records")
    half = T975_2 * 0.01 / math.sqrt(3)
    assert row["paired"] and row["n"] == 3 and row["mean"] == pytest.approx(0.02)
    assert (row["low"], row["high"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _new_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "ntbench").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    return repo


def test_banner_names_another_backbone_version_other_code_and_dirty_rows(tmp_path):
    from ntbench.freshness import banner

    repo = _new_repo(tmp_path)
    (repo / "ntbench" / "micro.py").write_text("MICRO_VERSION = 2\n")  # where the version lived before
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "v2")
    old = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "ntbench" / "micro.py").unlink()
    (repo / "ntbench" / "micro").mkdir()
    (repo / "ntbench" / "micro" / "recipe.py").write_text("MICRO_VERSION = 3\n")
    project = '[project]\nname = "x"\ndependencies = ["torch>=2.4"]\n\n[tool.importlinter]\nlayers = [%s]\n'
    (repo / "pyproject.toml").write_text(project % '"a"')
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "v3")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "results").mkdir()
    (repo / "results" / "x.csv").write_text("a\n")  # a results-only commit does not age the rows,
    (repo / "README.md").write_text("docs\n")       # nor documentation, tests or suites
    (repo / "tests").mkdir()
    (repo / "tests" / "test_x.py").write_text("def test(): pass\n")
    (repo / "ntbench" / "report.py").write_text("# how tables are written\n")  # nor the report's own code,
    (repo / "ntbench" / "cli").mkdir()
    (repo / "ntbench" / "cli" / "suites.py").write_text("# a command's options\n")  # nor the command line,
    (repo / "pyproject.toml").write_text(project % '"a", "b"')  # nor pyproject's tool sections
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "results, docs and tests")

    fresh = pd.DataFrame({"status": ["COMPLETE"] * 2, "prov.git_commit": [head] * 2, "prov.git_dirty": [False] * 2})
    assert banner(fresh, "micro", repo) == []
    stale = pd.DataFrame({"status": ["COMPLETE"] * 3, "prov.git_commit": [old, old, head],
                          "prov.git_dirty": [False, False, True]})
    (text, _) = banner(stale, "micro", repo)
    assert text.startswith("> **Stale results.**") and "2 on v2); this code builds v3" in text
    assert f"2 by {old[:10]}" in text and "1 rows made from a tree with uncommitted" in text
    # not the micro backbone: its version does not matter, the code still does
    (text, _) = banner(stale, "tiny-random", repo)
    assert "micro backbone" not in text and f"2 by {old[:10]}" in text
    # the dependency ranges do age them
    (repo / "pyproject.toml").write_text(project.replace("2.4", "2.5") % '"a", "b"')
    _git(repo, "commit", "-qam", "deps")
    (text, _) = banner(fresh, "micro", repo)
    assert f"2 by {head[:10]}" in text
    (repo / "ntbench" / "micro" / "heads.py").write_text("x = 1\n")  # code a trial runs does age them
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "trial code")
    (text, _) = banner(fresh, "micro", repo)
    assert f"2 by {head[:10]}" in text


def test_a_change_to_the_suite_modules_ages_only_rows_whose_config_head_resolves_otherwise(tmp_path):
    from ntbench.freshness import banner

    repo = _new_repo(tmp_path)
    (repo / "ntbench" / "suite_models.py").write_text("def resolve(): pass\n")
    (repo / "ntbench" / "heads.py").write_text("x = 1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "rows made here")
    old = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "ntbench" / "suite_models.py").write_text("def resolve(): return 1\n")  # how cells become configs
    _git(repo, "commit", "-qam", "suite modules")
    rows = pd.DataFrame({"status": ["COMPLETE"] * 2, "trial": [0, 1], "prov.git_commit": [old] * 2,
                         "prov.git_dirty": [False] * 2})
    assert f"2 by {old[:10]}" in banner(rows, "tiny-random", repo)[0]  # nothing known of the configs: both stale
    assert f"1 by {old[:10]}" in banner(rows, "tiny-random", repo, config_reproduced={0})[0]  # trial 1 resolves anew
    assert banner(rows, "tiny-random", repo, config_reproduced={0, 1}) == []
    (repo / "ntbench" / "heads.py").write_text("x = 2\n")  # other trial code: the config no longer vouches
    _git(repo, "commit", "-qam", "trial code")
    assert f"2 by {old[:10]}" in banner(rows, "tiny-random", repo, config_reproduced={0, 1})[0]


def test_configs_head_reproduces_compares_each_rows_config_with_its_cell_resolved_now():
    from ntbench.freshness import configs_head_reproduces
    from ntbench.suite_models import trial_config

    suite = Suite(name="s", defaults={"backbone": "tiny-random", "train": {"lr": 0.002}},
                  axes={"adapter_options.beta": [0.3, 0.5], "train.seed": [0, 1]}, objective=OBJ)
    cell = {"adapter_options.beta": 0.5, "train.seed": 1}
    ran = trial_config(suite, cell).model_dump()
    assert ran["train"]["lr"] == 0.002 and ran["adapter_options"]["beta"] == 0.5 and ran["train"]["seed"] == 1
    other_lr = {**ran, "train": {**ran["train"], "lr": 0.003}}  # a row that ran another config for its cell
    rows = pd.DataFrame([{"trial": n, BETA: b, "param.train.seed": 1} for n, b in ((0, 0.5), (1, 0.5), (2, 0.7), (3, 0.5))])
    configs = {0: ran, 1: other_lr, 2: ran}  # trial 2's beta is no value of the axis; trial 3 has no config
    assert configs_head_reproduces(suite, rows, configs) == {0}


def test_compare_prints_the_paired_difference_with_its_interval(tmp_path, monkeypatch):
    import ntbench.cli.suites as cli_suites
    from ntbench.cli import app
    from ntbench.compare import paired_differences

    rows = pd.DataFrame([{"status": "COMPLETE", "param.adapter": a, "param.train.seed": s, OBJ: v,
                          "trainable_params": p}
                         for a, vals, p in (("lora", [0.40, 0.45, 0.50], 100), ("neural", [0.42, 0.48, 0.51], 80))
                         for s, v in enumerate(vals)])
    half = T975_2 * 0.01 / math.sqrt(3)
    d = paired_differences(rows, "lora").set_index("metric")
    assert d.loc[OBJ, "paired"] and d.loc[OBJ, "mean"] == pytest.approx(0.02)
    assert (d.loc[OBJ, "low"], d.loc[OBJ, "high"]) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert d.loc["trainable_params", "mean"] == -20 and d.loc["trainable_params", "high"] == -20  # no spread

    (tmp_path / "compare-lora-neural").mkdir()  # the runner makes the suite's folder
    monkeypatch.setattr(cli_suites, "_run_suite_with_bars", lambda *a, **k: rows)
    monkeypatch.setattr(cli_suites.out, "width", 200)  # rich wraps at the terminal's width otherwise
    result = CliRunner().invoke(app, ["compare", "lora", "neural", "--backbone", "tiny-random", "--seeds", "0,1,2",
                                      "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "neural − lora" in result.output and f"[{0.02 - half:+.4g}, {0.02 + half:+.4g}]" in result.output
    assert "3 (paired)" in result.output
    written = pd.read_csv(tmp_path / "compare-lora-neural" / "compare_paired.csv")
    assert set(written.metric) == {OBJ, "trainable_params"}


def test_labels_are_words_and_the_index_takes_titles_from_disk(tmp_path):
    from ntbench.plots import axis_label, metric_label

    assert axis_label("param.train.tasks") == "tasks trained together"
    assert axis_label("param.adapter_options.beta") == "neuron activation rate β"
    assert axis_label("param.foo.bar_baz") == "foo bar baz"
    assert metric_label(OBJ) == "reasoning segmentation oIoU (teacher-forced, paper convention)"
    results = tmp_path / "results"
    (results / "cost").mkdir(parents=True)
    (results / "cost" / "README.md").write_text("intro\n# TFLOPs at the paper's setting\n")
    folder = _folder(results, {0.3: [0.40], 0.5: [0.45]})
    report.report_suite(folder)
    index = report.write_index(results).read_text()
    assert "[cost/README.md](cost/README.md): TFLOPs at the paper's setting" in index
    assert "per cell n = 1" in index and "[report.md](s/report.md)" in index


def test_report_tables_name_axes_in_words_and_show_a_json_axis_value_by_its_leaves(tmp_path):
    from ntbench.suite_models import label

    # the activation_patterns layout: a mapping axis (stored as its JSON label) in rows, beta in columns
    level, dist = label({"strategy": "level"}), label({"strategy": "distribution", "strategy_options": {"m": 0}})
    suite = Suite(name="s", axes={"adapter_options": [{"strategy": "level"}], "adapter_options.beta": [0.3, 0.5],
                                  "train.seed": [0, 1]},
                  objective=OBJ, report={"rows": "adapter_options", "cols": "adapter_options.beta", "plot": "heatmap"})
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "suite.resolved.yaml").write_text(yaml.safe_dump(suite.model_dump(mode="json")))
    rows = [{"trial": i, "status": "COMPLETE", "param.adapter_options": k, BETA: b, "param.train.seed": seed,
             OBJ: 0.4 + 0.01 * i} for i, (k, b, seed) in enumerate((k, b, seed) for k in (level, dist)
                                                                   for b in (0.3, 0.5) for seed in (0, 1))]
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)
    report.report_suite(folder)
    text = (folder / "report.md").read_text()
    assert "param." not in text and '{"strategy"' not in text
    assert "| adapter options ↓ · neuron activation rate β →" in text  # the pivot's corner names both axes
    assert "| strategy=distribution m=0 " in text and "| strategy=level " in text
    # the difference table: axis headers in words, the mapping by its leaves
    assert "| adapter options | neuron activation rate β | seeds |" in text
    assert "| strategy=level | 0.3 | 2 (paired) |" in text
    # the CSVs keep the raw values a program reads back
    assert level in pd.read_csv(folder / f"table_{OBJ}.csv")["param.adapter_options"].tolist()


def test_plots_draw_trivial_baselines_intervals_and_words(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from ntbench.plots import grid_plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at it
    suite = Suite(name="s", axes={"adapter_options.beta": [0.3, 0.5], "train.seed": [0, 1, 2]}, objective=OBJ,
                  report={"rows": "adapter_options.beta", "plot": "bars"})
    agg = report.aggregate(pd.DataFrame([{"status": "COMPLETE", BETA: b, OBJ: v}
                                         for b, vals in ((0.3, [0.40, 0.45, 0.50]), (0.5, [0.5])) for v in vals]),
                           OBJ, [BETA])
    grid_plot(suite, agg, OBJ, tmp_path / "p.png", {"all_objects": 0.304, "largest_object": 0.29})
    (ax,) = figures[0].axes
    assert ax.get_xlabel() == "neuron activation rate β"
    assert ax.get_ylabel() == "reasoning segmentation oIoU\n(teacher-forced, paper convention)"
    lines = {ln.get_label(): ln.get_ydata()[0] for ln in ax.lines if ln.get_label().endswith(")")}
    assert lines == {"all-objects mask (0.304)": 0.304, "largest-object mask (0.290)": 0.29}
    # the error bars: the t interval of the 3-seed cell, nothing for the 1-seed cell
    (bars,) = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None]
    segments = bars.errorbar.lines[2][0].get_segments()
    half = T975_2 * 0.05 / math.sqrt(3)
    assert [s[1][1] - s[0][1] for s in segments] == [pytest.approx(2 * half), 0.0]


def test_trivial_baselines_are_scored_on_the_trials_samples_and_cached(tmp_path, monkeypatch):
    from ntbench.data.cache import resolve_data
    from ntbench.data.io import SampleDataset
    from ntbench.eval.evaluate import trivial_mask_baselines

    monkeypatch.setenv("NTBENCH_HOME", str(tmp_path / "home"))
    suite = Suite(name="s", defaults={"backbone": "tiny-random", "data": "microworld:16", "eval_samples": 5,
                                      "eval_seed": 3}, axes={"train.seed": [0]}, objective=OBJ)
    got = TRIVIAL(suite, tmp_path, OBJ)
    want = trivial_mask_baselines(SampleDataset(resolve_data("microworld:16"), "val"), ["reasoning"], 5, 3)
    assert got == {m: want["reasoning"][m]["paper_oIoU"] for m in ("all_objects", "largest_object")}
    assert (tmp_path / "trivial_baselines.json").is_file()
    cious = TRIVIAL(suite, tmp_path, "reasoning.tf_lisa_cIoU")
    assert cious["all_objects"] == want["reasoning"]["all_objects"]["lisa_cIoU"]
    assert TRIVIAL(suite, tmp_path, "captioning.BLEU-4") == {}  # not a segmentation metric


def test_banner_says_when_the_code_is_not_a_git_checkout(tmp_path):
    from ntbench.freshness import banner

    rows = pd.DataFrame({"status": ["COMPLETE"], "prov.git_commit": ["a" * 40], "prov.git_dirty": [False]})
    (text, _) = banner(rows, "tiny-random", tmp_path)  # tmp_path: no repository
    assert "not a git checkout" in text and "does not have" not in text


def test_setup_banner_speaks_only_when_a_seed_spans_setups():
    from ntbench.freshness import setup_banner, setups

    def rows(seeds, gpu, threads, torch_v, status="COMPLETE"):
        return pd.DataFrame({"status": status, "param.train.seed": seeds, "prov.cuda": gpu,
                             "prov.torch_threads": threads, "prov.torch": torch_v})
    cpu = rows([0, 1, 2], None, 1, "2.14.1")
    assert setup_banner(cpu) == []
    # seed 2 on both machines (the FAIL row on a third setup is not counted)
    mixed = pd.concat([cpu, rows([2, 3], "NVIDIA H200", 1, "2.11.0+cu130"), rows([0], "A100", 1, "2.11", "FAIL")])
    (text, _) = setup_banner(mixed)
    assert "2 arithmetic setups" in text and "seed 2 ran on more than one" in text
    assert "3 on cpu, 1 thread, torch 2.14.1" in text and "2 on NVIDIA H200, 1 thread, torch 2.11.0+cu130" in text
    # each seed on one setup: pairs stay like with like, nothing to say
    assert setup_banner(pd.concat([cpu, rows([3, 4], "NVIDIA H200", 1, "2.11.0+cu130")])) == []
    two_threads = cpu.assign(**{"prov.torch_threads": [1, 2, 2]}, **{"param.train.seed": [0, 0, 1]})
    assert "2 on cpu, 2 threads" in setup_banner(two_threads)[0]
    # rows that record no thread count (older provenance) are unknown, not a setup of their own
    older = pd.concat([cpu, rows([0, 1], None, float("nan"), "2.14.1")])
    assert setups(older) == {"cpu, 1 thread, torch 2.14.1": 3} and setup_banner(older) == []
    assert setup_banner(pd.DataFrame({"status": ["COMPLETE"]})) == []  # no provenance at all
    assert setups(rows([0], None, 1, "2.14.1", "FAIL")) == {}  # no complete row


def test_report_only_modules_exist_and_no_trial_imports_them():
    # the staleness check ignores changes to REPORT_ONLY: that is only sound while trials never run them
    import subprocess
    import sys

    from ntbench.freshness import CODE_ROOT, REPORT_ONLY

    assert all((CODE_ROOT / p).is_file() for p in REPORT_ONLY)  # a rename would silently drop the exclusion
    names = [p.removesuffix(".py").replace("/", ".") for p in REPORT_ONLY]
    probe = ("import sys, ntbench.train.trial, ntbench.runner, ntbench.bench.trial; "
             f"print([n for n in {names!r} if n in sys.modules])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


SETTERS = {"set_num_threads", "set_num_interop_threads", "use_deterministic_algorithms", "manual_seed", "seed",
           "set_default_dtype", "set_default_device", "set_flush_denormal", "set_float32_matmul_precision",
           "putenv", "unsetenv", "setattr"}


def _global_state_writes(source: str) -> list[str]:
    """Process-wide state a module's code sets: calls of known setters (as attributes or bare names), and any
    write to os.environ or torch.backends (assignment, augmented or annotated assignment, del, update)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            if name in SETTERS or (name in ("update", "pop", "setdefault", "clear") and "environ" in owner):
                found.append(f"{node.lineno}: {ast.unparse(func)}")
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            if any(k in ast.unparse(t) for k in ("environ", "backends")):
                found.append(f"{node.lineno}: {ast.unparse(t)}")
    return found


def test_the_global_state_probe_catches_each_form():
    for bad in ("import torch\ntorch.set_num_threads(1)", "from torch import set_num_threads\nset_num_threads(1)",
                "import os\nos.environ['X'] = '1'", "import os\nos.environ.update(X='1')",
                "import os\ndel os.environ['X']", "import os\nos.environ['X'] += '1'",
                "import torch\ntorch.backends.cudnn.benchmark = True",
                "import torch\nsetattr(torch.backends.cudnn, 'benchmark', True)", "import random\nrandom.seed(0)",
                "import torch\ntorch.use_deterministic_algorithms(False)"):
        assert _global_state_writes(bad), bad
    assert _global_state_writes("d = {}\nd.update(a=1)\nx = os.environ.get('X')\nprint(x)") == []


def test_the_cli_sets_no_global_state_so_its_changes_do_not_age_rows():
    # freshness ignores changes under CLI_ONLY: sound only while a command's effect on a trial goes through the
    # configuration (recorded in every row), never through process-wide state the row does not record
    from ntbench.freshness import CLI_ONLY, CODE_ROOT

    found = []
    for folder in CLI_ONLY:
        files = sorted((CODE_ROOT / folder).rglob("*.py"))
        assert files  # a rename would silently drop the exclusion
        found += [f"{path.name}:{hit}" for path in files for hit in _global_state_writes(path.read_text())]
    assert found == []


# --- paper vs ntbench: one claim per verdict, hand-worked numbers ---------------------------------------
CLAIMS = {"table": "Table X", "source": "a made-up table", "claims": [
    # beta 0.5 - 0.3 per seed: 0.10, 0.11, 0.12 (mean 0.11, sd 0.01)
    {"says": "0.5 beats 0.3", "a": {"adapter_options.beta": 0.5}, "b": {"adapter_options.beta": 0.3},
     "paper": {"a": 62.8, "b": 62.0}},
    {"says": "0.3 beats 0.5", "a": {"adapter_options.beta": 0.5}, "b": {"adapter_options.beta": 0.3},
     "paper": {"a": 60.0, "b": 61.0}},
    # beta 0.7 - 0.3 per seed: 0.02, 0.03, 0.01 (mean 0.02, sd 0.01)
    {"says": "0.7 beats 0.3", "a": {"adapter_options.beta": 0.7}, "b": {"adapter_options.beta": 0.3},
     "paper": {"a": 62.0, "b": 61.0}},
    {"says": "0.9 beats 0.3", "a": {"adapter_options.beta": 0.9}, "b": {"adapter_options.beta": 0.3},
     "paper": {"a": 62.0, "b": 61.0}},
    {"says": "0.5 and 0.3 are alike", "a": {"adapter_options.beta": 0.5}, "b": {"adapter_options.beta": 0.3},
     "paper": {"a": 62.0, "b": 62.1}, "expect": "same"},
    # beta 0.5 against the value 0.30: 0.20, 0.26, 0.32 (mean 0.26, sd 0.06)
    {"says": "0.5 beats a value", "a": {"adapter_options.beta": 0.5}, "b": 0.30, "paper": {"a": 60, "b": 50}},
]}


def _claims_folder(tmp_path, rows=True):
    suite = Suite(name="s", defaults={"backbone": "tiny-random"}, objective=OBJ, paper=CLAIMS,
                  axes={"adapter_options.beta": [0.3, 0.5, 0.7, 0.9], "train.seed": [0, 1, 2]},
                  report={"rows": "adapter_options.beta", "plot": "bars"})
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "suite.resolved.yaml").write_text(yaml.safe_dump(suite.model_dump(mode="json")))
    values = {0.3: [0.40, 0.45, 0.50], 0.5: [0.50, 0.56, 0.62], 0.7: [0.42, 0.48, 0.51]}  # 0.9: never run
    table = [{"trial": len(values) * s + i, "status": "COMPLETE", BETA: b, "param.train.seed": s, OBJ: v}
             for i, (b, vals) in enumerate(values.items()) for s, v in enumerate(vals)] if rows else []
    pd.DataFrame(table, columns=["trial", "status", BETA, "param.train.seed", OBJ]).to_csv(folder / "trials.csv",
                                                                                         index=False)
    return folder


def test_paper_table_gives_each_verdict_from_the_interval_of_the_difference(tmp_path):
    folder = _claims_folder(tmp_path)
    report.report_suite(folder)
    text = (folder / "report.md").read_text()
    section = text[text.index("## Paper vs ntbench: Table X"):]
    assert text.rstrip().endswith(section.rstrip())  # the report ends with it
    got = pd.read_csv(folder / "paper_vs_ntbench.csv")
    # three seeds: a t interval can exclude 0, but the signed-rank test's smallest p is 2/2^3 = 0.25, so no
    # direction is confirmed by it: those claims are marked "(t interval only)"
    rep, opp = "reproduced (t interval only)", "opposite (t interval only)"
    assert got.verdict.tolist() == [rep, opp, "not distinguishable at this resolution", "not run", opp, rep]
    assert got.rank_p[0] == pytest.approx(0.25) and (got.above[0], got.below[0]) == (3, 0)
    assert f"| p = 0.250; 3 of 3 seeds A > B | {rep}: with n = 3 the rank test's p cannot go below 0.250 |" in section
    half = T975_2 * 0.01 / math.sqrt(3)  # 0.024841: paired t interval of sd 0.01 over 3 seeds
    assert got["mean"][0] == pytest.approx(0.11) and got["low"][0] == pytest.approx(0.11 - half)
    assert f"+0.1100 [{0.11 - half:+.4f}, {0.11 + half:+.4f}] (paired, n = 3)" in section
    # contains 0: the MDE of that comparison is stated, (t(2, .975) + t(2, .80)) * 0.01 / sqrt(3)
    mde = (T975_2 + T80_2) * 0.01 / math.sqrt(3)
    assert got["mde"][2] == pytest.approx(mde) and f"not distinguishable at this resolution (MDE {mde:.4f})" in section
    assert "| 4 | 0.9 beats 0.3 |" in section and "| not run | 0.450 ± " in section
    # one-sample against 0.30: 0.26 ± t(2, .975) * 0.06 / sqrt(3)
    assert got["mean"][5] == pytest.approx(0.26) and got["high"][5] == pytest.approx(0.26 + T975_2 * 0.06 / 3 ** .5)
    assert got.comparison[5] == "one-sample" and "the value 0.3" in section
    assert (f"Verdicts: 0 reproduced, 2 {rep}, 0 opposite, 2 {opp}, 1 not distinguishable at this resolution, "
            "1 not run.") in section
    assert "62.8 | 62.0 | higher" in section and "62.0 | 62.1 | same" in section


def test_a_report_with_no_rows_says_not_run(tmp_path):
    folder = _claims_folder(tmp_path, rows=False)
    report.report_suite(folder)
    text = (folder / "report.md").read_text()
    assert pd.read_csv(folder / "paper_vs_ntbench.csv").verdict.eq("not run").all()
    assert ("Verdicts: 0 reproduced, 0 reproduced (t interval only), 0 opposite, 0 opposite (t interval only), "
            "0 not distinguishable at this resolution, 6 not run.") in text
    assert "| not run | not run | - | - | not run |" in text


def test_status_counts_the_claims_a_partial_grid_can_already_judge():
    """A claim has an interval once both its cells share two seeds (or, against a value, its cell has two)."""
    suite = Suite(name="s", defaults={"backbone": "tiny-random"}, objective=OBJ, paper=CLAIMS,
                  axes={"adapter_options.beta": [0.3, 0.5, 0.7, 0.9], "train.seed": [0, 1, 2]})
    done = [{"adapter_options.beta": b, "train.seed": s} for b, s in
            [(0.3, 0), (0.3, 1), (0.5, 1), (0.5, 2), (0.7, 0), (0.7, 1), (0.9, 2)]]
    # 0.5 vs 0.3 share seed 1 only (claims 1, 2, 5: no); 0.7 vs 0.3 share 0 and 1 (claim 3: yes); 0.9 has one
    # run (claim 4: no); 0.5 against a value has two runs (claim 6: yes)
    assert claims_with_interval(suite, done) == (2, 6)
    done += [{"adapter_options.beta": 0.5, "train.seed": 0}, {"adapter_options.beta": 0.9, "train.seed": 0}]
    assert claims_with_interval(suite, done) == (5, 6)  # 0.9 and 0.3 share only seed 0
    assert claims_with_interval(suite.model_copy(update={"paper": None}), done) is None


def test_one_seed_claims_claim_no_interval(tmp_path):
    folder = _folder(tmp_path, {0.3: [0.40], 0.5: [0.45]})
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    claim = {"says": "x", "a": {"adapter_options.beta": 0.5}, "b": {"adapter_options.beta": 0.3},
             "paper": {"a": 2, "b": 1}}
    suite = suite.model_copy(update={"paper": Suite(name="t", paper={"table": "T", "claims": [claim]}).paper})
    (row,) = report.paper_section(suite, pd.read_csv(folder / "trials.csv"), folder, {"tables": []})[-2:-1]
    assert "+0.0500 (n = 1, no interval)" in row and "(n = 1: no interval, no MDE)" in row and "±" not in row


def test_results_resolved_before_claims_take_them_from_the_shipped_suite(tmp_path):
    folder = _folder(tmp_path, {0.3: [0.40, 0.45], 0.5: [0.42, 0.48]})
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    shipped = tmp_path / "suites"
    shipped.mkdir()
    claim = "{says: x, a: {adapter_options.beta: %s}, b: {adapter_options.beta: 0.3}, paper: {a: 2, b: 1}}"
    (shipped / "s.yaml").write_text(f"name: s\npaper: {{table: T, claims: [{claim % 0.5}]}}\n")
    table, where, problems = report.paper_claims(suite, shipped)
    assert table.table == "T" and where == "suites/s.yaml" and problems == []
    (shipped / "s.yaml").write_text(f"name: s\npaper: {{table: T, claims: [{claim % 0.9}]}}\n")  # not in these results
    _, _, problems = report.paper_claims(suite, shipped)
    assert problems == ["paper.claims[0].a.adapter_options.beta: 0.9 is not a value of this axis; allowed: 0.3, 0.5"]
    # a suite without claims says so
    assert report.paper_claims(suite, tmp_path / "none") == (None, "", [])


def test_the_index_counts_every_suites_verdicts_from_disk(tmp_path):
    from ntbench.stats import NOT_RUN, OPPOSITE, REPRODUCED, REPRODUCED_T_ONLY, UNRESOLVED

    base = {"metric": OBJ, "a": "x", "b": "y", "comparison": "paired", "n": 6, "mde": 0.05, "rank_p": 0.03125,
            "above": 6, "below": 0}
    verdicts = {"s1": [(REPRODUCED, 0.02, 0.01, 0.03), (OPPOSITE, -0.02, -0.03, -0.01), (REPRODUCED_T_ONLY, 0.02, 0.01, 0.03)],
                "s2": [(UNRESOLVED, 0.01, -0.02, 0.04), (UNRESOLVED, 0.0, -0.01, 0.01), (NOT_RUN, None, None, None)]}
    for name, rows in verdicts.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "suite.resolved.yaml").write_text("name: x\n")
        (folder / "trials.csv").write_text("trial\n")
        banner = "> **Stale results.** old rows\n" if name == "s2" else ""
        (folder / "report.md").write_text(f"# {name}\n\n{banner}\nbody\n")
        pd.DataFrame([{**base, "says": f"{name} claim {i}", "verdict": v, "mean": m, "low": lo, "high": hi}
                      for i, (v, m, lo, hi) in enumerate(rows)]).to_csv(folder / "paper_vs_ntbench.csv", index=False)
    (tmp_path / "s2" / "report.md").write_text("# s2\n\n> **Stale results.** old rows\n\n"
                                               "## Paper vs ntbench: Table 6 (top)\n")
    s3 = tmp_path / "s3"  # a suite without claims is named, not counted
    s3.mkdir()
    (s3 / "suite.resolved.yaml").write_text("name: x\n")
    (s3 / "trials.csv").write_text("trial\n")
    text = report.write_index(tmp_path).read_text()
    # columns: paper table, rows, claims, reproduced, reproduced (t only), opposite, opposite (t only),
    # not distinguishable, no interval, not run
    assert "| [s1](s1/report.md) |  | fresh | 3 | 1 | 1 | 1 | 0 | 0 | 0 | 0 |" in text
    assert "| [s2](s2/report.md) | Table 6 (top) | stale | 3 | 0 | 0 | 0 | 0 | 2 | 0 | 1 |" in text
    assert "| **fresh and rechecked** | | | 3 | 1 | 1 | 1 | 0 | 0 | 0 | 0 |" in text  # stale s2 left out
    assert "Suites without paper claims: s3." in text
    assert ("| s1 | fresh | s1 claim 1 | " + OBJ + " | -0.0200 [-0.0300, -0.0100] (paired, n = 6) | "
            "p = 0.031; 6 of 6 seeds A > B | opposite |") in text
    assert "| s2 | stale | s2 claim 2 | " + OBJ + " | - | - | not run |" in text
    # a one-seed claim counts as "no interval", and a banner saying a rerun differed is named
    pd.DataFrame([{**base, "says": "one seed", "verdict": UNRESOLVED, "mean": 0.01, "low": None, "high": None,
                   "n": 1}]).to_csv(tmp_path / "s1" / "paper_vs_ntbench.csv", index=False)
    (tmp_path / "s1" / "report.md").write_text("# s1\n\n> **Stale results.** x; `ntbench verify` reran trial 2 "
                                               "and got different numbers (verified.json).\n")
    text = report.write_index(tmp_path).read_text()
    assert "| [s1](s1/report.md) |  | stale: a rerun differed | 1 | 0 | 0 | 0 | 0 | 0 | 1 | 0 |" in text
    # no suite with claims: no section at all
    for name in verdicts:
        (tmp_path / name / "paper_vs_ntbench.csv").unlink()
    assert "Paper vs ntbench" not in report.write_index(tmp_path).read_text()


def test_the_report_states_the_suites_run_time_from_its_storage(tmp_path, monkeypatch):
    import time
    from datetime import datetime, timedelta

    # Optuna keeps naive local times: on a machine in Berlin (UTC+1 in November) the report still says UTC
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()

    import optuna

    from ntbench.storage import make_storage
    from ntbench.wall_time import busy_parts, run_time_line

    t0 = datetime(2026, 11, 28, 2, 0)
    at = lambda m: t0 + timedelta(minutes=m)  # noqa: E731
    # two workers overlapping, then a 5-minute pause (one part), then a session later (a second part)
    runs = [(0, 6), (0, 7), (6, 13), (18, 24), (180, 186)]
    assert busy_parts([(at(a), at(b)) for a, b in runs]) == [(at(0), at(24)), (at(180), at(186))]
    assert run_time_line(tmp_path) == []  # no journal: nothing claimed
    study = optuna.create_study(study_name="s", storage=make_storage(None, tmp_path))
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for a, b in runs:
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.COMPLETE, value=0.5, values=None,
            datetime_start=at(a), datetime_complete=at(b), params={"x": 0.5}, distributions=dist,
            user_attrs={}, system_attrs={}, intermediate_values={}))
    # an interrupted trial, marked failed when the suite resumed hours later, does not count
    study.add_trial(optuna.trial.FrozenTrial(
        number=0, trial_id=0, state=optuna.trial.TrialState.FAIL, value=None, values=None,
        datetime_start=at(24), datetime_complete=at(180), params={"x": 0.5}, distributions=dist,
        user_attrs={"fail_reason": "interrupted"}, system_attrs={}, intermediate_values={}))
    before = sorted(p.name for p in tmp_path.iterdir())
    (line, _) = run_time_line(tmp_path)
    # 24 + 6 = 30 min busy; trials 6-7 min (360-420 s), median of [360, 360, 360, 420, 420] = 360
    assert "5 complete trials ran in **30.0 min**" in line
    assert "2 parts: 2026-11-28 01:00-01:24; 2026-11-28 04:00-04:06 UTC" in line
    assert "one trial took 360-420 s (median 360 s)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # read from a copy: no lock file beside it
    (tmp_path / "optuna.journal").write_text('{"op_code": 0}\n')  # a damaged journal stops no report
    assert run_time_line(tmp_path)[0].startswith("Run time: not read (KeyError")
    monkeypatch.delenv("TZ")
    time.tzset()


def test_status_counts_a_running_suite_and_estimates_the_time_left(tmp_path):
    import json
    from datetime import datetime, timedelta

    import optuna
    from typer.testing import CliRunner

    from ntbench.cli import app
    from ntbench.storage import make_storage
    from ntbench.wall_time import suite_progress

    folder = _folder(tmp_path, {0.3: [0.4], 0.5: [0.5]})
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    now = datetime(2026, 11, 28, 12, 0)
    storage = make_storage(None, folder)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def add(study, state, start=None, minutes=None, value=None):
        end = start + timedelta(minutes=minutes) if minutes is not None else None
        storage.create_new_trial(study._study_id, template_trial=optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=state, value=value, values=None, datetime_start=start, datetime_complete=end,
            params={"x": 0.5}, distributions=dist, user_attrs={}, system_attrs={}, intermediate_values={}))

    old = optuna.create_study(study_name="s-before-an-edit", storage=storage)  # another study: not counted
    for _ in range(4):
        add(old, optuna.trial.TrialState.COMPLETE, now - timedelta(hours=5), 60, 0.1)
    study = optuna.create_study(study_name=suite.study_name(), storage=storage)
    for m in (6, 6, 8):  # median 6 min
        add(study, optuna.trial.TrialState.COMPLETE, now - timedelta(minutes=30), m, 0.5)
    add(study, optuna.trial.TrialState.RUNNING, now - timedelta(minutes=2))   # 4 min to go
    add(study, optuna.trial.TrialState.RUNNING, now - timedelta(minutes=30))  # slow: takes no one else's time
    add(study, optuna.trial.TrialState.FAIL, now - timedelta(minutes=40), 1)
    for _ in range(3):
        study.enqueue_trial({"x": 0.5})
    p = suite_progress(folder, now=now)
    assert (p["complete"], p["running"], p["to_start"], p["failed_attempts"], p["total"]) == (3, 2, 3, 1, 8)
    assert p["interrupted_attempts"] == 0  # a trial that failed of itself
    assert p["median_trial_s"] == 360
    # (4 + 0) min to finish the running ones, then 3 trials of 6 min, over 2 workers: 11 min
    assert p["time_left_s"] == pytest.approx(11 * 60)
    assert sorted(t["running_s"] for t in p["running_trials"]) == [120, 1800]
    result = CliRunner().invoke(app, ["status", str(folder), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["to_start"] == 3
    missing = CliRunner().invoke(app, ["status", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere: no such folder" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no suite storage here" in CliRunner().invoke(app, ["status", str(empty)]).output
    shown = " ".join(CliRunner().invoke(app, ["status", str(folder)]).output.split())
    assert "3 of 8 trials complete, 2 running, 3 to start; 1 failed attempt; a trial takes 6.0 min (median); about" \
        in shown and "left at 2 running worker(s)" in shown  # the command's clock is the real one: no fixed minutes
    # a sampled suite: nothing waits, its budget says what is left
    sampled = tmp_path / "t"
    sampled.mkdir()
    tpe = Suite(name="t", ranges={"adapter_options.beta": {"low": 0.1, "high": 0.9}}, sampler={"type": "tpe", "n_trials": 10},
                objective=OBJ)
    (sampled / "suite.resolved.yaml").write_text(yaml.safe_dump(tpe.model_dump(mode="json")))
    st = optuna.create_study(study_name=tpe.study_name(), storage=make_storage(None, sampled))
    add_to = make_storage(None, sampled)
    for _ in range(4):
        add_to.create_new_trial(st._study_id, template_trial=optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.COMPLETE, value=0.5, values=None,
            datetime_start=now - timedelta(minutes=10), datetime_complete=now - timedelta(minutes=5),
            params={"x": 0.5}, distributions=dist, user_attrs={}, system_attrs={}, intermediate_values={}))
    p = suite_progress(sampled, now=now)
    assert (p["complete"], p["to_start"], p["total"]) == (4, 6, 10) and p["time_left_s"] == pytest.approx(30 * 60)


def test_status_of_a_grid_stopped_by_ctrl_c_counts_the_stopped_cells_as_to_start(tmp_path):
    import optuna

    from ntbench.records import INTERRUPTED
    from ntbench.storage import make_storage
    from ntbench.wall_time import suite_progress

    folder = _folder(tmp_path, {0.3: [0.40, 0.42], 0.5: [0.45, 0.47]})  # 2 betas x 2 seeds: 4 cells
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    study = optuna.create_study(study_name=suite.study_name(), storage=make_storage(None, folder))
    dist = {"adapter_options.beta": optuna.distributions.CategoricalDistribution([0.3, 0.5]),
            "train.seed": optuna.distributions.CategoricalDistribution([0, 1])}
    for beta, seed in [(0.3, 0), (0.3, 1)]:
        study.add_trial(optuna.trial.create_trial(params={"adapter_options.beta": beta, "train.seed": seed},
                                                  distributions=dist, value=0.4))
    study.add_trial(optuna.trial.create_trial(params={"adapter_options.beta": 0.5, "train.seed": 0}, distributions=dist,
                                              state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": INTERRUPTED}))
    p = suite_progress(folder)  # nothing waits and nothing runs: the stopped cell and the one never enqueued remain
    assert (p["complete"], p["running"], p["to_start"], p["total"], p["failed_attempts"]) == (2, 0, 2, 4, 1)
    assert p["interrupted_attempts"] == 1
    from typer.testing import CliRunner

    import ntbench.wall_time
    from ntbench.cli import app
    assert ntbench.wall_time.INTERRUPTED == INTERRUPTED  # the copy status counts by is the runner's value
    shown = CliRunner().invoke(app, ["status", str(folder)])
    assert shown.exit_code == 0
    text = " ".join(shown.output.split())  # the console may wrap the line anywhere between words
    assert "2 of 4 trials complete, 0 running, 2 to start; 1 interrupted attempt (stopped by Ctrl-C: their cells " \
           "run again); a trial takes" in text and "failed attempt" not in text
    assert "left at one worker (none running now; halve it for --workers 2)" in text


def test_status_shows_the_next_cells_a_resume_takes_a_stopped_one_first(tmp_path):
    import json

    import optuna
    from typer.testing import CliRunner

    from ntbench.cli import app
    from ntbench.records import INTERRUPTED
    from ntbench.storage import make_storage
    from ntbench.wall_time import suite_progress

    folder = _folder(tmp_path, {0.3: [0.40, 0.42], 0.5: [0.45, 0.47]})
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    study = optuna.create_study(study_name=suite.study_name(), storage=make_storage(None, folder))
    cells = [{"adapter_options.beta": b, "train.seed": s} for b in (0.3, 0.5) for s in (0, 1)]
    for cell in cells:  # queued as the runner queues a grid
        study.enqueue_trial(cell, user_attrs={"cell": json.dumps(cell, sort_keys=True)})
    study.tell(study.ask(), 0.4)  # (0.3, 0) completes
    stopped = study.ask()  # (0.3, 1) is stopped by Ctrl-C
    stopped.set_user_attr("fail_reason", INTERRUPTED)
    study.tell(stopped, state=optuna.trial.TrialState.FAIL)
    p = suite_progress(folder)
    # the stopped cell first (a resume queues it again in its place), then the waiting ones, oldest first
    assert p["next_trials"] == [{"number": None, "params": cells[1]}, {"number": 2, "params": cells[2]},
                                {"number": 3, "params": cells[3]}]
    shown = " ".join(CliRunner().invoke(app, ["status", str(folder)]).output.split())
    assert "next (stopped, runs again) beta=0.3 seed=1" in shown
    assert "next #2 beta=0.5 seed=0" in shown
    study.enqueue_trial(cells[1], user_attrs={"cell": json.dumps(cells[1], sort_keys=True)})  # queued again
    assert [t["number"] for t in suite_progress(folder)["next_trials"]] == [2, 3, 4]


def test_report_rebuilds_the_table_of_a_suite_stopped_before_it_wrote_one(tmp_path):
    import optuna
    from typer.testing import CliRunner

    from ntbench.cli import app
    from ntbench.refresh import refresh_trials_csv
    from ntbench.storage import make_storage

    folder = _folder(tmp_path, {0.3: [0.40, 0.42], 0.5: [0.45, 0.47]})
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    (folder / "trials.csv").unlink()  # the run was stopped: storage, no table
    study = optuna.create_study(study_name=suite.study_name(), storage=make_storage(None, folder),
                                direction="maximize")
    dist = {"adapter_options.beta": optuna.distributions.CategoricalDistribution([0.3, 0.5]),
            "train.seed": optuna.distributions.CategoricalDistribution([0, 1])}
    done = [(0.3, 0, 0.40), (0.5, 0, 0.45), (0.3, 1, 0.42)]
    for beta, seed, value in done:
        study.add_trial(optuna.trial.create_trial(
            params={"adapter_options.beta": beta, "train.seed": seed}, distributions=dist, value=value,
            user_attrs={"summary": {"metrics": {"reasoning": {"tf_paper_oIoU": value}}}}))
    study.enqueue_trial({"adapter_options.beta": 0.5, "train.seed": 1})  # the cell not yet run
    waiting_only = tmp_path / "w"  # a suite still preparing its data: no row yet, no table written
    waiting_only.mkdir()
    (waiting_only / "suite.resolved.yaml").write_text((folder / "suite.resolved.yaml").read_text())
    optuna.create_study(study_name=suite.study_name(), storage=make_storage(None, waiting_only)).enqueue_trial(
        {"adapter_options.beta": 0.3, "train.seed": 0})
    assert refresh_trials_csv(waiting_only) is None and not (waiting_only / "trials.csv").exists()
    assert refresh_trials_csv(folder) == 3
    rows = pd.read_csv(folder / "trials.csv")
    assert sorted(zip(rows["param.adapter_options.beta"], rows["param.train.seed"], rows[OBJ])) == sorted(done)
    stamp = (folder / "trials.csv").stat().st_mtime_ns
    assert refresh_trials_csv(folder) is None  # matches the storage: left as it is
    assert (folder / "trials.csv").stat().st_mtime_ns == stamp
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (folder / "report.md").read_text()
    assert "3 complete / 3 trials" in text and "> **In progress.** 3 of 4 trials complete, 0 running, 1 to start" in text
    # a finished trial the table lacks: rebuilt again, and the report says so
    study.add_trial(optuna.trial.create_trial(
        params={"adapter_options.beta": 0.5, "train.seed": 1}, distributions=dist, value=0.47,
        user_attrs={"summary": {"metrics": {"reasoning": {"tf_paper_oIoU": 0.47}}}}))
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path)])
    assert "trials.csv rebuilt from its storage (4 rows" in result.output
    assert "4 complete / 4 trials" in (folder / "report.md").read_text()
    # a table with a complete row that the journal lacks is the newer record: kept
    table = (folder / "trials.csv").read_text()
    fuller = pd.concat([pd.read_csv(folder / "trials.csv"), pd.DataFrame([{"trial": 99, "status": "COMPLETE"}])])
    fuller.to_csv(folder / "trials.csv", index=False)
    assert refresh_trials_csv(folder) is None
    (folder / "trials.csv").write_text(table)
    # a damaged journal: one warning, the table as it was, and the other suites still reported
    (waiting_only / "optuna.journal").write_text('{"op_code": 0}\n')
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path)])
    assert result.exit_code == 0 and "w: trials.csv not rebuilt" in result.output
    assert (folder / "trials.csv").read_text() == table


def test_the_scoreboard_leaves_suites_in_progress_out_of_the_totals_but_not_mixed_machines(tmp_path):
    from ntbench.paper_table import scoreboard

    base = {"metric": OBJ, "a": "x", "b": "y", "comparison": "paired", "n": 3, "mde": 0.05, "says": "c",
            "verdict": "reproduced", "mean": 0.02, "low": 0.01, "high": 0.03}
    banners = {"p": "> **In progress.** 3 of 8 trials complete\n> **Rechecked.** x\n",
               "m": "> **Rechecked.** x\n> **Mixed machines.** two setups\n"}
    for name, banner in banners.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.md").write_text(f"# {name}\n\n{banner}\n")
        pd.DataFrame([base]).to_csv(tmp_path / name / "paper_vs_ntbench.csv", index=False)
    text = "\n".join(scoreboard([tmp_path / "m", tmp_path / "p"]))
    assert "| [p](p/report.md) |  | in progress, rechecked | 1 | 1 |" in text
    assert "| [m](m/report.md) |  | rechecked, mixed machines | 1 | 1 |" in text
    assert "| **fresh and rechecked** | | | 1 | 1 | 0 | 0 | 0 | 0 |" in text


def test_a_report_over_task_mixes_states_its_budget_rule():
    rows = pd.DataFrame([{"status": "COMPLETE", "param.train.tasks": t, "param.train.seed": 0, OBJ: 0.5}
                         for t in ("reasoning", "reasoning+referring")])
    mixes = {"train.tasks": [{"reasoning": 1}, {"reasoning": 1, "referring": 1}], "train.seed": [0]}
    fixed = Suite(name="s", axes=mixes, objective=OBJ)
    assert any("fixed total steps" in ln and "fewer updates" in ln for ln in report.method_lines(fixed, rows))
    kept = Suite(name="s", axes=mixes, objective=OBJ, budget="main_task_updates")
    assert any("fixed main-task updates" in ln for ln in report.method_lines(kept, rows))
    betas = Suite(name="s", axes={"adapter_options.beta": [0.3, 0.5]}, objective=OBJ)  # one task mix: no line
    beta_rows = pd.DataFrame([{"status": "COMPLETE", BETA: b, OBJ: 0.5} for b in (0.3, 0.5)])
    assert not any(ln.startswith("Budget") for ln in report.method_lines(betas, beta_rows))


def test_status_shows_a_cell_by_its_short_keys_and_the_leaves_of_a_json_axis_value():
    from ntbench.plots import cell_text
    from ntbench.suite_models import label

    # the activation_patterns grid: an axis whose values are mappings, stored as their JSON label
    strategy = label({"strategy": "distribution", "strategy_options": {"m": 0}})
    assert cell_text({"adapter_options": strategy, "adapter_options.beta": 0.3, "train.seed": 2}) == \
        "strategy=distribution m=0 beta=0.3 seed=2"
    # two keys ending alike keep their full names; a task mix's label and a non-JSON brace stay as they are
    assert cell_text({"train.seed": 1, "adapter_options.seed": 3, "train.tasks": label({"reasoning": 1, "t2i": 1}),
                      "note": "{not json"}) == \
        "train.seed=1 adapter_options.seed=3 tasks=reasoning+t2i note={not json"


def test_status_finds_a_suite_by_name_and_says_when_a_suite_is_complete(tmp_path, monkeypatch):
    import optuna
    from typer.testing import CliRunner

    from ntbench.cli import app
    from ntbench.records import INTERRUPTED
    from ntbench.storage import make_storage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    folder = _folder(tmp_path / "runs", {0.3: [0.40, 0.42], 0.5: [0.45, 0.47]})
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    study = optuna.create_study(study_name=suite.study_name(), storage=make_storage(None, folder))
    dist = {"adapter_options.beta": optuna.distributions.CategoricalDistribution([0.3, 0.5]),
            "train.seed": optuna.distributions.CategoricalDistribution([0, 1])}
    for beta in (0.3, 0.5):
        for seed in (0, 1):
            study.add_trial(optuna.trial.create_trial(params={"adapter_options.beta": beta, "train.seed": seed},
                                                      distributions=dist, value=0.4))
    study.add_trial(optuna.trial.create_trial(params={"adapter_options.beta": 0.3, "train.seed": 0}, distributions=dist,
                                              state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": INTERRUPTED}))
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"name": folder.name}))  # what `ntbench run` was given
    shown = CliRunner().invoke(app, ["status", "mine.yaml"])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert f"its results folder under the default root: runs/{folder.name}" in text
    assert "complete: 4 of 4 trials; 1 interrupted attempt (stopped by Ctrl-C: their cells ran again)" in text
    assert "to start" not in text and "left at" not in text
    assert f"last complete ({OBJ}):" in text
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({"name": "never_ran"}))
    missing = CliRunner().invoke(app, ["status", "other.yaml"])
    assert missing.exit_code == 2 and "runs/never_ran does not exist" in " ".join(missing.output.split())


def test_status_reads_a_suite_run_with_storage_from_that_storage_and_writes_nothing(tmp_path):
    import json

    import optuna
    from typer.testing import CliRunner

    from ntbench.cli import app

    folder = _folder(tmp_path, {0.3: [0.4, 0.4], 0.5: [0.5, 0.5]})  # a 4-cell grid; its rows ran elsewhere
    suite = Suite(**yaml.safe_load((folder / "suite.resolved.yaml").read_text()))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(study_name=suite.study_name(), storage=url)
    study.enqueue_trial({"adapter_options.beta": 0.3, "train.seed": 0})
    study.tell(study.ask(), 0.4)
    study.enqueue_trial({"adapter_options.beta": 0.3, "train.seed": 1})
    before = (tmp_path / "shared.db").read_bytes()
    assert not (folder / "optuna.journal").exists()
    plain = CliRunner().invoke(app, ["status", str(folder)])
    assert plain.exit_code != 0 and "--storage" in plain.output  # no journal here: the message points to the flag
    result = CliRunner().invoke(app, ["status", str(folder), "--storage", url, "--json"])
    assert result.exit_code == 0, result.output
    p = json.loads(result.stdout)
    assert (p["complete"], p["running"], p["to_start"], p["total"]) == (1, 0, 3, 4)  # 1 waiting + 2 never queued
    assert (tmp_path / "shared.db").read_bytes() == before and not (folder / "optuna.journal").exists()
    other = CliRunner().invoke(app, ["status", str(folder), "--storage", f"sqlite:///{tmp_path / 'other.db'}"])
    assert other.exit_code != 0 and not (tmp_path / "other.db").exists()  # a missing database is not created


def test_the_index_counts_a_suite_pooled_into_another_once(tmp_path):
    from ntbench.stats import REPRODUCED, UNRESOLVED

    base = {"metric": OBJ, "a": "x", "b": "y", "comparison": "paired", "mde": 0.05, "rank_p": 0.03125, "above": 6,
            "below": 0, "mean": 0.02, "low": 0.01, "high": 0.03}
    for name, verdict, n in (("part", REPRODUCED, 6), ("pooled", UNRESOLVED, 10)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "suite.resolved.yaml").write_text("name: x\n")
        (folder / "trials.csv").write_text("trial\n")
        (folder / "report.md").write_text(f"# {name}\n\nbody\n")
        pd.DataFrame([{**base, "says": "a claim", "verdict": verdict, "n": n}]).to_csv(
            folder / "paper_vs_ntbench.csv", index=False)
    # the sources as `ntbench pool` records them: given relative to the results root's parent
    (tmp_path / "pooled" / "pooled.json").write_text(json.dumps({"sources": [{"folder": f"{tmp_path.name}/part"}]}))
    text = report.write_index(tmp_path).read_text()
    assert "| [part](part/report.md) |  | fresh, pooled into pooled | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 0 |" in text
    # the totals count the claim once, from the pooled folder
    assert "| **fresh and rechecked** | | | 1 | 0 | 0 | 0 | 0 | 1 | 0 | 0 |" in text
