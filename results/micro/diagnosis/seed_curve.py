"""Teacher-forced oIoU on all of val every 250 steps, for one evidence-config trial.
argv: adapter seed steps lr head_lr_mult"""
import sys, time, json
import numpy as np, torch
from ntbench.train.trainer import TrainConfig, train
from ntbench.train.trial import TrialConfig, resolve_data
from ntbench.data.io import SampleDataset
from ntbench.model.allintoken import AllInTokenModel
from ntbench.model.backbone import load_backbone
from ntbench.eval.evaluate import build_items, _teacher_forced

adapter, seed, steps, lr, mult = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
cfg = TrialConfig(backbone="micro", adapter=adapter, eval_samples=64, lambda_bce=1.0,
                  train=TrainConfig(steps=steps, batch_size=16, seed=seed, warmup=max(1, steps // 10), lr=lr, eval_every=250,
                                    tasks={"referring": 2, "reasoning": 2, "captioning": 1, "t2i": 1}))
data = resolve_data(cfg.data)
train_ds, val = SampleDataset(data, "train"), SampleDataset(data, "val")
torch.manual_seed(seed)
model = AllInTokenModel(load_backbone("micro"), cfg.adapter, cfg.adapter_options, max_objects=cfg.max_objects,
                        lambda_bce=cfg.lambda_bce, whiten_state=cfg.whiten_state)
if mult != 1.0:
    head_ids = {id(p) for p in model._head_params}
    Adam = torch.optim.AdamW
    def split(params, lr, **kw):
        params = list(params)
        return Adam([{"params": [p for p in params if id(p) not in head_ids], "lr": lr},
                     {"params": [p for p in params if id(p) in head_ids], "lr": lr * mult}], lr=lr, **kw)
    torch.optim.AdamW = split
items = {t: build_items(val, t, 10000, cfg.eval_seed) for t in ("referring", "reasoning")}
def ev(step):
    model.eval()
    out = {}
    for t, it in items.items():
        tf = _teacher_forced(model, it, 16, "cpu")
        i = sum(int((p & g).sum()) for p, g in zip(tf["preds"], tf["gts"]))
        u = sum(int((p | g).sum()) for p, g in zip(tf["preds"], tf["gts"]))
        out[t] = round(i / u, 4)
    model.train()
    print(step, out, flush=True)
    return out
t = time.time(); train(model, train_ds, cfg.train, evaluate_fn=ev); model.eval(); ev(steps); print("s", time.time() - t)
