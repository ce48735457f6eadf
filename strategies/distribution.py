"""Distribution random activation (paper §5.5): keep the round(r·Dz) neurons closest to m."""
from ntbench.strategies import STRATEGIES, ActivationStrategy, keep_count, top_k_mask


@STRATEGIES.register("distribution", description="§5.5: keep the r·Dz neurons closest to m (m=0 default)")
class DistributionActivation(ActivationStrategy):
    name = "distribution"

    def __init__(self, beta: float = 0.4, std_ratio: float = 0.1, m: float = 0.0):
        super().__init__(beta, std_ratio)
        if not isinstance(m, (int, float)):
            raise ValueError(f"m must be a number, got {m!r}")
        self.m = float(m)

    def keep_mask(self, z, draws):
        return top_k_mask(-(z - self.m).abs(), keep_count(self.rate(draws), z.shape[-1]))

    def options(self):
        return {**super().options(), "m": self.m}
