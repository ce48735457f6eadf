import pytest
import torch

from ntbench.tiny_models import tiny_causal_lm

FAMILIES = ["llama", "mistral", "qwen2", "phi3", "gpt_neox"]


@pytest.fixture
def ids():
    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))


def model_for(family="llama", **kw):
    return tiny_causal_lm(family, **kw)
