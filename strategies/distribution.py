"""Distribution random activation (paper §5.5): keep the round(r·Dz) neurons closest to m.

Z^u has no fixed scale (its size follows W_z and the layer's input), so m is measured in units of
each token's root mean square of Z^u: a neuron's distance is |z / rms(z) - m|. With ``norm: true``
(RMSNorm before sparsifying) rms(z) is about 1 and this is |z - m|. m = 0 keeps the neurons of
smallest magnitude; m = 1 the ones nearest one RMS above zero. ``relative: false`` compares the raw
values instead (|z - m|)."""
from ntbench.strategies import STRATEGIES, ActivationStrategy, keep_count, top_k_mask


@STRATEGIES.register("distribution", description="§5.5: keep the r·Dz neurons closest to m RMS units (m=0 default)")
class DistributionActivation(ActivationStrategy):
    name = "distribution"

    def __init__(self, beta: float = 0.4, std_ratio: float = 0.1, m: float = 0.0, relative: bool = True):
        super().__init__(beta, std_ratio)
        if not isinstance(m, (int, float)) or isinstance(m, bool):
            raise ValueError(f"m must be a number, got {m!r}")
        if not isinstance(relative, bool):
            raise ValueError(f"relative must be true or false, got {relative!r}")
        self.m = float(m)
        self.relative = relative

    def keep_mask(self, z, draws):
        if self.relative:
            z = z / z.float().pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12).to(z.dtype)
        return top_k_mask(-(z - self.m).abs(), keep_count(self.rate(draws), z.shape[-1]))

    def options(self):
        return {**super().options(), "m": self.m, "relative": self.relative}
