import textwrap

import pytest
import torch

from ntbench.adapters import apply_adapter, neural_layers
from ntbench.registry import UnknownNameError
from ntbench.strategies import Draws, make_strategy, strategy_class
from tests.conftest import model_for

DZ = 128


def z_batch(seed=0, n=256):
    return torch.randn(n, DZ, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["gaussian", "top2beta", "level", "distribution"])
@pytest.mark.parametrize("beta", [0.1, 0.4, 0.7])
def test_mean_kept_fraction_is_beta(name, beta):
    strategy = make_strategy(name, beta=beta)
    fractions = []
    for draw in range(200):
        mask = strategy.keep_mask(z_batch(draw, 8), Draws(draw, training=True))
        fractions.append(mask.float().mean().item())
    assert abs(sum(fractions) / len(fractions) - beta) < 0.01


def test_dense_keeps_everything():
    mask = make_strategy("dense", beta=0.3).keep_mask(z_batch(), Draws(0, True))
    assert mask.all()


def test_gaussian_keeps_the_largest_and_std_zero_is_exact():
    z = z_batch()
    mask = make_strategy("gaussian", beta=0.25, std_ratio=0.0).keep_mask(z, Draws(0, True))
    assert (mask.sum(-1) == 32).all()
    smallest_kept = z.masked_fill(~mask, float("inf")).amin(-1)
    largest_dropped = z.masked_fill(mask, float("-inf")).amax(-1)
    assert (smallest_kept > largest_dropped).all()


def test_gaussian_rate_fluctuates_with_std_ratio():
    strategy = make_strategy("gaussian", beta=0.4, std_ratio=0.1)
    counts = {int(strategy.keep_mask(z_batch(0, 1), Draws(s, True)).sum()) for s in range(50)}
    assert len(counts) > 3  # r ~ N(β, (0.1β)²) gives different k across draws


def test_top2beta_keeps_only_from_top_2beta():
    z = z_batch()
    beta = 0.2
    mask = make_strategy("top2beta", beta=beta, std_ratio=0.0).keep_mask(z, Draws(3, True))
    rank = z.argsort(-1, descending=True).argsort(-1)  # 0 = largest
    assert (rank[mask] < round(2 * beta * DZ)).all()
    # random inside the pool: not simply the top β
    top = make_strategy("gaussian", beta=beta, std_ratio=0.0).keep_mask(z, Draws(3, True))
    assert not torch.equal(mask, top)


def test_level_keeps_about_equally_from_each_decile():
    z = z_batch()
    mask = make_strategy("level", beta=0.3, std_ratio=0.0).keep_mask(z, Draws(5, True))
    rank = z.argsort(-1, descending=True).argsort(-1)
    level = rank * 10 // DZ
    for lv in range(10):
        per_row = (mask & (level == lv)).sum(-1).float()
        size = (level[0] == lv).sum().item()
        assert (per_row - 0.3 * size).abs().max() <= 1.0


@pytest.mark.parametrize("m", [0.0, 1.0])
def test_distribution_keeps_closest_to_m(m):
    """m is in units of each token's RMS of Z^u: the kept neurons are the closest to m·rms(z)."""
    z = z_batch() * 3.0
    mask = make_strategy("distribution", beta=0.4, std_ratio=0.0, m=m).keep_mask(z, Draws(0, True))
    rms = z.pow(2).mean(-1, keepdim=True).sqrt()
    dist = (z - m * rms).abs()
    assert (dist.masked_fill(~mask, float("-inf")).amax(-1) <= dist.masked_fill(mask, float("inf")).amin(-1)).all()


@pytest.mark.parametrize("name", ["gaussian", "top2beta", "level", "distribution"])
def test_same_seed_same_mask(name):
    strategy = make_strategy(name, beta=0.4)
    z = z_batch()
    a = strategy.keep_mask(z, Draws(7, True))
    b = strategy.keep_mask(z, Draws(7, True))
    assert torch.equal(a, b)
    if name == "top2beta":  # per-entry randomness: another seed gives another mask
        assert not torch.equal(a, strategy.keep_mask(z, Draws(8, True)))


