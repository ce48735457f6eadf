"""Dense activation: every neuron stays active (the paper's "SDR off" ablation)."""
import torch

from ntbench.strategies import STRATEGIES, ActivationStrategy


@STRATEGIES.register("dense", description="no sparsity: all Dz neurons active (SDR off)")
class DenseActivation(ActivationStrategy):
    name = "dense"
    sparse = False

    def keep_mask(self, z, draws):
        return torch.ones_like(z, dtype=torch.bool)
