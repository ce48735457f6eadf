"""Diagnosis of the micro backbone's segmentation plateau (issue 5); see diagnosis.md.

A throw-away experiment script, kept because the figures in diagnosis.md come from it. It swaps
parts of the model *inside this process only* (decoder variants, the state read one position
earlier, oracle queries computed from the ground-truth target) and runs one trial:

    NTBENCH_HOME=... python decoder_oracles.py VARIANT ADAPTER STEPS TASKS
    VARIANT: '+'-joined words among base, before, mlp, dot, bce, cnn, oracle, cat, hyb, shape
    e.g.  python decoder_oracles.py oracle-shape frozen 300 referring,reasoning
Set EV=N to evaluate every N steps. Oracle runs print the training-batch oIoU on ~5% of steps
(their final eval is meaningless: evaluation reads the LLM states the oracle replaced).
"""
import sys, time, json, math, torch
from torch import nn
from torch.nn import functional as F
import ntbench.model.allintoken as AI
import ntbench.model.heads as H
from ntbench.train.trial import TrialConfig, run_trial
from ntbench.train.trainer import TrainConfig

class DotMaskDecoder(nn.Module):
    def __init__(self, llm_width, vision_width, n_layers, width=64, heads=4):
        super().__init__()
        self.reduce = nn.ModuleList(nn.Linear(vision_width, width) for _ in range(n_layers))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(width, heads, 2*width, dropout=0.0, batch_first=True, norm_first=True) for _ in range(n_layers))
        self.film = nn.Linear(llm_width, 2*width)
        d = width // 2
        self.pix = nn.Sequential(nn.Conv2d(3, d, 3, padding=1), nn.ReLU(), nn.Conv2d(d, d, 3, padding=1), nn.ReLU())
        self.fuse = nn.Sequential(nn.Conv2d(width + d, width, 3, padding=1), nn.ReLU())
        self.film2 = nn.Linear(llm_width, 2*width)
        self.embed = nn.Conv2d(width, d, 3, padding=1)
        self.query = nn.Linear(llm_width, d)
        self.bias = nn.Linear(llm_width, 1)
    def forward(self, token_state, vision_layers, size, pixels=None):
        x = None
        for i, (f, r, b) in enumerate(zip(vision_layers, self.reduce, self.blocks)):
            x = r(f) if x is None else x + r(f)
            if i == 0:
                s, t = self.film(token_state).chunk(2, -1)
                x = x * (1 + s[:, None]) + t[:, None]
            x = b(x)
        n, p, w = x.shape
        g = math.isqrt(p)
        grid = F.interpolate(x.transpose(1, 2).reshape(n, w, g, g), size=size, mode="bilinear", align_corners=False)
        px = self.pix(F.interpolate(pixels, size=size, mode="bilinear", align_corners=False))
        h = self.fuse(torch.cat([grid, px], 1))
        s, t = self.film2(token_state).chunk(2, -1)
        h = F.relu(h * (1 + s[:, :, None, None]) + t[:, :, None, None])
        e = self.embed(h)
        q = self.query(token_state)
        return torch.einsum("nd,ndhw->nhw", q, e) / math.sqrt(e.shape[1]) + self.bias(token_state)[:, :, None]

variant = sys.argv[1]; adapter = sys.argv[2]; steps = int(sys.argv[3]); tasks = sys.argv[4]
class CnnDec(nn.Module):
    """Patch path as before + a token-conditioned CNN over the pixels (dilated, RF ~31 px at 32x32)."""
    def __init__(self, llm_width, vision_width, n_layers, width=64, heads=4, c=32):
        super().__init__()
        self.base = H.MaskDecoder(llm_width, vision_width, n_layers, width, heads)
        self.inp = nn.Conv2d(3 + 1, c, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=d, dilation=d) for d in (1, 2, 4, 8))
        self.films = nn.ModuleList(nn.Linear(llm_width, 2 * c) for _ in range(5))
        self.out = nn.Conv2d(c, 1, 3, padding=1)
    def forward(self, token_state, vision_layers, size, pixels=None):
        coarse = self.base(token_state, vision_layers, size, pixels)
        lo = (32, 32)
        x = torch.cat([F.interpolate(pixels, size=lo, mode="bilinear", align_corners=False),
                       F.interpolate(coarse[:, None], size=lo, mode="bilinear", align_corners=False)], 1)
        h = self.inp(x)
        for i, film in enumerate(self.films):
            s, t = film(token_state).chunk(2, -1)
            h = F.relu(h * (1 + s[:, :, None, None]) + t[:, :, None, None])
            if i < len(self.convs):
                h = h + self.convs[i](h) if i else self.convs[i](h)
        return coarse + F.interpolate(self.out(h), size=size, mode="bilinear", align_corners=False)[:, 0]
if "cnn" in variant:
    AI.MaskDecoder = CnnDec
if "mlp" in variant:
    Base = H.MaskDecoder
    class MlpDec(Base):
        def __init__(self, llm_width, vision_width, n_layers, width=64, heads=4):
            super().__init__(llm_width, vision_width, n_layers, width, heads)
            self.pre = nn.Sequential(nn.LayerNorm(llm_width), nn.Linear(llm_width, llm_width), nn.ReLU(), nn.Linear(llm_width, llm_width))
        def forward(self, token_state, vision_layers, size, pixels=None):
            return super().forward(self.pre(token_state), vision_layers, size, pixels)
    AI.MaskDecoder = MlpDec
