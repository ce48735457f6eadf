"""Linear probes: how well do the frozen micro LLM's hidden states at (offset 0) and just before
(offset -1) each <OBJ-k> token encode the target's colour and shape, per layer? See diagnosis.md.

    NTBENCH_HOME=... python state_probe.py
"""
import torch, numpy as np
from ntbench.model.backbone import load_backbone
from ntbench.model.allintoken import AllInTokenModel
from ntbench.data.io import SampleDataset
from ntbench.train.trial import default_data_dir
from ntbench.eval.evaluate import build_items
from ntbench.model.batching import collate

class LogisticRegression:
    def __init__(self, max_iter=300): self.it = max_iter
    def fit(self, x, y):
        self.classes = sorted(set(y)); yi = torch.tensor([self.classes.index(c) for c in y])
        x = torch.tensor(x, dtype=torch.float32); self.mu, self.sd = x.mean(0), x.std(0) + 1e-5
        x = (x - self.mu) / self.sd
        self.lin = torch.nn.Linear(x.shape[1], len(self.classes)); opt = torch.optim.LBFGS(self.lin.parameters(), max_iter=self.it)
        def closure():
            opt.zero_grad(); l = torch.nn.functional.cross_entropy(self.lin(x), yi) + 1e-3 * self.lin.weight.pow(2).sum(); l.backward(); return l
        opt.step(closure); return self
    def score(self, x, y):
        x = (torch.tensor(x, dtype=torch.float32) - self.mu) / self.sd
        p = self.lin(x).argmax(1).numpy()
        return float(np.mean([self.classes[i] == c for i, c in zip(p, y)]))
torch.manual_seed(0)
m = AllInTokenModel(load_backbone("micro"), "frozen").eval()
ds = SampleDataset(default_data_dir(), "train")
for task in ("referring", "reasoning"):
    items = build_items(ds, task, 1000, 0)
    X = {}; yc, ys = [], []
    with torch.no_grad():
        for i in range(0, len(items), 32):
            ch = items[i:i+32]
            b = collate(ch, m.tokenizer)
            v = m.encode_images(b["images"])
            _, hid, off = m.run_llm(b, v)
            hs = m.llm(inputs_embeds=torch.cat([m.projector(v["patches"]), m.embed_text(b["input_ids"])], 1), attention_mask=torch.cat([b["uses_image"][:, None].long().expand(-1, v["patches"].shape[1]), b["text_mask"]], 1), output_hidden_states=True).hidden_states
            for L in range(len(hs)):
                for d in (-1, 0):
                    X.setdefault((L, d), []).append(hs[L][b["seg_b"], off + b["seg_t"] + d].numpy())
            for r, t in zip(b["seg_b"].tolist(), b["seg_t"].tolist()):
                pass
            k = 0
            for r, it in enumerate(ch):
                n = (b["seg_b"] == r).sum().item()
                s = ds.samples[int(it.sample_id.split("-")[1])]
                for j in range(n):
                    o = s.objects[it.example.target_objects[j]]
                    yc.append(o.attributes["colour"]); ys.append(o.attributes["shape"])
    for d in sorted(X):
        x = np.concatenate(X[d]); n = len(x); tr = int(n * 0.7)
        for name, y in (("colour", yc), ("shape", ys)):
            y = np.array(y)
            clf = LogisticRegression(max_iter=2000).fit(x[:tr], y[:tr])
            base = max(np.mean(y[tr:] == c) for c in set(y))
            print(task, "offset", d, name, "probe acc", round(clf.score(x[tr:], y[tr:]), 3), "majority", round(base, 3), flush=True)
