"""Teacher-forced oIoU on all of val every 250 steps, for one evidence-config trial.
argv: adapter seed steps lr head_lr_mult"""
import sys, time
import torch
from ntbench.evidence import evidence_trial_config
from ntbench.train.trainer import train
from ntbench.train.trial import build_model, resolve_data
from ntbench.data.io import SampleDataset
from ntbench.eval.evaluate import build_items, _teacher_forced

adapter, seed, steps, lr, mult = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
cfg = evidence_trial_config(adapter, seed, steps, lr=lr, lambda_bce=1.0,
                            tasks={"referring": 2, "reasoning": 2, "captioning": 1, "t2i": 1})
cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"eval_every": 250})})
data = resolve_data(cfg.data)
train_ds, val = SampleDataset(data, "train"), SampleDataset(data, "val")
model = build_model(cfg)  # seeded as in run_trial
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
