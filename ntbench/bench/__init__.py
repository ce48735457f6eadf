"""Speed benchmarks: a training step per adapter (interleaved, shared weights), one whole trial phase by
phase, and paper-scale latency and smoke runs with random weights."""
from ntbench.bench.step import ARMS, DEFAULT_ARMS, StepBenchConfig, profile_step, step_benchmark
from ntbench.bench.trial import TRIAL_PARTS, trial_benchmark

__all__ = ["ARMS", "DEFAULT_ARMS", "StepBenchConfig", "TRIAL_PARTS", "profile_step", "step_benchmark",
           "trial_benchmark"]
