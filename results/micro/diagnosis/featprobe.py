"""Can a simple decoder find an object in a backbone's frozen vision patch features, given an oracle query?

    NTBENCH_HOME=... python featprobe.py BACKBONE_FOLDER QUERY STEPS     QUERY: shape, colour or shape+colour
Trains a dot-product decoder (patch MLP . query code, upsampled) on 6000 training samples (one random
object each) with Dice + BCE, and prints the validation oIoU on 500 samples. See diagnosis.md section 6.
"""
import sys, time, torch, numpy as np
from torch.nn import functional as F
from ntbench.micro import load_micro
from ntbench.data.io import SampleDataset
from ntbench.data.render import SHAPES, COLOURS
from ntbench.data.schema import decode_mask
from ntbench.micro import _pixels
torch.manual_seed(0)
folder, key, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
bb = load_micro(__import__("pathlib").Path(folder))
vis = bb.vision.eval()
data = __import__("ntbench.train.trial", fromlist=["x"]).default_data_dir()
def build(split, n):
    ds = SampleDataset(data, split); rng = np.random.default_rng(1)
    imgs, masks, q = [], [], []
    for i in range(n):
        s = ds.samples[i]; it = ds[i]; j = int(rng.integers(len(s.objects)))
        o = s.objects[j].attributes
        imgs.append(it["image"]); masks.append(it["masks"][j])
        qs = np.zeros(len(SHAPES) + len(COLOURS), np.float32)
        if "shape" in key: qs[SHAPES.index(o["shape"])] = 1
        if "colour" in key: qs[len(SHAPES) + list(COLOURS).index(o["colour"])] = 1
        q.append(qs)
    imgs = torch.stack(imgs)
    with torch.no_grad():
        out = vis(pixel_values=_pixels(imgs), output_hidden_states=True)
    feats = torch.cat([out.hidden_states[-1][:, 1:], out.hidden_states[-2][:, 1:]], -1)
    return feats, torch.stack(masks).float(), torch.tensor(np.stack(q))
t = time.time()
ftr, mtr, qtr = build("train", 6000); fva, mva, qva = build("val", 500)
print("features", ftr.shape, time.time() - t)
D = ftr.shape[-1]
net = torch.nn.Sequential(torch.nn.LayerNorm(D), torch.nn.Linear(D, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
qnet = torch.nn.Linear(qtr.shape[-1], 64)
opt = torch.optim.AdamW(list(net.parameters()) + list(qnet.parameters()), lr=2e-3)
def predict(f, q):
    e = net(f); logits = torch.einsum("npd,nd->np", e, qnet(q)) / 8
    return F.interpolate(logits.view(-1, 1, 8, 8), size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
for step in range(steps):
    idx = torch.randint(0, len(ftr), (64,))
    lo = predict(ftr[idx], qtr[idx]); tg = mtr[idx]
    p = torch.sigmoid(lo).flatten(1); tt = tg.flatten(1)
    loss = (1 - (2 * (p * tt).sum(-1) + 1) / (p.sum(-1) + tt.sum(-1) + 1)).mean() + F.binary_cross_entropy_with_logits(lo, tg)
    opt.zero_grad(); loss.backward(); opt.step()
with torch.no_grad():
    pr = predict(fva, qva) > 0
inter = (pr & (mva > 0)).sum().item(); union = (pr | (mva > 0)).sum().item()
print(folder.split("/")[-1], key, steps, "val oIoU", round(inter / union, 3), "loss", round(loss.item(), 3))
