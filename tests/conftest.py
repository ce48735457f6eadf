import pytest
import torch

from ntbench.tiny_models import tiny_causal_lm

FAMILIES = ["llama", "mistral", "qwen2", "phi3", "gpt_neox"]


@pytest.fixture
def ids():
    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))


def model_for(family="llama", **kw):
    return tiny_causal_lm(family, **kw)


def run_tiny_reasoning_suite(tmp_path, name: str):
    """A one-trial suite on tiny-random (2 steps of reasoning, evaluated every step), run into tmp_path/res;
    returns (suite, its results folder)."""
    import yaml

    from ntbench.runner import run_suite
    from ntbench.suite import load_suite

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "objective": "reasoning.tf_paper_oIoU", "axes": {"train.seed": [0]},
        "defaults": {"backbone": "tiny-random", "data": "microworld:40", "eval_samples": 2, "eval_generated": False,
                     "adapter_options": {"dz": 8},
                     "train": {"steps": 2, "batch_size": 2, "warmup": 0, "eval_every": 1, "tasks": {"reasoning": 1}}}}))
    suite = load_suite(path)
    run_suite(suite, tmp_path / "res")
    return suite, tmp_path / "res" / name
