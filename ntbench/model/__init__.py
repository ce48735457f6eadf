"""The all-in-token multimodal model: backbones, tasks, batching and task heads."""
