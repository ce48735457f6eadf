"""Cache frozen-LLM states at <OBJ-i> tags for the cached-decoder experiments (diagnosis.md section 7).

    NTBENCH_HOME=... python state_cache.py NAME        NAME starting with "img": the LLM reads image tokens
                                                       (else the image tokens are masked out: text only)
    env SCALE=F: multiply the projector's initial weight and bias by F; BIASBOS=1 / BIASMEAN=1: set its
    bias to the BOS embedding / the mean embedding (the projector is untrained: `frozen` adapter at init).
Writes $CACHE/cache_NAME.pt (CACHE defaults to .): per task and split the state at the tag (s0) and one
position before (s1), two vision layers' patch features, pixels, the target mask, its shape, the union mask.
Train: 4096 draws per task (TaskMixer seed 1); val: 512 draws (seed 2).
"""
import sys, torch, numpy as np
from ntbench.model.backbone import load_backbone
from ntbench.model.allintoken import AllInTokenModel
from ntbench.train.trainer import TaskMixer
from ntbench.model.batching import collate
from ntbench.data.io import SampleDataset
from ntbench.train.trial import default_data_dir
from ntbench.data.render import SHAPES
torch.manual_seed(0)
bb = load_backbone("micro")
m = AllInTokenModel(bb, adapter="frozen").eval()
import os
if os.environ.get("SCALE"):
    with torch.no_grad(): m.projector.weight.mul_(float(os.environ["SCALE"])); m.projector.bias.mul_(float(os.environ["SCALE"]))
if os.environ.get("BIASBOS"):
    with torch.no_grad(): m.projector.bias.copy_(m.llm.get_input_embeddings().weight[m.tokenizer.bos_token_id]); print("bos norm", m.projector.bias.norm())
if os.environ.get("BIASMEAN"):
    with torch.no_grad(): m.projector.bias.copy_(m.llm.get_input_embeddings().weight.mean(0)); print("mean emb norm", m.projector.bias.norm())
def build(split, task, n, use_image):
    ds = SampleDataset(default_data_dir(), split)
    mix = TaskMixer(ds, {task: 1.0}, seed=1 if split == "train" else 2)
    out = {k: [] for k in ("s0", "s1", "f0", "f1", "pix", "mask", "shape", "alls")}
    for start in range(0, n, 64):
        items = mix.draw(64)
        b = collate(items, m.tokenizer)
        if not use_image:
            b["uses_image"] = torch.zeros_like(b["uses_image"])
        with torch.no_grad():
            v = m.encode_images(b["images"]); _, hid, off = m.run_llm(b, v)
        out["s0"].append(hid[b["seg_b"], off + b["seg_t"]]); out["s1"].append(hid[b["seg_b"], off + b["seg_t"] - 1])
        out["f0"].append(v["seg"][0][b["seg_b"]]); out["f1"].append(v["seg"][1][b["seg_b"]] if len(v["seg"]) > 1 else v["seg"][0][b["seg_b"]])
        out["pix"].append(torch.nn.functional.interpolate(v["pixels"][b["seg_b"]], size=(32, 32), mode="bilinear"))
        out["mask"].append(b["seg_masks"])
        sh = []; al = []
        for r, it in enumerate(items):
            k = int((b["seg_b"] == r).sum()); s = ds.samples[int(it.sample_id.split("-")[1])]
            sh += [SHAPES.index(s.objects[o].attributes["shape"]) for o in it.example.target_objects[:k]]
            al += [it.masks.max(0).values] * k
        out["shape"].append(torch.tensor(sh)); out["alls"].append(torch.stack(al))
        print(split, task, start, flush=True) if start % 1024 == 0 else None
    return {k: torch.cat(v) for k, v in out.items()}
ui = sys.argv[1].startswith("img")
data = {(sp, t): build(sp, t, n, ui) for sp, n in (("train", 4096), ("val", 512)) for t in ("reasoning", "referring")}
print({k: v["mask"].shape for k, v in data.items()}, "seg layers", m.seg_layers)
torch.save(data, f"{__import__('os').environ.get('CACHE', '.')}/cache_{sys.argv[1]}.pt")
