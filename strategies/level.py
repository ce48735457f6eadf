"""Level random activation (paper §5.5): sort the neurons into 10 levels (deciles by value) and, in
each level, activate the share r of it that the task's activations favour: the highest values of
that level. r fluctuates around β as in the Gaussian strategy (the "random" of the name), so the
kept set spans every level, weak ones included, unlike the global top-k of the Gaussian strategy."""
import torch

from ntbench.strategies import STRATEGIES, ActivationStrategy, keep_count

LEVELS = 10


@STRATEGIES.register("level", description="§5.5: the top share r of each of 10 value levels (deciles)")
class LevelActivation(ActivationStrategy):
    name = "level"

    def keep_mask(self, z, draws):
        dz = z.shape[-1]
        k = keep_count(self.rate(draws), dz)
        # level of rank position p (0 = largest): p * LEVELS // dz; a level's positions are consecutive
        position = torch.arange(dz, device=z.device)
        level = position * LEVELS // dz
        sizes = torch.bincount(level, minlength=LEVELS)
        cum = torch.cat([torch.zeros(1, dtype=torch.long, device=z.device), sizes.cumsum(0)])
        # quotas by largest-remainder-free rounding of the cumulative share: they sum to exactly k
        quota_cum = torch.floor(k * cum.double() / dz + 0.5).long()  # k may be a device tensor
        quota = quota_cum[1:] - quota_cum[:-1]
        keep_sorted = (position - cum[:-1][level]) < quota[level]  # the first `quota` of each level
        order = z.argsort(dim=-1, descending=True, stable=True)
        return torch.zeros_like(z, dtype=torch.bool).scatter_(-1, order, keep_sorted.expand_as(z))
