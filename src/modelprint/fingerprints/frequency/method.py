"""The ``frequency`` method: read the key's spectra from a marked model, compare them with a
suspect's after channel alignment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ...data import Dataset
from ...errors import ParameterError
from ...models import ModelprintModel
from ...null import KeyNull, Null
from ..base import Evidence, Fingerprint, FingerprintMethod, check_prepare_settings, register_method
from .marking import MARK_SETTINGS, _key_filters, inject, key_frequencies, neutral_mark
from .module import branch_of, hostable_layers, spectrum_at


def _unit(z: torch.Tensor) -> torch.Tensor:
    return z / z.abs().pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)


def align_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``b`` (F, O, C) complex with its output and input channels permuted to best match ``a``
    (Hungarian matching, scipy): input channels on permutation-invariant magnitude profiles
    first, then output channels on complex cosine. Undoes a channel-permutation attack."""

    def profile(z: torch.Tensor) -> torch.Tensor:  # per input channel, sorted over output channels
        m = z.abs().permute(2, 0, 1).sort(-1).values.flatten(1)
        return m / m.norm(dim=1, keepdim=True).clamp_min(1e-12)

    cost = torch.cdist(profile(a).double(), profile(b).double())
    _, cols = linear_sum_assignment(cost.numpy())
    b = b[:, :, torch.as_tensor(cols)]
    fa, fb = _unit(a.permute(1, 0, 2).flatten(1)), _unit(b.permute(1, 0, 2).flatten(1))
    _, cols = linear_sum_assignment(-(fa @ fb.conj().T).real.numpy())
    return b[:, torch.as_tensor(cols), :]


