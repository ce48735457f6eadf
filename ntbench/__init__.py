"""ntbench: an ablation and benchmarking harness for neural tuning of frozen large models."""
__version__ = "0.1.0"
