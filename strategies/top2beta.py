"""Top-2β random activation (paper §5.5): pick the top 2r of neurons, then r of Dz at random
among them (r fluctuates around β as in the Gaussian strategy)."""
import torch

from ntbench.strategies import STRATEGIES, ActivationStrategy, keep_count, top_k_mask


@STRATEGIES.register("top2beta", description="§5.5: random r·Dz among the top 2r·Dz neurons")
class TopTwoBetaActivation(ActivationStrategy):
    name = "top2beta"

    def keep_mask(self, z, draws):
        dz = z.shape[-1]
        rate = self.rate(draws)
        pool = top_k_mask(z, keep_count(2 * rate, dz))
        # noise in [0, 1) inside the pool and -1 outside, so the pick never leaves the pool
        score = torch.where(pool, draws.uniform(z.shape).to(z.dtype), torch.full_like(z, -1.0))
        return top_k_mask(score, keep_count(rate, dz))
