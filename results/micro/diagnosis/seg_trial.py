"""The trial the diagnosis scripts share: the micro backbone, the two segmentation tasks only, batch 16,
seed 0, evaluated on 128 samples per task (teacher-forced oIoU) every ``eval_every`` steps."""
from ntbench.train.trainer import TrainConfig
from ntbench.train.trial import TrialConfig, run_trial

TASKS = ("referring", "reasoning")


def run_seg_trial(adapter: str, steps: int, eval_every: int = 300, **trial_options) -> dict:
    """Run it, print the oIoU at each evaluation, and return the trial summary."""
    cfg = TrialConfig(backbone="micro", adapter=adapter, eval_samples=128, eval_generated=False, **trial_options,
                      train=TrainConfig(steps=steps, batch_size=16, seed=0, warmup=steps // 10, eval_every=eval_every,
                                        tasks={t: 1.0 for t in TASKS}))
    summary = run_trial(cfg)
    for e in summary["train"]["evaluations"]:
        print("eval", e.get("step"), {t: round(e[t]["tf_paper_oIoU"], 3) for t in TASKS})
    return summary


def final_oiou(summary: dict) -> dict:
    return {t: summary["metrics"][t]["tf_paper_oIoU"] for t in TASKS}