def per_frequency_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(F,) mean over filters o of Re<a[f, o], b[f, o]> / (|a[f, o]| |b[f, o]|): scale cancels."""
    return (_unit(a) * _unit(b).conj()).sum(-1).real.mean(-1)


# Simulated keys count up from here: far from the seeds people give their own keys.
SIMULATED_KEY_SEED = 1_000_000


# The white-box mark an owner trains into a model (a zoo spec's ``mark`` table, the demo).
MARK_METHOD = "frequency"


@register_method(MARK_METHOD)
@dataclass(kw_only=True)
class FrequencyFingerprint(FingerprintMethod):
    """White-box fingerprint: the key's spectra at S' in a marked model's frequency module.

    ``generate`` reads the mark from a model :func:`inject` made (``n`` = |S'|, at most the
    invariant frequencies up to conjugation; the ``seed`` is the owner's key). Evidence is
    the per-frequency similarity after channel alignment; the statistic, the fingerprint
    score, is the fraction above ``tau``. A suspect without the module gives similarity 0.

    The null is :class:`~modelprint.null.KeyNull`: how often a frequency of an independent
    owner's key clears ``tau``, from ``simulated_keys`` keys drawn as :func:`neutral_mark`
    draws them (their components are what any independent mark leaves), so the verdict does
    not rest on a handful of reference models that all score 0.

    Parameters: tau (float): similarity threshold per frequency, 0.98;
    simulated_keys (int): independent keys the null is fitted on, 2000.

    Example::

        marked = inject(load_model("owner.safetensors"), owner_data, host="features.0", key=7)
        fp = create_method("frequency").generate(marked, n=16, seed=7)
    """

    paper: ClassVar[str] = '"Towards the Resistance of Neural Network Fingerprinting to Fine-tuning", NeurIPS 2025'

    tau: float = 0.98
    simulated_keys: int = 2000
    evidence_kind: ClassVar[str] = "components"
    statistic_name: ClassVar[str] = "fingerprint_score"
    null_family: ClassVar[str] = "keys"
    prepare_settings: ClassVar[tuple[str, ...]] = MARK_SETTINGS
    seed_name: ClassVar[str] = "key"

    def __post_init__(self) -> None:
        if not -1 <= self.tau <= 1:
            raise ParameterError(f"tau must be in [-1, 1], got {self.tau}")
        if self.simulated_keys < 100:
            raise ParameterError(f"simulated_keys must be at least 100, got {self.simulated_keys}")

    def items(self, fp: Fingerprint) -> int:
        return len(fp.extra["freqs"])

    def needs_preparation(self, source: ModelprintModel) -> bool:
        """An unmarked model is marked first; a marked one is read as it is."""
        return "frequency" not in source.card.arch_args

    def prepare(
        self,
        source: ModelprintModel,
        owner: Dataset,
        *,
        key: int,
        test: Dataset | None = None,
        progress: bool = True,
        **settings: Any,
    ) -> ModelprintModel:
        """The source with the key's mark trained in beside ``settings["host"]`` (:func:`inject`)."""
        check_prepare_settings(self, settings)
        if settings.get("host") is None:
            raise ParameterError(
                f"the frequency method marks a layer of the model: give `host`, the layer's name "
                f"(modelprint list --hosts {source.card.arch} shows the layers that can host the module)",
                params=("host",),
            )
        return inject(source, owner, key=key, test=test, progress=progress, **settings)

    def summary(self, fp: Fingerprint) -> str:
        return f"{fp.meta['frequencies']} frequencies of the module beside {fp.meta['host']}"

    def statistic(self, values: np.ndarray) -> float:
        return float(np.mean(np.asarray(values) > self.tau))

    def independent_keys(self, fp: Fingerprint) -> np.ndarray:
        """(simulated_keys, frequencies): the per-frequency similarity to ``fp`` of independent
        owners' keys (seeds from :data:`SIMULATED_KEY_SEED`, never the fingerprint's own)."""
        a = torch.complex(fp.extra["spectrum_real"].double(), fp.extra["spectrum_imag"].double())
        freqs, k = fp.extra["freqs"].tolist(), int(fp.meta["k"])
        shape = torch.Size((a.shape[1], a.shape[2], k, k))
        last = SIMULATED_KEY_SEED + self.simulated_keys + 1
        keys = (s for s in range(SIMULATED_KEY_SEED, last) if s != fp.meta.get("seed"))
        rows = []
        for key, _ in zip(keys, range(self.simulated_keys)):
            b = spectrum_at(_key_filters(shape, torch.Generator().manual_seed(key)), freqs)
            rows.append(per_frequency_similarity(a, align_channels(a, b)).numpy())
        return np.stack(rows)

    def fit_null(self, fp: Fingerprint, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        return KeyNull.fit(evidence, statistics, simulated=self.independent_keys(fp), tau=self.tau)

    def reference_model(self, fp: Fingerprint, model: Any, seed: int) -> Any:
        """An independent model marked by an independent owner: an output-neutral module with key
        ``seed`` (never the fingerprint's own) beside the same host, where the model has it
        (:func:`neutral_mark`); an unmarked model of another architecture stays as it is."""
        host, k, cutoff = fp.meta["host"], int(fp.meta["k"]), int(fp.meta["cutoff"])
        if "frequency" in model.card.arch_args:
            return model
        if host not in hostable_layers(model.net, tuple(model.card.input_shape), k):
            return model
        key = seed if seed != fp.meta.get("seed") else seed + 1
        return neutral_mark(model, host, key, k=k, cutoff=cutoff)

    def _generate(
        self, model: Any, data: Any, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        settings = model.card.arch_args.get("frequency")
        if not settings:
            raise ParameterError(
                "this model carries no frequency module: mark it first with "
                "`modelprint fingerprint create MODEL --method frequency --host LAYER --key KEY` "
                "(which trains the mark in; `modelprint list --hosts ARCH` shows the layers)"
            )
        k, cutoff = int(settings.get("k", 8)), int(settings.get("cutoff", 1))
        freqs = key_frequencies(seed, k, cutoff, n)
        at = spectrum_at(branch_of(model, settings["host"]).weight, freqs)
        empty = torch.zeros((0, *model.card.input_shape))
        extra = {"freqs": torch.tensor(freqs), "spectrum_real": at.real.float(), "spectrum_imag": at.imag.float()}
        # num_classes None: weights are compared, not outputs, so a suspect's class count is no obstacle.
        info = {"host": settings["host"], "k": k, "cutoff": cutoff, "frequencies": len(freqs), "num_classes": None}
        return empty, torch.zeros(0, dtype=torch.long), extra, info

    def _evidence(self, fp: Fingerprint, suspect: Any, start: int, stop: int) -> Evidence:
        freqs = fp.extra["freqs"].tolist()
        a = torch.complex(fp.extra["spectrum_real"].double(), fp.extra["spectrum_imag"].double())
        branch = branch_of(suspect, fp.meta["host"])
        if branch is None or tuple(branch.weight.shape[:2]) != tuple(a.shape[1:]) or branch.k != fp.meta["k"]:
            return Evidence(np.zeros(stop - start), "components", 0)  # nothing of the mark to compare
        b = spectrum_at(branch.weight, freqs)
        sims = per_frequency_similarity(a, align_channels(a, b))
        return Evidence(sims[start:stop].numpy(), "components", 0)
