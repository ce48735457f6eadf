"""Does each vision patch token say which shape covers it? A linear probe on a backbone's frozen patch
features, on patches more than half covered by one object (4000 training images, 500 validation).

    NTBENCH_HOME=... python patchprobe.py BACKBONE_FOLDER
See diagnosis.md section 6.
"""
import sys, torch, numpy as np
from pathlib import Path
from torch.nn import functional as F
from ntbench.micro import load_micro, _pixels, _patch_labels
from ntbench.data.io import SampleDataset
torch.manual_seed(0)
bb = load_micro(Path(sys.argv[1])); vis = bb.vision.eval()
data = sys.argv[2] if len(sys.argv) > 2 else __import__("ntbench.train.trial", fromlist=["x"]).default_data_dir()
def get(split, n):
    ds = SampleDataset(data, split)
    imgs = torch.stack([ds[i]["image"] for i in range(n)])
    with torch.no_grad():
        f = vis(pixel_values=_pixels(imgs)).last_hidden_state[:, 1:]
    lab = _patch_labels(ds, n, imgs.shape[-1], imgs.shape[-1] // 8)
    return f.reshape(-1, f.shape[-1]), lab.reshape(-1, lab.shape[-1])
ftr, ltr = get("train", 4000); fva, lva = get("val", 500)
def sel(l):  # patches mostly covered by one object
    return l[:, 1:7].max(-1).values > 0.5
probe = torch.nn.Linear(ftr.shape[-1], 6); opt = torch.optim.Adam(probe.parameters(), 1e-2)
m = sel(ltr); x, y = ftr[m], ltr[m][:, 1:7].argmax(-1)
for _ in range(300):
    loss = F.cross_entropy(probe(x), y); opt.zero_grad(); loss.backward(); opt.step()
mv = sel(lva)
acc = (probe(fva[mv]).argmax(-1) == lva[mv][:, 1:7].argmax(-1)).float().mean().item()
print(sys.argv[1].split('/')[-1], "patch shape acc", round(acc, 3), "majority", round(torch.bincount(lva[mv][:, 1:7].argmax(-1)).max().item() / mv.sum().item(), 3))
