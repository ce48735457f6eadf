"""The embedded default backbone, pretrained by ntbench on the micro world: the recipe that builds
it (:mod:`ntbench.micro.recipe`) and the cache that keeps it (:mod:`ntbench.micro.cache`)."""
from ntbench.micro.cache import (MANIFEST, cache_dir, cache_is_complete, ensure_micro, load_micro, micro_backbone,
                                 prepare, record_manifest)
from ntbench.micro.recipe import MICRO_VERSION, MicroSizes, PrepareReport, build

__all__ = ["MANIFEST", "MICRO_VERSION", "MicroSizes", "PrepareReport", "build", "cache_dir", "cache_is_complete",
           "ensure_micro", "load_micro", "micro_backbone", "prepare", "record_manifest"]
