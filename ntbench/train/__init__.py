"""The shared trainer and the single-trial runner."""
