"""How much of the seed-to-seed spread is eval-set noise? Train one evidence-config neural trial,
then score teacher-forced oIoU on disjoint 64-sample chunks of val and on all of val."""
import sys, time
import numpy as np
from ntbench.evidence import evidence_trial_config
from ntbench.train.trainer import train
from ntbench.train.trial import build_model, resolve_data
from ntbench.data.io import SampleDataset
from ntbench.eval.evaluate import build_items, _teacher_forced

adapter, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = evidence_trial_config(adapter, seed, steps, lr=3e-3, lambda_bce=1.0,
                            tasks={"referring": 2, "reasoning": 2, "captioning": 1, "t2i": 1})
data = resolve_data(cfg.data)
train_ds, val = SampleDataset(data, "train"), SampleDataset(data, "val")
model = build_model(cfg)  # seeded as in run_trial
t = time.time(); train(model, train_ds, cfg.train); print("train s", time.time() - t, flush=True)
model.eval()
out = {}
for task in ("referring", "reasoning"):
    t = time.time()
    items = build_items(val, task, 10000, cfg.eval_seed)
    tf = _teacher_forced(model, items, 16, "cpu")
    inter = np.array([(p & g).sum() for p, g in zip(tf["preds"], tf["gts"])], float)
    union = np.array([(p | g).sum() for p, g in zip(tf["preds"], tf["gts"])], float)
    n = len(inter)
    chunks = [inter[i:i+64].sum() / union[i:i+64].sum() for i in range(0, n - 63, 64)]
    rng = np.random.default_rng(0)
    boot = {k: np.std([inter[idx].sum() / union[idx].sum() for idx in (rng.choice(n, k) for _ in range(2000))])
            for k in (64, 128, 256, n)}
    out[task] = {"n": n, "first64": inter[:64].sum() / union[:64].sum(), "all": inter.sum() / union.sum(),
                 "chunks64": chunks, "chunk_std": float(np.std(chunks, ddof=1)), "boot_std": boot,
                 "eval_s": time.time() - t}
    print(task, out[task], flush=True)
