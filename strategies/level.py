"""Level random activation (paper §5.5): sort neurons into 10 levels (deciles by value) and
activate the same share r of each level at random."""
import torch

from ntbench.strategies import STRATEGIES, ActivationStrategy, keep_count

LEVELS = 10


@STRATEGIES.register("level", description="§5.5: random r of each of 10 value levels (deciles)")
class LevelActivation(ActivationStrategy):
    name = "level"

    def keep_mask(self, z, draws):
        dz = z.shape[-1]
        k = keep_count(self.rate(draws), dz)
        rank = torch.empty_like(z, dtype=torch.long).scatter_(
            -1, z.argsort(-1, descending=True), torch.arange(dz, device=z.device).expand(z.shape))
        level = rank * LEVELS // dz
        sizes = torch.bincount(torch.arange(dz) * LEVELS // dz, minlength=LEVELS)
        cum = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
        # split k over the levels in proportion to their sizes so the total is exactly k
        quota_cum = torch.floor(k * cum.to(z.device).double() / dz + 0.5).long()  # k may be a device tensor
        quota = quota_cum[1:] - quota_cum[:-1]
        start = cum[:-1].to(z.device)
        # order by (level, noise): the position inside a level is a random rank
        key = level.to(torch.float64) + draws.uniform(z.shape).to(torch.float64).clamp(max=0.999999)
        pos = torch.empty_like(rank).scatter_(
            -1, key.argsort(-1), torch.arange(dz, device=z.device).expand(z.shape))
        return (pos - start[level]) < quota[level]
