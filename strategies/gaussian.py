"""Gaussian random activation (paper Eq. 3): r ~ N(β, (std_ratio·β)²), keep the top round(r·Dz)."""
from ntbench.strategies import STRATEGIES, ActivationStrategy, keep_count, top_k_mask


@STRATEGIES.register("gaussian", description="paper Eq. 3: keep the top round(r·Dz), r ~ N(β, (0.1β)²)")
class GaussianActivation(ActivationStrategy):
    name = "gaussian"

    def keep_mask(self, z, draws):
        return top_k_mask(z, keep_count(self.rate(draws), z.shape[-1]))
