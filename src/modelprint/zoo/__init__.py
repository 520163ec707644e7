"""Zoos of positive and negative suspect models (FingerBench): spec (:mod:`.spec`) -> resumable
builder (:mod:`.build`) -> manifest (:mod:`.manifest`).

The package itself exports only the manifest, the format every reader of a zoo needs; the
spec and the builder sit above the fingerprint families (a zoo may mark its models) and are
imported from their modules: ``from modelprint.zoo.build import build_zoo``.
"""

from .manifest import MANIFEST, ZooError, ZooManifest, ZooRow, source_row

__all__ = ["MANIFEST", "ZooError", "ZooManifest", "ZooRow", "source_row"]
