"""One real trial (micro backbone, batch 16, seed 0, 128 eval samples per task, teacher-forced oIoU):

    NTBENCH_HOME=... python real_seg_trial.py ADAPTER STEPS LR [TASK:RATIO,...] [TRIAL_OPTIONS_DICT]
    e.g. python real_seg_trial.py neural 900 3e-3 referring:1,reasoning:1 "{'lambda_bce': 1.0}"
See diagnosis.md section 7."""
import sys, time
from ntbench.train.trainer import TrainConfig
from ntbench.train.trial import TrialConfig, run_trial
adapter, steps, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
tasks = dict(kv.split(":") for kv in sys.argv[4].split(",")) if len(sys.argv) > 4 else {"referring": 1, "reasoning": 1}
extra = eval(sys.argv[5]) if len(sys.argv) > 5 else {}
t0 = time.time()
cfg = TrialConfig(backbone="micro", adapter=adapter, eval_samples=128, eval_generated=False, **extra,
                  train=TrainConfig(steps=steps, batch_size=16, seed=0, warmup=steps // 10, lr=lr, eval_every=steps // 2,
                                    tasks={k: float(v) for k, v in tasks.items()}))
s = run_trial(cfg)
for e in s["train"]["evaluations"]:
    print("eval", e.get("step"), {t: round(e[t]["tf_paper_oIoU"], 3) for t in ("referring", "reasoning") if t in e})
print("FINAL", sys.argv[1:], {t: round(s["metrics"][t]["tf_paper_oIoU"], 3) for t in ("referring", "reasoning")},
      f"{time.time() - t0:.0f}s", flush=True)
