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
    z = z_batch()
    mask = make_strategy("distribution", beta=0.4, std_ratio=0.0, m=m).keep_mask(z, Draws(0, True))
    dist = (z - m).abs()
    assert (dist.masked_fill(~mask, float("-inf")).amax(-1) <= dist.masked_fill(mask, float("inf")).amin(-1)).all()


@pytest.mark.parametrize("name", ["gaussian", "top2beta", "level", "distribution"])
def test_same_seed_same_mask(name):
    strategy = make_strategy(name, beta=0.4)
    z = z_batch()
    a = strategy.keep_mask(z, Draws(7, True))
    b = strategy.keep_mask(z, Draws(7, True))
    assert torch.equal(a, b)
    if name in ("top2beta", "level"):  # per-entry randomness: another seed gives another mask
        assert not torch.equal(a, strategy.keep_mask(z, Draws(8, True)))


def test_adapter_masks_reproducible_by_seed(ids):
    def masks(seed):
        model = apply_adapter(model_for("llama"), "neural", dz=32, strategy="level", seed=seed).train()
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
