"""`ntbench pool`: suite folders that ran parts of one grid become one folder that `ntbench report` reads."""
import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ntbench import report
from ntbench.cli import app
from ntbench.pool import PoolError, pool_suites
from ntbench.suite import Suite

runner = CliRunner()
OBJ = "reasoning.tf_paper_oIoU"
BETA = "param.adapter_options.beta"


def _part(root, name, seeds, values, defaults=None, trial0=0, verified=None):
    """A suite folder with beta 0.3 and 0.5 on ``seeds``; ``values``: beta -> one value per seed."""
    suite = Suite(name=name, defaults=defaults or {"backbone": "tiny-random"}, objective=OBJ,
                  axes={"adapter_options.beta": [0.3, 0.5], "train.seed": list(seeds)},
                  report={"rows": "adapter_options.beta", "plot": "bars"})
    folder = root / name
    folder.mkdir()
    (folder / "suite.resolved.yaml").write_text(yaml.safe_dump(suite.model_dump(mode="json")))
    rows = [{"trial": trial0 + len(values) * i + j, "status": "COMPLETE", BETA: b, "param.train.seed": s, OBJ: v[i],
             "prov.git_commit": None}
            for i, s in enumerate(seeds) for j, (b, v) in enumerate(values.items())]
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False)
    if verified is not None:
        (folder / "verified.json").write_text(json.dumps(verified))
    return folder


def test_pooling_two_seed_ranges_gives_one_paired_comparison_over_all_seeds(tmp_path):
    # beta 0.5 - 0.3 per seed: 0.02, 0.04 (seeds 0-1) and 0.01, 0.03 (seeds 2-3): mean 0.025
    a = _part(tmp_path, "a", [0, 1], {0.3: [0.50, 0.40], 0.5: [0.52, 0.44]})
    rerun = [{"trial": 1, "identical": True, "row_commit": "abc", "commit": "def", "setup": "cpu, 1 thread"}]
    b = _part(tmp_path, "b", [2, 3], {0.3: [0.45, 0.47], 0.5: [0.46, 0.50]}, trial0=0, verified=rerun)
    summary = pool_suites([a, b], tmp_path / "out" / "ab", name="ab")
    assert summary["rows"] == 8 and summary["repeats_dropped"] == 0
    pooled = Suite(**yaml.safe_load((tmp_path / "out" / "ab" / "suite.resolved.yaml").read_text()))
    assert pooled.axes["train.seed"] == [0, 1, 2, 3] and pooled.name == "ab" and "Pooled from a (4 trials), b (4" \
        in pooled.description
    rows = pd.read_csv(tmp_path / "out" / "ab" / "trials.csv")
    assert sorted(rows.trial) == list(range(8))  # both parts numbered their trials from 0
    assert rows.groupby("pooled_from").size().to_dict() == {"a": 4, "b": 4}
    assert (rows[rows.pooled_from == "b"].trial - rows[rows.pooled_from == "b"].source_trial).eq(4).all()
    status = runner.invoke(app, ["status", str(tmp_path / "out" / "ab")])  # no storage: it says where they are
    assert status.exit_code == 2 and "a pooled folder" in status.output and "pooled.json names them" in status.output
    # b's rerun of its trial 1 now names the pooled trial 5
    assert [e["trial"] for e in json.loads((tmp_path / "out" / "ab" / "verified.json").read_text())] == [5]
    report.report_suite(tmp_path / "out" / "ab")
    diffs = pd.read_csv(tmp_path / "out" / "ab" / f"diff_vs_best_{OBJ}.csv")
    other = diffs[~diffs.is_best].iloc[0]
    assert other.n == 4 and other["mean"] == pytest.approx(-0.025)
    assert (other.above, other.below) == (0, 4) and other.rank_p == pytest.approx(0.125)  # 2/2^4


def test_pool_refuses_parts_of_different_settings_and_seeds_run_twice_with_other_numbers(tmp_path):
    a = _part(tmp_path, "a", [0, 1], {0.3: [0.50, 0.40], 0.5: [0.52, 0.44]})
    other = _part(tmp_path, "other", [2, 3], {0.3: [0.1, 0.2], 0.5: [0.3, 0.4]},
                  defaults={"backbone": "tiny-random", "adapter": "lora"})
    with pytest.raises(PoolError, match="`defaults` is .*lora.*same trial settings"):
        pool_suites([a, other], tmp_path / "x")
    again = _part(tmp_path, "again", [1, 2], {0.3: [0.40, 0.45], 0.5: [0.44, 0.46]})  # seed 1 repeats a's numbers
    assert pool_suites([a, again], tmp_path / "y")["repeats_dropped"] == 2  # kept once, per cell
    assert len(pd.read_csv(tmp_path / "y" / "trials.csv")) == 6
    moved = _part(tmp_path, "moved", [1], {0.3: [0.41], 0.5: [0.44]})  # seed 1, beta 0.3: another number
    with pytest.raises(PoolError, match="beta = 0.3, train.seed = 1 ran in a .* and in moved .* different numbers"):
        pool_suites([a, moved], tmp_path / "z")
    result = runner.invoke(app, ["pool", str(a), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2 and "at least two suite folders" in result.output
    result = runner.invoke(app, ["pool", str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2 and "suite.resolved.yaml: not found" in result.output
    result = runner.invoke(app, ["pool", str(a), str(again), "--out", str(a)])  # onto a suite's own results
    assert result.exit_code == 2 and "holds a suite's results already" in result.output
