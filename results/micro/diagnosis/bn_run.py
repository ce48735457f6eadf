"""The mask decoder reading a per-dimension standardised state (BatchNorm1d, no affine), optionally one
position before the tag; v3 backbone, segmentation tasks only (diagnosis.md section 6):

    NTBENCH_HOME=... python bn_run.py ADAPTER STEPS [before: 0/1]
"""
import sys, json, torch
from torch import nn
import ntbench.model.allintoken as AI
import ntbench.model.heads as H
from seg_trial import final_oiou, run_seg_trial

class BnDecoder(H.MaskDecoder):
    def __init__(self, llm_width, *a, **k):
        super().__init__(llm_width, *a, **k)
        self.norm = nn.BatchNorm1d(llm_width, affine=False)
    def forward(self, token_state, *a, **k):
        return super().forward(self.norm(token_state), *a, **k)
AI.MaskDecoder = BnDecoder
adapter, steps = sys.argv[1], int(sys.argv[2])
if len(sys.argv) > 3 and sys.argv[3] == "1":
    old_run = AI.AllInTokenModel.run_llm
    def run_llm(self, batch, vision):
        logits, hidden, off = old_run(self, batch, vision)
        return logits, torch.cat([hidden[:, :1], hidden[:, :-1]], 1), off
    AI.AllInTokenModel.run_llm = run_llm
s = run_seg_trial(adapter, steps)
print(json.dumps({"final": final_oiou(s), "step": s["train"]["step_time_s"]}))