if "dot" in variant:
    AI.MaskDecoder = DotMaskDecoder
if "bce" in variant:
    orig = H.dice_loss
    def loss(logits, target):
        return orig(logits, target) + 2.0 * F.binary_cross_entropy_with_logits(logits.float(), target.float())
    AI.dice_loss = loss
t = {k: 1.0 for k in tasks.split(",")}
if "before" in variant:
    old_run = AI.AllInTokenModel.run_llm
    def run_llm(self, batch, vision):
        logits, hidden, off = old_run(self, batch, vision)
        return logits, torch.cat([hidden[:, :1], hidden[:, :-1]], 1), off
    AI.AllInTokenModel.run_llm = run_llm
if "oracle" in variant:
    import ntbench.model.allintoken as AIm
    orig_dec_forward = None
    class Oracle(nn.Module):
        def __init__(self, inner, h):
            super().__init__(); self.inner = inner; self.lin = nn.Linear(3, h)
        def forward(self, token_state, vision_layers, size, pixels=None, target=None):
            return self.inner(token_state, vision_layers, size, pixels)
    old_forward = AIm.AllInTokenModel.forward
    def fwd(self, batch):
        if not hasattr(self, "oracle_lin"):
            self.oracle_lin = nn.Linear(3, self.llm.config.hidden_size); self._head_params += list(self.oracle_lin.parameters())
        vision = self.encode_images(batch["images"])
        logits, hidden, off = self.run_llm(batch, vision)
        m = batch["seg_masks"].float()
        img = batch["images"][batch["seg_b"]].float() / 255
        col = (img * m[:, None]).sum((2, 3)) / m.sum((1, 2))[:, None].clamp(min=1)
        if "shape" in variant:
            if not hasattr(self, "oracle_emb"):
                self.oracle_emb = nn.Embedding(6, self.llm.config.hidden_size)
            states = self.oracle_emb(batch["seg_shape"])
        elif "hyb" in variant:
            key = ((col * 3).round().clamp(0, 2) * torch.tensor([9., 3., 1.])).sum(1).long()
            if not hasattr(self, "oracle_emb"):
                self.oracle_emb = nn.Embedding(27, self.llm.config.hidden_size)
            states = self.oracle_emb(key) + hidden[batch["seg_b"], off + batch["seg_t"]].float()
        elif "cat" in variant:
            key = ((col * 3).round().clamp(0, 2) * torch.tensor([9., 3., 1.])).sum(1).long()
            if not hasattr(self, "oracle_emb"):
                self.oracle_emb = nn.Embedding(27, self.llm.config.hidden_size)
                self._head_params += list(self.oracle_emb.parameters())
            states = self.oracle_emb(key)
        else:
            states = self.oracle_lin(col * 4 - 2)
        feats = [f[batch["seg_b"]].float() for f in vision["seg"]]
        pred = self.mask_decoder(states, feats, tuple(m.shape[-2:]), vision["pixels"][batch["seg_b"]].float())
        loss = AIm.dice_loss(pred, m)
        oiou = float(((pred > 0) & (m > 0)).sum() / ((pred > 0) | (m > 0)).sum())
        print("oracle seg loss", float(loss), "train oIoU", round(oiou, 3), flush=True) if np.random.rand() < 0.05 else None
        return {"loss": loss, "loss_txt": loss.detach(), "loss_seg": loss.detach(), "loss_gen": loss.detach()}
    import numpy as np
    AIm.AllInTokenModel.forward = fwd
    import ntbench.train.trainer as TR
    from ntbench.data.io import SampleDataset
    from ntbench.train.trial import default_data_dir
    from ntbench.data.render import SHAPES
    DS = SampleDataset(default_data_dir(), "train")
    orig_collate = TR.collate
    def collate(items, tok, teacher_forced=True):
        b = orig_collate(items, tok, teacher_forced)
        shapes = []
        for r, it in enumerate(items):
            n = int((b["seg_b"] == r).sum())
            s = DS.samples[int(it.sample_id.split("-")[1])]
            shapes += [SHAPES.index(s.objects[o].attributes["shape"]) for o in it.example.target_objects[:n]]
        b["seg_shape"] = torch.tensor(shapes, dtype=torch.long)
        return b
    TR.collate = collate

cfg = TrialConfig(backbone="micro", adapter=adapter, eval_samples=128, eval_generated="gen" in variant,
                  train=TrainConfig(steps=steps, batch_size=16, seed=0, warmup=steps//10, tasks=t, eval_every=int(__import__("os").environ.get("EV", "0"))))
t0 = time.time()
s = run_trial(cfg)
m = s["metrics"]
out = {k: {kk: round(v, 3) for kk, v in m[k].items() if kk in ("tf_paper_oIoU", "gen_paper_oIoU", "BLEU-4")} for k in m if k in t}
for e in s["train"].get("evaluations", []): print("EVAL", e.get("step"), {k: round(v.get("tf_paper_oIoU", -1), 3) for k, v in e.items() if isinstance(v, dict)})
print(variant, adapter, steps, tasks, json.dumps(out), "loss", s["loss_last"], f"{time.time()-t0:.0f}s", flush=True)
