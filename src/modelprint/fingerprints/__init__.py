"""Fingerprinting methods behind one registry, and the fingerprint artifact.

A family that needs one file is a module here; one that needs more is a folder
(``frequency/``, ``naturalfinger/``). What the learnt methods share is in :mod:`.learnt`.
"""

from . import (  # noqa: F401  (register every method)
    baselines,
    characteristic,
    dataset_inference,
    frequency,  # noqa: F401
    ipguard,
    metafinger,
    metav,
    natural,
    sac,
    sensitive,
)
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
from .characteristic import BASELINE_METHOD, PAPER_METHODS, PROPOSED_METHOD
from .frequency.method import MARK_METHOD
from .naturalfinger import gan  # the GAN NaturalFinger draws from, for `modelprint gan train`

__all__ = [
    "BASELINE_METHOD",
    "MARK_METHOD",
    "METHODS",
    "PAPER_METHODS",
    "PROPOSED_METHOD",
    "Evidence",
    "ablation_variants",
    "Fingerprint",
    "FingerprintMethod",
    "create_method",
    "gan",
    "method_of",
    "register_method",
]
