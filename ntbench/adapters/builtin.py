"""The built-in adapters: neural tuning, the PEFT baselines (LoRA, prefix, IA3), frozen and full."""
from __future__ import annotations

from torch import nn

from ntbench.adapters.base import ADAPTERS, Adapter
from ntbench.adapters.neural import attach_neural
from ntbench.adapters.options import IA3Options, LoraOptions, NeuralOptions, PrefixOptions
from ntbench.adapters.sites import AdapterError, find_attention_sites


@ADAPTERS.register("neural", description="neural tuning (paper §3.2): sparse task network on q/k/v")
class NeuralAdapter(Adapter):
    options_model = NeuralOptions

    def attach(self, model, opts):
        layers = attach_neural(model, opts)
        return model, [p for layer in layers for p in layer.parameters()]


def _projection_paths(model: nn.Module, targets: str, module_filter: str | None, method: str) -> list[str]:
    paths = []
    for site in find_attention_sites(model, module_filter):
        if site.fused and targets != "qkv":
            raise AdapterError(f"option 'targets' = {targets!r}: {method} cannot adapt part of the fused "
                               f"projection {site.path}.{site.fused}; allowed values for this model: 'qkv'")
        paths += site.projection_paths(targets)
    return paths


def _new_trainable(model: nn.Module, before: set[int]) -> list[nn.Parameter]:
    """Parameters PEFT created (all of the model's were frozen before injection)."""
    return [p for p in model.parameters() if id(p) not in before]


def _inject(model: nn.Module, config) -> tuple[nn.Module, list[nn.Parameter]]:
    """Inject a PEFT tuner into ``model`` in place; its parameters are the ones PEFT added."""
    from peft import inject_adapter_in_model

    before = {id(p) for p in model.parameters()}
    model = inject_adapter_in_model(config, model)
    return model, _new_trainable(model, before)


@ADAPTERS.register("lora", description="LoRA (PEFT): low-rank updates of the targeted projections")
class LoraAdapter(Adapter):
    options_model = LoraOptions

    def attach(self, model, opts):
        from peft import LoraConfig

        paths = _projection_paths(model, opts.targets, opts.module_filter, "LoRA")
        return _inject(model, LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                                         target_modules=paths, bias="none"))


@ADAPTERS.register("ia3", description="IA3 (PEFT): learned rescaling of k, v and feed-forward outputs")
class IA3Adapter(Adapter):
    options_model = IA3Options

    def attach(self, model, opts):
        from peft import IA3Config

        paths = _projection_paths(model, opts.targets, opts.module_filter, "IA3")
        ff = []
        if opts.feedforward:
            ff = [n for n, m in model.named_modules()
                  if n.rsplit(".", 1)[-1] == opts.feedforward and hasattr(m, "in_features")]
            if not ff:
                raise AdapterError(f"option 'feedforward' = {opts.feedforward!r}: no such Linear module in "
                                   f"{type(model).__name__}; name this model's feed-forward output "
                                   "projection (e.g. 'dense_4h_to_h' for GPT-NeoX) or set it to None")
        return _inject(model, IA3Config(target_modules=paths + ff, feedforward_modules=ff))


@ADAPTERS.register("prefix", description="prefix tuning (PEFT): trainable virtual key/value tokens")
class PrefixAdapter(Adapter):
    options_model = PrefixOptions
    # Under HF gradient checkpointing the layers run without the virtual key/value cache while the
    # attention mask still counts the virtual tokens: "size of tensor a (73) must match ... (89)".
    supports_gradient_checkpointing = False
    supports_kv_cache = False

    def attach(self, model, opts):
        from peft import PrefixTuningConfig, get_peft_model

        find_attention_sites(model)  # same clear error as the others on a model without attention
        before = {id(p) for p in model.parameters()}
        config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=opts.num_virtual_tokens)
        peft_model = get_peft_model(model, config)
        return peft_model, _new_trainable(peft_model, before)


@ADAPTERS.register("frozen", description="nothing tuned in the LLM (heads and new token rows only)")
class FrozenAdapter(Adapter):
    def attach(self, model, opts):
        return model, []


@ADAPTERS.register("full", description="full fine-tuning: every LLM parameter trains")
class FullAdapter(Adapter):
    def attach(self, model, opts):
        return model, list(model.parameters())
