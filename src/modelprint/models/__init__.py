"""Models: architecture registry, the [0, 1]-input wrapper and model files.

A model file is ``NAME.safetensors`` (weights) plus ``NAME.json`` (its card). Every
model takes inputs in [0, 1]; normalisation lives inside it, so fingerprints, attacks
and exported graphs all speak the same input space.
"""

from . import cnn, densenet, evasive, mobilenet, resnet, vgg, vit  # noqa: F401  (register architectures)
from .architectures import ARCHITECTURES, create_arch, find_arch, register_arch
from .custom import is_import_path, trust_arch
from .files import (
    CARD_SCHEMA_VERSION,
    ModelBytes,
    ModelCard,
    ModelprintModel,
    create_model,
    load_model,
    model_from_bytes,
    model_to_bytes,
    read_model_bytes,
    save_model,
    weights_digest,
    wrap_model,
    write_model_bytes,
)
from .importing import import_model, read_state_dict

__all__ = [
    "ARCHITECTURES",
    "CARD_SCHEMA_VERSION",
    "ModelBytes",
    "ModelCard",
    "ModelprintModel",
    "create_arch",
    "create_model",
    "find_arch",
    "import_model",
    "is_import_path",
    "load_model",
    "model_from_bytes",
    "model_to_bytes",
    "read_model_bytes",
    "read_state_dict",
    "register_arch",
    "save_model",
    "trust_arch",
    "weights_digest",
    "wrap_model",
    "write_model_bytes",
]
