"""Same configuration and seed, same machine: same numbers. And cells that share a seed share
every random draw except what the suite varies (common random numbers)."""
from pathlib import Path

import pytest
import torch

from ntbench.data.microworld import MicroWorldConfig, generate
from ntbench.micro import MicroSizes, ensure_micro
from ntbench.train.trainer import TrainConfig, deterministic_kernels
from ntbench.train.trial import TrialConfig, build_model, run_trial

# micro-shaped (LLaMA + CLIP ViT + whitened mask decoder), tiny sizes
TINY = MicroSizes.tiny()


@pytest.fixture(scope="module")
def micro_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    data = generate(root / "mw", MicroWorldConfig(seed=3, train=48, val=8, test=0), workers=1)
    ensure_micro(seed=0, sizes=TINY, home=root / "home", data=data)
    return root / "home", data


def _cfg(data, **kw) -> TrialConfig:
    train = {"steps": 8, "batch_size": 4, "seed": 5, "warmup": 2, "lr": 3e-3, **kw.pop("train", {})}
    return TrialConfig(backbone="micro", data=str(data), eval_samples=4, eval_generated=True,
                       train=TrainConfig(**train), **kw)


def test_a_trial_run_twice_gives_identical_numbers(micro_home, monkeypatch):
    home, data = micro_home
    monkeypatch.setenv("NTBENCH_HOME", str(home))
    a = run_trial(_cfg(data, lambda_bce=1.0))
    b = run_trial(_cfg(data, lambda_bce=1.0))
    assert a["loss_first"] == b["loss_first"] and a["loss_last"] == b["loss_last"]
    assert a["metrics"] == b["metrics"]  # evaluation included, generated answers too
    assert a["provenance"]["torch_threads"] == torch.get_num_threads()
    assert a["provenance"]["deterministic_algorithms"] is True


def test_full_histories_match_exactly(micro_home, monkeypatch, tmp_path):
    import json

    home, data = micro_home
    monkeypatch.setenv("NTBENCH_HOME", str(home))
    run_trial(_cfg(data), out=tmp_path / "a")
    run_trial(_cfg(data), out=tmp_path / "b")
    ha = json.loads((tmp_path / "a" / "history.json").read_text())["history"]
    hb = json.loads((tmp_path / "b" / "history.json").read_text())["history"]
    assert len(ha) == 8 and ha == hb  # every loss term of every step, bit for bit


def test_deterministic_switch_is_scoped_and_can_be_turned_off():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(False)
        with deterministic_kernels(True):
            assert torch.are_deterministic_algorithms_enabled()
        assert not torch.are_deterministic_algorithms_enabled()  # restored
        torch.use_deterministic_algorithms(True, warn_only=True)
        with deterministic_kernels(True):
            assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # warn_only restored too
        with deterministic_kernels(False):
            assert torch.is_deterministic_algorithms_warn_only_enabled()  # off: nothing touched
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    assert TrainConfig().deterministic is True and TrainConfig(deterministic=False).deterministic is False


FUSED = {"flash": (torch.backends.cuda.flash_sdp_enabled, torch.backends.cuda.enable_flash_sdp),
         "mem_efficient": (torch.backends.cuda.mem_efficient_sdp_enabled, torch.backends.cuda.enable_mem_efficient_sdp),
         "cudnn": (torch.backends.cuda.cudnn_sdp_enabled, torch.backends.cuda.enable_cudnn_sdp)}


def _fused_state() -> dict[str, bool]:
    return {name: is_on() for name, (is_on, _) in FUSED.items()}


