"""modelprint: prove who owns a trained neural network.

The package's facade: importing it registers every architecture, fingerprint method,
attack and attachment, so models, fingerprints and zoo specs that name them resolve.

Example::

    import modelprint
    source = modelprint.load_model("owner.safetensors")
    fp = modelprint.create_method("c").generate(source, n=100, seed=0)
"""

from . import attacks, fingerprints, models  # noqa: F401  (register everything)
from ._version import __version__
from .attacks import create_attack
from .fingerprints import Fingerprint, create_method
from .models import create_model, load_model, save_model

__all__ = ["Fingerprint", "__version__", "create_attack", "create_method", "create_model", "load_model", "save_model"]
