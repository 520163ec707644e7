"""Model modifications and extraction behind one registry. Each attack holds its settings;
the model (and data where needed) are call arguments; the result is a new model whose card
records the parent's sha256 and the recipe."""

from . import advtrain, evade, extraction, finetune, noise, prune, quantize, reparam  # noqa: F401  (register attacks)
from .base import ATTACKS, Attack, create_attack, register_attack

__all__ = ["ATTACKS", "Attack", "create_attack", "register_attack"]
