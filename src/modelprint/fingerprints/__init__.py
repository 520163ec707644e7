"""Fingerprinting methods behind one registry, and the fingerprint artifact."""

from . import characteristic  # noqa: F401  (registers c, rc, rcgm, ltrc, ltrcgm)
from .base import METHODS, Evidence, Fingerprint, FingerprintMethod, create_method, method_of, register_method

__all__ = ["METHODS", "Evidence", "Fingerprint", "FingerprintMethod", "create_method", "method_of", "register_method"]