def test_adapter_masks_reproducible_by_seed(ids):
    def masks(seed):
        model = apply_adapter(model_for("llama"), "neural", dz=32, strategy="top2beta", seed=seed).train()
        seen = []
        neural_layers(model)[0]._state.observer = lambda i, m: seen.append(m.clone())
        model(ids)
        model(ids)
        return seen
    a, b, c = masks(1), masks(1), masks(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert not torch.equal(a[0], a[2])  # a new forward pass draws anew


def test_unknown_strategy_did_you_mean():
    with pytest.raises(UnknownNameError, match="Did you mean 'gaussian'"):
        strategy_class("gausian")


def test_plugin_file_outside_the_package(tmp_path, ids):
    plugin = tmp_path / "every_other.py"
    plugin.write_text(textwrap.dedent('''
        import torch
        from ntbench.strategies import STRATEGIES, ActivationStrategy

        @STRATEGIES.register("every_other_test")
        class EveryOther(ActivationStrategy):
            def keep_mask(self, z, draws):
                mask = torch.zeros_like(z, dtype=torch.bool)
                mask[..., ::2] = True
                return mask
    '''))
    cls = strategy_class(str(plugin))
    assert cls.__name__ == "EveryOther"
    model = apply_adapter(model_for("llama"), "neural", dz=8, strategy=f"{plugin}:every_other_test")
    seen = []
    neural_layers(model)[0]._state.observer = lambda i, m: seen.append(m)
    model.train()(ids)
    assert seen and all(m[..., ::2].all() and not m[..., 1::2].any() for m in seen)


def test_distribution_is_scale_free_and_raw_mode_is_not():
    z = z_batch()
    rel = make_strategy("distribution", beta=0.4, std_ratio=0.0, m=1.0)
    raw = make_strategy("distribution", beta=0.4, std_ratio=0.0, m=1.0, relative=False)
    assert torch.equal(rel.keep_mask(z, Draws(0, True)), rel.keep_mask(z * 5, Draws(0, True)))
    assert not torch.equal(raw.keep_mask(z, Draws(0, True)), raw.keep_mask(z * 5, Draws(0, True)))


@pytest.mark.parametrize("name", ["gaussian", "top2beta", "level", "distribution"])
def test_beta_one_is_dense_in_training_and_evaluation(name):
    """β = 1.0 is the paper's all-neurons row: no pass may drop a neuron (a fluctuation around 1
    would drop some in about half the passes)."""
    strategy = make_strategy(name, beta=1.0)
    for draw in range(50):
        assert strategy.keep_mask(z_batch(draw, 4), Draws(draw, training=True)).all()
    assert strategy.keep_mask(z_batch(0, 4), Draws(0, training=False)).all()


def test_level_keeps_the_largest_values_of_each_decile():
    z = z_batch()
    mask = make_strategy("level", beta=0.3, std_ratio=0.0).keep_mask(z, Draws(5, True))
    rank = z.argsort(-1, descending=True).argsort(-1)
    level = rank * 10 // DZ
    for lv in range(10):
        in_level = level == lv
        kept = mask & in_level
        dropped = ~mask & in_level
        # inside a level every kept value is above every dropped one
        lowest_kept = z.masked_fill(~kept, float("inf")).amin(-1)
        highest_dropped = z.masked_fill(~dropped, float("-inf")).amax(-1)
        assert (lowest_kept > highest_dropped).all()
    assert (mask.sum(-1) == round(0.3 * DZ)).all()
    # unlike the global top-k, the weakest decile contributes too
    assert (mask & (level == 9)).any(-1).all()


def test_top2beta_evaluation_masks_differ_across_tokens_and_follow_the_token_alone():
    """In evaluation the random choice inside the pool is a function of each token's own values:
    two tokens (or tasks) get different masks even when the pool is every neuron (β ≥ 0.5), the
    same token gets the same mask, and a token's mask does not depend on the other rows."""
    strategy = make_strategy("top2beta", beta=0.6)
    z = z_batch(0, 16)
    mask = strategy.keep_mask(z, Draws(11, training=False))
    assert len({tuple(row.tolist()) for row in mask}) == 16
    assert torch.equal(mask, strategy.keep_mask(z.clone(), Draws(11, training=False)))
    assert torch.equal(mask[3:4], strategy.keep_mask(z[3:4], Draws(11, training=False)))
    assert (mask.sum(-1) == round(0.6 * DZ)).all()
