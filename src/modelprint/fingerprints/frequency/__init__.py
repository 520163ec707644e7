"""The white-box frequency-domain fingerprint: the module (:mod:`.module`), marking
(:mod:`.marking`), the method (:mod:`.method`) and the attacks on the mark (:mod:`.attacks`).

Example::

    marked = inject(load_model("owner.safetensors"), owner_data, host="features.0", key=7)
    fp = create_method("frequency").generate(marked, n=16, seed=7)
"""

from . import attacks  # noqa: F401  (registers the attacks on the mark)
from .marking import (
    MARK_SETTINGS,
    OVERWRITES,
    inject,
    key_frequencies,
    neutral_mark,
    overwritten_weight,
    unique_invariant_frequencies,
)
from .method import FrequencyFingerprint, align_channels, per_frequency_similarity
from .module import (
    FrequencyBranch,
    HostedBlock,
    attach,
    branch_of,
    hostable_layers,
    invariant_mask,
    inverse_spectrum,
    lowpass_projection,
    passband,
    spectrum,
    spectrum_at,
)

__all__ = [
    "MARK_SETTINGS",
    "OVERWRITES",
    "FrequencyBranch",
    "FrequencyFingerprint",
    "HostedBlock",
    "align_channels",
    "attach",
    "branch_of",
    "hostable_layers",
    "inject",
    "invariant_mask",
    "inverse_spectrum",
    "key_frequencies",
    "lowpass_projection",
    "neutral_mark",
    "overwritten_weight",
    "passband",
    "per_frequency_similarity",
    "spectrum",
    "spectrum_at",
    "unique_invariant_frequencies",
]
