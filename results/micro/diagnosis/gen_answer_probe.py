"""Why is generated-answer reasoning oIoU low for neural? Train the evidence configuration once, then split
reasoning val samples by whether the generated answer matches the reference answer's text."""
import sys, re
import numpy as np
from ntbench.evidence import evidence_trial_config
from ntbench.train.trainer import train
from ntbench.train.trial import build_model, resolve_data
from ntbench.data.io import SampleDataset
from ntbench.eval.evaluate import build_items, _generated, _teacher_forced

seed, steps = int(sys.argv[1]), int(sys.argv[2])
cfg = evidence_trial_config("neural", seed, steps, lr=3e-3, lambda_bce=1.0,
                            tasks={"referring": 2, "reasoning": 2, "captioning": 1, "t2i": 1})
data = resolve_data(cfg.data)
train_ds, val = SampleDataset(data, "train"), SampleDataset(data, "val")
model = build_model(cfg)  # seeded as in run_trial
train(model, train_ds, cfg.train)
model.eval()
items = build_items(val, "reasoning", 200, cfg.eval_seed)
texts, preds, gts = _generated(model, items, 16, "cpu", 32)
from ntbench.model.batching import collate
ntag = 0
for i in range(0, len(items), 16):
    b = collate(items[i:i+16], model.tokenizer, teacher_forced=False)
    o = model.generate(b, max_new_tokens=32)
    ntag += sum(any(t >= model.base_vocab for t in row.tolist()) for row in o["ids"])
print("answers with any new-token id:", ntag, "of", len(items))
tf = _teacher_forced(model, items, 16, "cpu")
norm = lambda s: re.sub(r"[^a-z ]", "", re.sub(r"<OBJ-#?\d+>", "", s).lower()).split()
k = 0; rows = []
for it, text in zip(items, texts):
    n = len(it.example.target_objects)
    ref = it.example.answer
    same = norm(text) == norm(ref)
    for j in range(n):
        p, g, q = preds[k], gts[k], tf["preds"][k]
        rows.append((same, (p & g).sum(), (p | g).sum(), (q & g).sum(), (q | g).sum()))
        k += 1
rows = np.array(rows, float)
for flag in (1, 0):
    r = rows[rows[:, 0] == flag]
    print("answer text matches reference" if flag else "answer text differs", int(len(r)), "targets;",
          "gen oIoU", round(r[:, 1].sum() / r[:, 2].sum(), 3), "tf oIoU", round(r[:, 3].sum() / r[:, 4].sum(), 3))
print("all: gen", round(rows[:, 1].sum() / rows[:, 2].sum(), 3), "tf", round(rows[:, 3].sum() / rows[:, 4].sum(), 3))
for it, text in list(zip(items, texts))[:6]:
    print(repr(it.example.prompt), "| ref:", repr(it.example.answer), "| gen:", repr(text))
