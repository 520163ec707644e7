"""Fingerprinting methods behind one registry, and the fingerprint artifact."""

from . import characteristic  # noqa: F401  (registers c, rc, rcgm, ltrc, ltrcgm)
from .base import METHODS, Fingerprint, FingerprintMethod, create_method, register_method

__all__ = ["METHODS", "Fingerprint", "FingerprintMethod", "create_method", "register_method"]
