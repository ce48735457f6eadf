"""Top-2β random activation (paper §5.5): pick the top 2r of neurons, then r of Dz at random
among them (r fluctuates around β as in the Gaussian strategy).

As the paper defines it, the pool covers every neuron once 2r ≥ 1, so for β ≥ 0.5 the choice is
uniformly random and no longer depends on the activations. In evaluation the random numbers are
a hash of each token's own activations (``Draws.uniform_like``): reproducible, the same with and
without a KV cache, and different across tokens and tasks."""
import torch

from ntbench.strategies import STRATEGIES, ActivationStrategy, keep_count, top_k_mask


@STRATEGIES.register("top2beta", description="§5.5: random r·Dz among the top 2r·Dz neurons")
class TopTwoBetaActivation(ActivationStrategy):
    name = "top2beta"

    def keep_mask(self, z, draws):
        dz = z.shape[-1]
        rate = self.rate(draws)
        pool = top_k_mask(z, keep_count(2 * rate, dz))
        score = torch.where(pool, draws.uniform_like(z).to(z.dtype), torch.full_like(z, -1.0))
        return top_k_mask(score, keep_count(rate, dz))