def test_cuda_work_runs_attention_on_the_math_backend_and_restores_each_switch():
    # the fused SDPA backwards are atomic under warn_only; the switches are process-wide
    start = _fused_state()
    try:
        FUSED["mem_efficient"][1](False)  # a user's own choice, kept through the context
        with deterministic_kernels(True, "cuda"):
            assert _fused_state() == {"flash": False, "mem_efficient": False, "cudnn": False}
            assert torch.backends.cuda.math_sdp_enabled()
        assert _fused_state() == {"flash": start["flash"], "mem_efficient": False, "cudnn": start["cudnn"]}
        FUSED["mem_efficient"][1](True)
        with pytest.raises(RuntimeError, match="boom"):
            with deterministic_kernels(True, torch.device("cuda", 0)):
                raise RuntimeError("boom")
        assert _fused_state() == {**start, "mem_efficient": True}  # restored on the way out of an error too
        # CPU work (CPU attention reads the flash switch) and the switch turned off touch nothing
        for ctx in (deterministic_kernels(True, "cpu"), deterministic_kernels(True), deterministic_kernels(False, "cuda")):
            with ctx:
                assert _fused_state() == {**start, "mem_efficient": True}
    finally:
        for name, (_, set_on) in FUSED.items():
            set_on(start[name])


def test_micro_recipe_trains_in_fp32_without_checkpointing_on_a_gpu():
    from ntbench.train.trial import TrialConfig

    micro = TrialConfig(backbone="micro")
    assert micro.train.bf16 is False and micro.train.gradient_checkpointing is False
    assert TrialConfig(backbone="tiny-random").train.bf16 is True  # other backbones keep the trainer's defaults
    assert TrainConfig().deterministic is True and TrainConfig(deterministic=False).deterministic is False


def test_the_operation_that_needed_it_is_repeatable_under_the_switch():
    # the backward of advanced indexing (task-token rows, <OBJ-i> states) accumulates in thread order
    torch.manual_seed(0)
    w = torch.randn(9, 64, requires_grad=True)
    ids, g = torch.randint(0, 9, (16, 120)), torch.randn(16, 120, 64)

    def grad():
        w.grad = None
        (w[ids] * g).sum().backward()
        return w.grad.clone()
    with deterministic_kernels(True):
        first = grad()
        assert all(torch.equal(first, grad()) for _ in range(10))


def _head_state(model) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n in ("projector", "mask_decoder", "gen_head")
            for k, v in getattr(model, n).state_dict().items()} | {"new_embed": model.new_embed.detach().clone()}


def test_cells_sharing_a_seed_share_heads_and_mask_noise(micro_home, monkeypatch):
    from ntbench.adapters import adapter_handle

    home, data = micro_home
    monkeypatch.setenv("NTBENCH_HOME", str(home))
    n4 = build_model(_cfg(data, adapter="neural", adapter_options={"beta": 0.4, "dz": 8}))
    n5 = build_model(_cfg(data, adapter="neural", adapter_options={"beta": 0.5, "dz": 16}))
    lora = build_model(_cfg(data, adapter="lora"))
    other = build_model(_cfg(data, adapter="neural", adapter_options={"beta": 0.4, "dz": 8}, train={"seed": 6}))
    h4, h5, hl, ho = (_head_state(m) for m in (n4, n5, lora, other))
    # the adapter drew different amounts of randomness (Dz 8 vs 16, LoRA): the heads still start the same
    assert all(torch.equal(h4[k], h5[k]) and torch.equal(h4[k], hl[k]) for k in h4)
    assert not all(torch.equal(h4[k], ho[k]) for k in h4)  # ...and a different seed changes them
    # the adapter's mask-noise seed follows the training seed unless the config sets it
    assert adapter_handle(n4.llm).options["seed"] == 5 and adapter_handle(other.llm).options["seed"] == 6
    fixed = build_model(_cfg(data, adapter="neural", adapter_options={"seed": 11}))
    assert adapter_handle(fixed.llm).options["seed"] == 11


