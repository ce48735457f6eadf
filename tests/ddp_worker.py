"""Run under `torchrun --nproc_per_node 2`: trains a few DDP steps and saves this rank's weights."""
import sys
from pathlib import Path

import torch

from ntbench.adapters import adapter_handle
from ntbench.data.io import SampleDataset
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.backbone import load_backbone
from ntbench.train.trainer import TrainConfig, train

data, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(0)  # same initial weights on every rank
model = AllInTokenModel(load_backbone("tiny-random"), "neural", {"dz": 16})
result = train(model, SampleDataset(data, "train"), TrainConfig(steps=3, batch_size=4, warmup=1, device="cpu"))
state = {n: p.detach().clone() for n, p in adapter_handle(model.llm).named_parameters(model.llm).items()}
state["projector"] = model.projector.weight.detach().clone()
torch.save({"state": state, "world_size": result["world_size"]}, out / f"rank{result['rank']}.pt")
# the trainer leaves the process group it made open; at exit gloo's threads then sometimes abort the process
# ("terminate called without an active exception", seen once in CI on 2026-11-28): close it before exit
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
