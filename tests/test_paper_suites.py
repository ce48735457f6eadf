"""The shipped suites ask the paper's questions: the paper recipe in suites/paper/, and the rows of
Table 5 (modules*.yaml) and Table B.9 (interference*.yaml)."""
from pathlib import Path

import pytest

from ntbench.adapters.options import NeuralOptions
from ntbench.suite import grid_cells, label, load_suite, trial_config

SUITES = Path(__file__).resolve().parent.parent / "suites"
PAPER = sorted(p for p in (SUITES / "paper").glob("*.yaml"))


def _cells(path, *keys):
    """The distinct values of ``keys`` over a suite's cells (seeds collapsed), as labels."""
    suite = load_suite(path)
    return {tuple(label(c.get(k)) for k in keys) for c in grid_cells(suite)}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_paper_suites_train_with_the_paper_recipe(path):
    suite = load_suite(path)
    for cell in grid_cells(suite):
        cfg = trial_config(suite, cell)
        # 5.1: batch 12, 10 epochs over MMUD's 33,682 training samples; lr and weight decay: reference
        assert (cfg.train.batch_size, cfg.train.steps) == (12, 28069) and 28069 * 12 >= 10 * 33682 > 28068 * 12
        assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.warmup) == (1e-4, 0.1, 200)
        assert (cfg.lambda_seg, cfg.lambda_gen, cfg.lambda_bce) == (1.0, 10.0, 0.0)  # Dice only
        assert not cfg.whiten_state and not cfg.pixel_refiner and not cfg.train_embeddings
        assert (cfg.eval_split, cfg.eval_samples) == ("test", 1403)  # all of MMUD's test split
        if "train.tasks" not in cell and "tasks" not in suite.defaults.get("train", {}):
            # the reference's mix: each batch about a quarter of each task
            assert cfg.train.tasks == {t: 1.0 for t in ("referring", "reasoning", "captioning", "t2i")}
        if cfg.adapter == "neural":
            opts = NeuralOptions(**cfg.adapter_options)
            assert (opts.dz, opts.threshold, opts.norm, opts.first_layer) == (128, "hard", False, 0)
            if "alpha" not in cell.get("adapter_options", {}) and "adapter_options.alpha" not in cell:
                assert opts.alpha == 0.9
            if "beta" not in str(cell) and "interference" not in suite.name:
                assert opts.beta == 0.4


@pytest.mark.parametrize("folder", [SUITES, SUITES / "paper"], ids=["micro", "paper"])
def test_modules_suites_are_the_rows_of_table_5(folder):
    both_on = '{"strategy": "gaussian"}'
    assert _cells(folder / "modules.yaml", "adapter_options") == {
        (both_on,), ('{"ema": false}',), ('{"strategy": "dense"}',)}
    assert load_suite(folder / "modules.yaml").defaults["train"]["tasks"] == {"reasoning": 1}  # one task
    assert _cells(folder / "modules_tasks.yaml", "train.tasks") == {
        ("reasoning",), ("reasoning+referring",), ("reasoning+captioning",), ("reasoning+t2i",)}
    targets = {t for (t,) in _cells(folder / "modules_targets.yaml", "adapter_options")}
    assert targets == {'{"targets": "qv"}', '{"targets": "kv"}', '{"targets": "qkv"}',
                       '{"chunking": "reference", "targets": "qkv"}'}
    suite = load_suite(folder / "modules_targets.yaml")
    assert all(set(trial_config(suite, c).train.tasks) == {"reasoning", "referring", "captioning", "t2i"}
               for c in grid_cells(suite))


@pytest.mark.parametrize("folder", [SUITES, SUITES / "paper"], ids=["micro", "paper"])
def test_interference_suites_are_the_rows_of_table_b9(folder):
    tasks = ("reasoning", "referring", "captioning", "t2i")
    rows = set()
    for main in tasks:
        path = folder / ("interference.yaml" if main == "reasoning" else f"interference_{main}.yaml")
        suite = load_suite(path)
        assert suite.objective.startswith(main + ".") and suite.report.baseline == main
        assert suite.direction == ("minimize" if main == "t2i" else "maximize")  # FID: lower is better
        for cell in grid_cells(suite):
            cfg = trial_config(suite, cell)
            assert NeuralOptions(**cfg.adapter_options).beta == 1.0  # all neurons active
            rows.add((main, frozenset(cfg.train.tasks)))
    # every task as the main task, alone and with each other task: 4 x 4 rows
    assert rows == {(m, frozenset({m, o})) for m in tasks for o in tasks}


CLAIMED = ["beta_grid", "alpha_grid", "activation_patterns", "modules", "modules_tasks", "modules_targets",
           "interference", "interference_referring", "interference_captioning", "interference_t2i", "adapters"]


@pytest.mark.parametrize("name", CLAIMED)
def test_every_paper_ablation_declares_its_claims_in_both_recipes(name):
    """The micro suite and the paper-recipe suite re-ask the same table: the same claims, each cell a cell
    of the suite (load_suite checks that), every claim sourced from a table the paper prints."""
    micro, paper = load_suite(SUITES / f"{name}.yaml"), load_suite(SUITES / "paper" / f"{name}.yaml")
    assert micro.paper is not None and micro.paper == paper.paper
    assert micro.paper.table.startswith(("Table 5", "Table 6", "Table 7", "Table A.8", "Table B.9"))


def test_claims_take_the_paper_numbers_as_printed():
    """Spot checks against the paper's text: Table 6's four-task row at beta 0.4 and 0.1, Table B.9's
    captioning block (49.7 printed with a change of -0.4: the direction is the printed change's)."""
    beta = load_suite(SUITES / "beta_grid.yaml").paper.claims[0]
    assert (beta.paper.a, beta.paper.b, beta.expected()) == (62.8, 62.0, "higher")
    cap = {c.says: c for c in load_suite(SUITES / "interference_captioning.yaml").paper.claims}
    odd = cap["adding referring segmentation lowers BLEU-4 (-0.4)"]
    assert (odd.paper.a, odd.paper.b, odd.expected()) == (49.7, 44.1, "lower") and "misprint" in odd.note
    same = load_suite(SUITES / "interference_referring.yaml").paper.claims[1]
    assert same.paper.a == same.paper.b == 75.4 and same.expected() == "same"


@pytest.mark.parametrize("name, main_updates", [("interference", 500), ("interference_referring", 500),
                                                ("interference_captioning", 250), ("interference_t2i", 250)])
def test_updates_suites_give_the_main_task_the_alone_cells_updates(name, main_updates):
    # the *_updates twin of a Table B.9 suite: same cells; every cell gives the main task the updates it
    # gets in the recipe's default mix (1500 steps; segmentation drawn 2 times in 6: 500, captioning and
    # t2i 1 in 6: 250), so a cell with equal ratios over k tasks trains k times that (worked by hand:
    # referring alone 500, with another task 1000), against 1500 in every cell of the total_steps twin
    fixed, updates = load_suite(SUITES / f"{name}.yaml"), load_suite(SUITES / f"{name}_updates.yaml")
    assert (fixed.budget, updates.budget) == ("total_steps", "main_task_updates")
    pairs = list(zip(grid_cells(fixed), grid_cells(updates)))
    assert len(pairs) == 12 and all(a == b for a, b in pairs)
    for a, b in pairs:
        base, scaled = trial_config(fixed, a), trial_config(updates, b)
        assert base.train.steps == 1500 and scaled.train.steps == main_updates * len(base.train.tasks)
        assert scaled.model_dump(exclude={"train": {"steps"}}) == base.model_dump(exclude={"train": {"steps"}})
