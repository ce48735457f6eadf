"""Train a mask decoder on cached states (state_cache.py) and print validation oIoU (diagnosis.md section 7).

    python cached_decoder.py NAME KIND QUERY STEPS
    KIND: dot (featprobe-style dot-product decoder, Dice + BCE), dec (the shipped MaskDecoder, two vision
          layers, Dice; with StateWhitening unless NOWH=1), decbce (dec with Dice + BCE)
    QUERY: s0 (state at the tag), s1 (one position before), both, shape (oracle one-hot of the target's
           shape), shape+s1, probe (softmax of a linear shape probe fitted on s1)
    env: LR (peak, one-cycle; default 1e-3), WHITEN=EPS (ZCA-whiten the cached states with the train
         covariance first), QV=mlp|lin|proto (dot's query net), AUX=W (in-batch contrastive loss between
         query and pooled patch embedding), AUX2=W (same, against the frozen vision features), PRE=N
         (pretrain dot's patch net N steps with the oracle shape code; FREEZE=1 keeps it fixed; MSE=N
         then fits the query net to the oracle codes by regression)
Batch 32 tag states per step. Prints (oIoU, all-objects oIoU) per task on the validation tags.
"""
import sys, math, torch
from torch import nn
from torch.nn import functional as F
from ntbench.model.heads import MaskDecoder, dice_loss
torch.manual_seed(0)
data = torch.load(f"{__import__('os').environ.get('CACHE', '.')}/cache_{sys.argv[1]}.pt")
kind, q, steps = sys.argv[2], sys.argv[3], int(sys.argv[4])
tasks = sys.argv[5].split(",") if len(sys.argv) > 5 else ["reasoning", "referring"]
cat = lambda sp, k: torch.cat([data[(sp, t)][k] for t in tasks])
tr = {k: cat("train", k) for k in data[("train", "reasoning")]}
H = tr["s0"].shape[-1]; D = tr["f0"].shape[-1]
import os
if os.environ.get("WHITEN"):
    eps = float(os.environ["WHITEN"])
    for key in ("s0", "s1"):
        x = tr[key]; mu = x.mean(0); C = torch.cov((x - mu).T); lam, U = torch.linalg.eigh(C)
        Wm = U @ torch.diag((lam.clamp(min=0) + eps * lam.max()).rsqrt()) @ U.T
        for dd in data.values(): dd[key] = (dd[key] - mu) @ Wm
        tr[key] = (x - mu) @ Wm; D = tr["f0"].shape[-1]
def query(d, idx):
    if q == "shape": return F.one_hot(d["shape"][idx], 6).float()
    if q == "s0": return d["s0"][idx]
    if q == "s1": return d["s1"][idx]
    if q == "shape+s1": return torch.cat([F.one_hot(d["shape"][idx], 6).float(), d["s1"][idx]], -1)
    if q == "probe": return torch.softmax(PROBE(d["s1"][idx]), -1)
    if q == "both": return torch.cat([d["s0"][idx], d["s1"][idx]], -1)
if q == "probe":
    m_, sd_ = tr["s1"].mean(0), tr["s1"].std(0)
    lin = nn.Linear(H, 6); o = torch.optim.LBFGS(lin.parameters(), max_iter=300)
    def cl():
        o.zero_grad(); l = F.cross_entropy(lin((tr["s1"] - m_) / sd_), tr["shape"]) + 1e-3 * lin.weight.pow(2).sum(); l.backward(); return l
    o.step(cl); lin.requires_grad_(False)
    PROBE = lambda s: lin((s - m_) / sd_)