def test_micro_recipe_is_the_one_default_and_given_values_win():
    from ntbench.evidence import evidence_trial_config
    from ntbench.train.recipes import MICRO_RECIPE

    micro = TrialConfig(backbone="micro")
    assert micro.train.steps == MICRO_RECIPE["train"]["steps"] and micro.lambda_bce == MICRO_RECIPE["lambda_bce"]
    assert micro.train.tasks == MICRO_RECIPE["train"]["tasks"] and micro.eval_samples == MICRO_RECIPE["eval_samples"]
    assert micro.train.warmup_steps == micro.train.steps // 10
    # the evidence command builds the same trial
    assert evidence_trial_config("neural", 0).model_dump() == micro.model_dump()
    # given values win, whether as a dict or as a TrainConfig; the rest still comes from the recipe
    mine = TrialConfig(backbone="micro", eval_samples=7, train=TrainConfig(steps=30, seed=4))
    assert (mine.eval_samples, mine.train.steps, mine.train.seed, mine.train.lr) == (7, 30, 4, MICRO_RECIPE["train"]["lr"])
    assert mine.train.warmup_steps == 3
    # backbones without a recipe keep the plain defaults
    plain = TrialConfig(backbone="tiny-random")
    assert plain.train.steps == TrainConfig().steps and plain.lambda_bce == 0.0


def test_an_adapter_trains_at_its_own_learning_rate_where_the_backbone_tuned_it():
    from ntbench.compare import compare_suite
    from ntbench.evidence import evidence_trial_config
    from ntbench.suite import trial_config
    from ntbench.train.recipes import MICRO_RECIPE

    # results/adapters_lr and adapters_lr_higher: LoRA and frozen best at 1e-2 on micro, the others at 3e-3
    rates = {a: TrialConfig(backbone="micro", adapter=a).train.lr for a in ("neural", "lora", "frozen", "prefix", "ia3")}
    assert rates == {"neural": 3e-3, "lora": 1e-2, "frozen": 1e-2, "prefix": 3e-3, "ia3": 3e-3}
    assert MICRO_RECIPE["train"]["lr"] == 3e-3  # the recipe itself is untouched by the adapters' own parts
    lora, neural = TrialConfig(backbone="micro", adapter="lora"), TrialConfig(backbone="micro")
    assert lora.train.model_dump(exclude={"lr"}) == neural.train.model_dump(exclude={"lr"})  # only the rate differs
    # a given rate still wins, and a backbone without a recipe keeps the trainer's default for every adapter
    assert TrialConfig(backbone="micro", adapter="lora", train={"lr": 1e-3}).train.lr == 1e-3
    assert TrialConfig(backbone="tiny-random", adapter="lora").train.lr == TrainConfig().lr
    # every entry point gets it: the evidence's frozen baseline, and `ntbench compare lora neural`
    assert evidence_trial_config("frozen", 0).train.lr == 1e-2
    suite = compare_suite(["lora", "neural"], "micro", None, [0], None)
    assert [trial_config(suite, {"adapter": a, "train.seed": 0}).train.lr for a in ("lora", "neural")] == [1e-2, 3e-3]


def test_a_suites_study_name_follows_the_adapter_rates_its_cells_train_with(monkeypatch, tmp_path):
    import yaml

    from ntbench.suite import load_suite
    from ntbench.train import recipes

    def name(**extra):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({"name": "s", "defaults": {"backbone": "micro"}, **extra}))
        return load_suite(path).study_name()
    with_lora = {"axes": {"adapter": ["neural", "lora"]}}
    linked = {**with_lora, "linked": {"adapter": {"lora": {"train.lr": 0.01}}}}
    lr_axis = {"axes": {"adapter": ["neural", "lora"], "train.lr": [0.001, 0.01]}}
    neural_only = {"axes": {"adapter_options.beta": [0.4, 0.5]}}
    before = [name(**s) for s in (with_lora, linked, lr_axis, neural_only)]
    monkeypatch.setitem(recipes.ADAPTER_RECIPES["micro"], "lora", {"train": {"lr": 0.02}})
    after = [name(**s) for s in (with_lora, linked, lr_axis, neural_only)]
    # only the suite whose LoRA cells take the rate from the recipe trains something else: a new study
    assert [b != a for b, a in zip(before, after)] == [True, False, False, False]


