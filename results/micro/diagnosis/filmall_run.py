"""The coarse mask-decoder path with FiLM by the task token before every block and in the upsampling
head (instead of once), v3 backbone, segmentation tasks only (diagnosis.md section 6):

    NTBENCH_HOME=... python filmall_run.py ADAPTER STEPS
"""
import sys, json, math, torch
from torch import nn
from torch.nn import functional as F
import ntbench.model.allintoken as AI
import ntbench.model.heads as H
from seg_trial import final_oiou, run_seg_trial

class FilmAll(H.MaskDecoder):
    def __init__(self, llm_width, vision_width, n_layers, width=64, heads=4, pixel_refiner=False):
        super().__init__(llm_width, vision_width, n_layers, width, heads, pixel_refiner)
        self.films = nn.ModuleList(nn.Linear(llm_width, 2 * width) for _ in range(n_layers))
        self.film_head = nn.Linear(llm_width, 2 * width)
    def forward(self, token_state, vision_layers, size, pixels=None):
        x = None
        for feats, reduce, block, film in zip(vision_layers, self.reduce, self.blocks, self.films):
            x = reduce(feats) if x is None else x + reduce(feats)
            scale, shift = film(token_state).chunk(2, dim=-1)
            x = block(x * (1 + scale[:, None]) + shift[:, None])
        n, p, w = x.shape
        g = int(math.isqrt(p))
        sim = torch.einsum("nd,npd->np", self.query(token_state), self.key(x)) / math.sqrt(w)
        grid = torch.cat([x.transpose(1, 2).reshape(n, w, g, g), sim.view(n, 1, g, g)], dim=1)
        h = self.head[1](self.head[0](grid))
        scale, shift = self.film_head(token_state).chunk(2, dim=-1)
        h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        feats = F.interpolate(self.head[2:](h), size=size, mode="bilinear", align_corners=False)
        skip = self.pixels(F.interpolate(pixels, size=size, mode="bilinear", align_corners=False))
        return self.out(torch.cat([feats, skip], dim=1))[:, 0]
AI.MaskDecoder = FilmAll
adapter, steps = sys.argv[1], int(sys.argv[2])
s = run_seg_trial(adapter, steps)
print(json.dumps({"final": final_oiou(s), "step": s["train"]["step_time_s"]}))
