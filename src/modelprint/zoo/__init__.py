"""Zoos of positive and negative suspect models (FingerBench): spec -> resumable builder -> manifest."""

from .build import build_zoo, load_spec, verify_zoo
from .manifest import MANIFEST, ZooError, ZooManifest, source_row
from .spec import ModelPlan, SpecError, ZooSpec, builtin_specs, parse_spec_text

__all__ = [
    "MANIFEST",
    "ModelPlan",
    "SpecError",
    "ZooError",
    "ZooManifest",
    "ZooSpec",
    "build_zoo",
    "builtin_specs",
    "load_spec",
    "parse_spec_text",
    "source_row",
    "verify_zoo",
]
