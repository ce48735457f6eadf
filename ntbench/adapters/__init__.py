"""Adapters: ``apply_adapter(model, name, **options)`` for neural tuning and the baselines."""
from ntbench.adapters.base import (ADAPTERS, Adapter, AdapterHandle, adapter_handle, apply_adapter,
                                   trainable_parameters)
from ntbench.adapters import builtin as _builtin  # noqa: F401  (registers the built-in adapters)
from ntbench.adapters.io import load_adapter, load_adapter_weights, read_adapter_record, save_adapter
from ntbench.adapters.neural import NeuralTuningLayer, neural_layers, sparse_vector_state
from ntbench.adapters.options import IA3Options, LoraOptions, NeuralOptions, PrefixOptions
from ntbench.adapters.sites import AdapterError, find_attention_sites

__all__ = ["ADAPTERS", "Adapter", "AdapterError", "AdapterHandle", "IA3Options", "LoraOptions",
           "NeuralOptions", "NeuralTuningLayer", "PrefixOptions", "adapter_handle", "apply_adapter",
           "find_attention_sites", "load_adapter", "load_adapter_weights", "neural_layers",
           "read_adapter_record", "save_adapter",
           "sparse_vector_state", "trainable_parameters"]
