"""modelprint: prove who owns a trained neural network.

The package's facade: importing it registers every architecture, fingerprint method,
attack and attachment, so models, fingerprints and zoo specs that name them resolve.

Example::

    import modelprint
    fp = modelprint.fingerprint(my_net, data=(x, y), method="c", seed=0)
    fp = modelprint.calibrate(fp, references=independent_nets)
    print(modelprint.verify(fp, suspect_net).verdict)
"""

from . import attacks, fingerprints, models  # noqa: F401  (register everything)
from ._version import __version__
from .api import Tuning, calibrate, fingerprint, verify
from .attacks import create_attack
from .fingerprints import Fingerprint, create_method
from .models import create_model, load_model, save_model, trust_arch, wrap_model

__all__ = [
    "Fingerprint",
    "Tuning",
    "__version__",
    "calibrate",
    "create_attack",
    "create_method",
    "create_model",
    "fingerprint",
    "load_model",
    "save_model",
    "trust_arch",
    "verify",
    "wrap_model",
]
