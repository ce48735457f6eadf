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
    assert rows.groupby("pooled_from").size().to_dict() == {str(a): 4, str(b): 4}  # the folders as given
    from_b = rows[rows.pooled_from == str(b)]
    assert (from_b.trial - from_b.source_trial).eq(4).all()
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
    with pytest.raises(PoolError, match=r"beta = 0.3, train.seed = 1 ran in .*a \(trial 2\) and in .*moved "
                                        r"\(trial 0\) with different numbers \(reasoning.tf_paper_oIoU: 0.4 against 0.41\)"):
        pool_suites([a, moved], tmp_path / "z")
    with pytest.raises(PoolError, match="given more than once"):
        pool_suites([a, tmp_path / "." / "a"], tmp_path / "z")
    with pytest.raises(PoolError, match="is one of the folders to pool"):
        pool_suites([a, again], a)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "suite.resolved.yaml").write_text((a / "suite.resolved.yaml").read_text())
    (tmp_path / "empty" / "trials.csv").write_text("")
    with pytest.raises(PoolError, match="trials.csv: not a trial table"):
        pool_suites([a, tmp_path / "empty"], tmp_path / "z")
    result = runner.invoke(app, ["pool", str(a), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2 and "at least two suite folders" in result.output
    result = runner.invoke(app, ["pool", str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "w")])
    assert result.exit_code == 2 and "suite.resolved.yaml: not found" in result.output
    result = runner.invoke(app, ["pool", str(a), str(again), "--out", str(moved)])  # onto another suite's results
    assert result.exit_code == 2 and "holds a suite's results already" in result.output


def test_pooling_again_leaves_nothing_of_the_last_pooling_and_keeps_where_rows_came_from(tmp_path):
    rerun = [{"trial": 0, "identical": True, "row_commit": "abc", "commit": "def", "setup": "cpu, 1 thread"}]
    a = _part(tmp_path, "a", [0, 1], {0.3: [0.50, 0.40], 0.5: [0.52, 0.44]}, verified=rerun)
    b = _part(tmp_path, "b", [2], {0.3: [0.45], 0.5: [0.46]})
    c = _part(tmp_path, "c", [3], {0.3: [0.47], 0.5: [0.50]})
    out = tmp_path / "pooled"
    pool_suites([a, b], out)
    assert (out / "verified.json").is_file() and Suite(**yaml.safe_load((out / "suite.resolved.yaml").read_text())).name \
        == "pooled"  # the folder's name by default, as `ntbench run` names a suite's folder
    pool_suites([b, c], out)  # into the same folder: a's rerun must not stay and vouch for b's rows
    assert not (out / "verified.json").exists()
    assert set(pd.read_csv(out / "trials.csv").pooled_from) == {str(b), str(c)}
    # a pooled folder pooled again: its rows keep the folder and trial they first came from
    pool_suites([out, a], tmp_path / "twice")
    rows = pd.read_csv(tmp_path / "twice" / "trials.csv")
    assert set(rows.pooled_from) == {str(a), str(b), str(c)}
    assert rows[rows.pooled_from == str(c)].source_trial.tolist() == [0, 1]
    # a metric only one part measured is no disagreement: the repeat is kept once
    extra = pd.read_csv(b / "trials.csv").assign(**{"referring.tf_paper_oIoU": 0.3})
    extra.to_csv(b / "trials.csv", index=False)
    b2 = _part(tmp_path, "b2", [2], {0.3: [0.45], 0.5: [0.46]})
    assert pool_suites([b, b2], tmp_path / "bb")["repeats_dropped"] == 2
