"""The shipped pixel refiner (TrialConfig.pixel_refiner) on the micro backbone, segmentation tasks only.

    NTBENCH_HOME=... python refiner_run.py ADAPTER STEPS [pixel_refiner: 0/1]
"""
import json
import sys

from seg_trial import final_oiou, run_seg_trial

adapter, steps, refiner = sys.argv[1], int(sys.argv[2]), bool(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
s = run_seg_trial(adapter, steps, eval_every=400, pixel_refiner=refiner)
print(json.dumps({"adapter": adapter, "steps": steps, "pixel_refiner": refiner,
                  **{f"{t}_oIoU": v for t, v in final_oiou(s).items()},
                  "step_time_s": s["train"]["step_time_s"], "git": s["provenance"]["git_commit"],
                  "dirty": s["provenance"]["git_dirty"]}))
