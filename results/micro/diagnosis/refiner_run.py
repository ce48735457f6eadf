"""The shipped pixel refiner (TrialConfig.pixel_refiner) on the micro backbone, segmentation tasks only.

    NTBENCH_HOME=... python refiner_run.py ADAPTER STEPS [pixel_refiner: 0/1]
"""
import json
import sys

from ntbench.train.trainer import TrainConfig
from ntbench.train.trial import TrialConfig, run_trial

adapter, steps, refiner = sys.argv[1], int(sys.argv[2]), bool(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
cfg = TrialConfig(backbone="micro", adapter=adapter, pixel_refiner=refiner, eval_samples=128, eval_generated=False,
                  train=TrainConfig(steps=steps, batch_size=16, seed=0, warmup=steps // 10, eval_every=400,
                                    tasks={"referring": 1.0, "reasoning": 1.0}))
s = run_trial(cfg)
for e in s["train"]["evaluations"]:
    print("eval", e.get("step"), {t: round(e[t]["tf_paper_oIoU"], 3) for t in ("referring", "reasoning")})
print(json.dumps({"adapter": adapter, "steps": steps, "pixel_refiner": refiner,
                  "referring_oIoU": s["metrics"]["referring"]["tf_paper_oIoU"],
                  "reasoning_oIoU": s["metrics"]["reasoning"]["tf_paper_oIoU"],
                  "step_time_s": s["train"]["step_time_s"], "git": s["provenance"]["git_commit"],
                  "dirty": s["provenance"]["git_dirty"]}))
