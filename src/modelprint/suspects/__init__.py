"""Suspects: what a verifier can ask of a model it does not own.

Today one kind, an in-process :class:`~modelprint.models.ModelprintModel` (a model file);
every answer is checked before it becomes evidence: the right number of rows and classes,
finite values. A broken suspect is an error, never a verdict.
"""

from __future__ import annotations

import torch

from ..errors import SuspectError
from ..models import ModelprintModel


def labels_only(suspect: object) -> bool:
    """Whether a suspect answers with labels alone (a label-only API); model files give scores."""
    return bool(getattr(suspect, "labels_only", False))


def check_compatible(input_shape: tuple[int, ...], num_classes: int | None, suspect: ModelprintModel) -> None:
    """Refuse a suspect whose input shape or class count differs from the fingerprint's."""
    if not isinstance(suspect, ModelprintModel):
        raise SuspectError(f"a suspect must be a ModelprintModel (use modelprint.models.load_model), got {suspect!r}")
    if tuple(suspect.card.input_shape) != tuple(input_shape):
        raise SuspectError(
            f"the fingerprint's queries are {'x'.join(map(str, input_shape))} (C x H x W) but the suspect "
            f"takes {'x'.join(map(str, suspect.card.input_shape))}; verify a model of the same input shape"
        )
    if num_classes is not None and suspect.card.num_classes != num_classes:
        raise SuspectError(
            f"the fingerprint expects {num_classes} classes but the suspect has {suspect.card.num_classes}"
        )


@torch.no_grad()
def query_logits(suspect: ModelprintModel, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The suspect's outputs (N, classes) on ``x`` (N, C, H, W), checked: one finite row per query."""
    if len(x) == 0:
        raise SuspectError("no queries to send: the fingerprint holds no inputs for this range")
    was_training = suspect.training
    suspect.eval()
    device = next(suspect.parameters()).device
    try:
        out = torch.cat([suspect(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])
    finally:
        suspect.train(was_training)
    classes = suspect.card.num_classes
    if out.ndim != 2 or out.shape != (len(x), classes):
        raise SuspectError(
            f"the suspect answered shape {tuple(out.shape)} for {len(x)} queries; expected ({len(x)}, {classes})"
        )
    bad = ~torch.isfinite(out).all(1)
    if bad.any():
        raise SuspectError(
            f"the suspect's outputs are not finite (NaN or inf) for {int(bad.sum())} of {len(x)} queries; "
            "its weights are probably broken: no verdict can be drawn from it"
        )
    return out


def query_labels(suspect: ModelprintModel, x: torch.Tensor) -> torch.Tensor:
    """Top-1 labels (N,) from checked outputs."""
    return query_logits(suspect, x).argmax(1)
