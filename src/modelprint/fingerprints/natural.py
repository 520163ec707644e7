"""Natural queries: the owner's held-out images, labelled with the source's own answers.

On most natural images every good model gives the true label, so their agreement with the
source says nothing of lineage (independent models agree on about 0.95 of them). What does is
the small share on which the source answers as few independent models do: a copy of the source
keeps those idiosyncratic answers, and a student distilled from it inherits some of them. This
family draws the candidates; reference screening (``fingerprint create --references DIR
--screen K``, :mod:`modelprint.screening`) keeps the K on which the selection half of the
owner's reference models disagree with the source most, and the other half fits the null.

The queries are unmodified images of the data set, so a thief's query detector sees clean
inputs. The candidates come from the data set's held-out images (its test and tune splits),
never from the owner's training half: every same-data reference model learnt those labels.

Parameters: split_seed (int): the split of the data set the images come from, 0.

Example::

    candidates = create_method("natural").generate(source, n=300, seed=0)
    fp = screened_calibration(candidates, reference_models("owner-refs", candidates), keep=100)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..data import Dataset, load_splits
from ..errors import ParameterError
from ..models import ModelprintModel
from .base import FingerprintMethod, register_method


@register_method("natural")
@dataclass(kw_only=True)
class NaturalQueries(FingerprintMethod):
    """Held-out natural images and the source's labels for them; meant to be screened against
    the owner's reference models (``--screen K``), which keeps the images whose source label is
    rare among independent models.

    Arguments:
        split_seed (int): the data set's split the held-out images come from, 0.

    Shape: queries (n, C, H, W) in [0, 1], labels (n,): the source's answers.

    Example::

        fp = create_method("natural").generate(source, n=300, seed=0)
    """

    paper: ClassVar[str] = (
        "no paper: modelprint's natural-query family (owner images the source answers unlike independent models)"
    )

    split_seed: int = 0

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        spec = data.spec if data is not None else model.card.dataset
        if not spec:
            raise ParameterError("the model card names no data set: pass the owner's data")
        splits = load_splits(spec, split_seed=self.split_seed)
        pool = torch.cat([splits.test.x, splits.tune.x])
        if len(pool) < n:
            raise ParameterError(f"{spec} holds {len(pool)} held-out images, fewer than the {n} queries asked for")
        idx = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]
        x = pool[idx]
        with torch.no_grad():
            y = model.predict(x.to(device)).cpu()
        return x, y, {}, {"held_out_pool": len(pool)}

    def summary(self, fp: Any) -> str:
        screened = fp.meta.get("screening")
        if screened:
            return (
                f"{len(fp)} natural images of {screened['candidates']}, the ones the selection models "
                f"follow least ({screened['kept_agreement']:.2f})"
            )
        unscreened = "unscreened: independent models agree on most; screen them on reference models"
        return f"{len(fp)} natural images ({unscreened})"