QD = {"shape+s1": 6 + H, "probe": 6, "shape": 6, "s0": H, "s1": H, "both": 2 * H}[q]
LAST = {}
AUX2 = float(__import__('os').environ.get('AUX2', '0'))
AUX = float(__import__('os').environ.get('AUX', '0'))
if kind == "dot":
    net = nn.Sequential(nn.LayerNorm(2 * D), nn.Linear(2 * D, 128), nn.GELU(), nn.Linear(128, 64))
    import os
    QV = os.environ.get("QV", "mlp")
    if QV == "mlp": qnet = nn.Sequential(nn.LayerNorm(QD), nn.Linear(QD, 128), nn.GELU(), nn.Linear(128, 64))
    elif QV == "lin": qnet = nn.Sequential(nn.BatchNorm1d(QD, affine=False), nn.Linear(QD, 64))
    elif QV == "proto":
        class Proto(nn.Module):
            def __init__(s):
                super().__init__(); s.ln = nn.LayerNorm(QD); s.w = nn.Linear(QD, 32); s.p = nn.Parameter(torch.randn(32, 64))
            def forward(s, x): return torch.softmax(s.w(s.ln(x)), -1) @ s.p
        qnet = Proto()
    params = list(net.parameters()) + list(qnet.parameters())
    if AUX2:
        align = nn.Sequential(nn.LayerNorm(QD), nn.Linear(QD, 2 * D)); params += list(align.parameters())
        qnet0 = nn.Sequential(nn.LayerNorm(2 * D), nn.Linear(2 * D, 128), nn.GELU(), nn.Linear(128, 64)); params += list(qnet0.parameters())
        qnet = lambda x: qnet0(align(x))
        qnet.eval = qnet0.eval; qnet.train = qnet0.train
    def predict(d, idx):
        e = net(torch.cat([d["f0"][idx], d["f1"][idx]], -1)); lo = torch.einsum("npd,nd->np", e, qnet(query(d, idx))) / 8
        LAST["e"], LAST["q"] = e, qnet(query(d, idx))
        return F.interpolate(lo.view(-1, 1, 8, 8), size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
else:
    dec = MaskDecoder(QD, D, 2, whiten_state=not os.environ.get("NOWH"))
    ln = nn.LayerNorm(QD) if "ln" in kind else nn.Identity()
    params = list(dec.parameters()) + list(ln.parameters())
    def predict(d, idx):
        return dec(ln(query(d, idx)), [d["f0"][idx], d["f1"][idx]], (64, 64), F.interpolate(d["pix"][idx], size=(64, 64), mode="bilinear"))
opt = torch.optim.AdamW(params, lr=float(__import__("os").environ.get("LR", "1e-3")))
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=steps, pct_start=0.1)
def evaluate():
    res = {}; qnet.eval() if kind == "dot" else dec.eval()
    with torch.no_grad():
        for t in tasks:
            d = data[("val", t)]; idx = torch.arange(len(d["mask"]))
            pr = predict(d, idx) > 0; m = d["mask"] > 0; a = d["alls"] > 0
            dt = data[("train", t)]; it_ = torch.arange(512); prt = predict(dt, it_) > 0; mt = dt["mask"][:512] > 0
            res[t + "_train"] = round(((prt & mt).sum() / (prt | mt).sum()).item(), 3)
            res[t] = (round(((pr & m).sum() / (pr | m).sum()).item(), 3), round(((a & m).sum() / (a | m).sum()).item(), 3))
    qnet.train() if kind == "dot" else dec.train(); return res
import os
if os.environ.get("PRE"):
    pq = nn.Embedding(6, 64); po = torch.optim.AdamW(list(net.parameters()) + list(pq.parameters()), lr=1e-3)
    for s_ in range(int(os.environ["PRE"])):
        i_ = torch.randint(0, len(tr["mask"]), (32,)); e_ = net(torch.cat([tr["f0"][i_], tr["f1"][i_]], -1))
        l_ = torch.einsum("npd,nd->np", e_, pq(tr["shape"][i_])) / 8
        l_ = F.interpolate(l_.view(-1, 1, 8, 8), size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
        L_ = dice_loss(l_, tr["mask"][i_].float()) + F.binary_cross_entropy_with_logits(l_, tr["mask"][i_].float())
        po.zero_grad(); L_.backward(); po.step()
    print("pretrained patch net, loss", round(L_.item(), 3))
    if os.environ.get("FREEZE"): net.requires_grad_(False)
    if os.environ.get("MSE"):
        mo = torch.optim.AdamW(qnet.parameters(), lr=1e-3)
        for s_ in range(int(os.environ["MSE"])):
            i_ = torch.randint(0, len(tr["mask"]), (32,))
            L_ = F.mse_loss(qnet(query(tr, i_)), pq(tr["shape"][i_]).detach()); mo.zero_grad(); L_.backward(); mo.step()
        print("qnet mse", round(L_.item(), 4), "target var", pq.weight.var().item(), evaluate())
for step in range(steps):
    idx = torch.randint(0, len(tr["mask"]), (32,))
    lo = predict(tr, idx); tg = tr["mask"][idx].float()
    loss = dice_loss(lo, tg) + ("bce" in kind or kind == "dot") * F.binary_cross_entropy_with_logits(lo, tg)
    if AUX:
        md = F.adaptive_avg_pool2d(tg[:, None], 8).flatten(1)  # target coverage per patch
        k = torch.einsum("npd,np->nd", LAST["e"], md) / md.sum(1, keepdim=True).clamp(min=1e-3)
        lg = F.normalize(LAST["q"], dim=-1) @ F.normalize(k, dim=-1).T / 0.1
        loss = loss + AUX * F.cross_entropy(lg, torch.arange(len(lg)))
    if AUX2:
        md = F.adaptive_avg_pool2d(tg[:, None], 8).flatten(1)
        f = torch.cat([tr["f0"][idx], tr["f1"][idx]], -1)
        k = torch.einsum("npd,np->nd", f, md) / md.sum(1, keepdim=True).clamp(min=1e-3)
        lg = F.normalize(align(query(tr, idx)), dim=-1) @ F.normalize(k, dim=-1).T / 0.1
        loss = loss + AUX2 * F.cross_entropy(lg, torch.arange(len(lg)))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
    if (step + 1) % (steps // 3) == 0: print(step + 1, round(loss.item(), 3), evaluate(), flush=True)
print("FINAL", sys.argv[1:], evaluate())