def test_the_adapters_suite_links_the_rates_the_recipe_tunes_and_reports_say_which_cells_take_them():
    import pandas as pd

    from ntbench.compare import compare_suite
    from ntbench.report import method_lines
    from ntbench.suite import load_suite, trial_config
    from ntbench.train.recipes import ADAPTER_RECIPES

    # two places hold the micro rates (the suite's linked block, written first, and the recipe): they must agree
    suite = load_suite(Path(__file__).resolve().parents[1] / "suites" / "adapters.yaml")
    linked = {a: s["train.lr"] for a, s in suite.linked["adapter"].items()}
    assert linked == {a: r["train"]["lr"] for a, r in ADAPTER_RECIPES["micro"].items()}
    assert all(trial_config(suite, {"adapter": a, "train.seed": 0}).train.lr == trial_config(
        compare_suite([a], "micro", None, [0], None), {"adapter": a, "train.seed": 0}).train.lr
        for a in ("neural", "lora", "frozen", "prefix", "ia3"))
    # a report says when cells take an adapter's own rate from the recipe, and not when they set it themselves
    rows = pd.DataFrame({"status": ["COMPLETE"], "param.adapter": ["lora"], "param.train.seed": [0],
                         "reasoning.tf_paper_oIoU": [0.4]})
    said = " ".join(method_lines(compare_suite(["lora", "neural"], "micro", None, [0], None), rows))
    assert "lora on micro: train.lr = 0.01" in said and "neural on micro" not in said
    assert "from the backbone's recipe" not in " ".join(method_lines(suite, rows))


def test_peak_memory_is_the_trials_own_not_the_process_high_water_mark():
    import numpy as np

    from ntbench.train.trainer import peak_memory_mb, reset_peak_memory

    cpu = torch.device("cpu")
    big = np.ones(400 * 2**20 // 8)  # 400 MiB resident, then freed
    big[::512] = 2.0
    del big
    before = peak_memory_mb(cpu)  # the process's high-water mark, 400 MiB included
    if not reset_peak_memory(cpu):
        assert np.isnan(peak_memory_mb(cpu, reset=False))  # unknown, not a stale number
        return
    torch.ones(2**20)  # a small trial
    assert before - peak_memory_mb(cpu) > 300  # the earlier 400 MiB peak is forgotten


def test_evaluating_during_training_does_not_change_the_training_run(micro_home, tmp_path):
    import json

    _, data = micro_home

    def history(eval_every: int, out):
        cfg = TrialConfig(backbone="tiny-random", data=str(data), eval_samples=2, eval_generated=False,
                          adapter_options={"dz": 16, "init_wb": "default"},
                          train=TrainConfig(steps=6, batch_size=2, seed=1, warmup=1, eval_every=eval_every))
        run_trial(cfg, out=out)
        return json.loads((out / "history.json").read_text())["history"]
    # evaluation passes must not advance the adapter's per-pass mask seeds (or any training stream)
    assert history(0, tmp_path / "plain") == history(2, tmp_path / "with-evals")


def test_prefetching_batches_changes_no_number(micro_home, monkeypatch, tmp_path):
    # batch k+1 is built on a background thread during step k; with periodic evaluation
    # (eval_every) the main thread tokenises at the same time
    import json

    home, data = micro_home
    monkeypatch.setenv("NTBENCH_HOME", str(home))
    a = run_trial(_cfg(data, train={"prefetch": 0, "eval_every": 3}), out=tmp_path / "a")
    b = run_trial(_cfg(data, train={"prefetch": 2, "eval_every": 3}), out=tmp_path / "b")
    ha = json.loads((tmp_path / "a" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "history.json").read_text())
    assert len(ha["history"]) == 8 and ha["history"] == hb["history"]
    assert a["metrics"] == b["metrics"]
