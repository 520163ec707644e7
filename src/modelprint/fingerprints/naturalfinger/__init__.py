"""NaturalFinger: natural fingerprints drawn from a GAN the owner trains (:mod:`.gan`), optimised
to separate the owner's models from independent ones (:mod:`.method`)."""

from . import gan
from .method import NaturalFinger

__all__ = ["NaturalFinger", "gan"]
