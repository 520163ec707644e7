"""Fingerprinting methods behind one registry, and the fingerprint artifact."""

from . import baselines, characteristic, frequency, ipguard, metafinger, metav, naturalfinger, sensitive  # noqa: F401  (register every method)
from .base import (
    METHODS,
    Evidence,
    Fingerprint,
    FingerprintMethod,
    ablation_variants,
    create_method,
    method_of,
    register_method,
)

__all__ = [
    "METHODS",
    "Evidence",
    "ablation_variants",
    "Fingerprint",
    "FingerprintMethod",
    "create_method",
    "method_of",
    "register_method",
]
