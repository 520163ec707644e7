"""In-process suspects: a torch module, or a modelprint model file loaded into one.

``TorchSuspect`` answers with the module's softmax and its argmax labels; it is the only
kind whose weights a white-box method can read (:attr:`model`). A ``ModelprintModel``
brings its input shape and classes from its card; any other ``nn.Module`` that takes
[0, 1] images and returns logits (N, classes) can be wrapped with the shape given.

Example::

    TorchSuspect(load_model("suspect.safetensors")).predict(fp.x).labels
    ModelFileSuspect("suspect.safetensors")           # the same, from the path
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import SuspectError
from ..models import ModelprintModel, load_model, weights_digest
from ..models.files import logits_of
from .base import Suspect, logits_answer, register_suspect


@register_suspect("torch")
class TorchSuspect(Suspect):
    """An ``nn.Module`` in this process: ``module`` (N, C, H, W) in [0, 1] -> logits (N, classes).

    ``labels_only=True`` hides the probabilities, as a label-only API would (for tests and
    for studying what a verifier learns from labels alone).

    Example::

        verify(fp, TorchSuspect(my_net, labels_only=True)).verdict
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        input_shape: tuple[int, int, int] | None = None,
        num_classes: int | None = None,
        labels_only: bool = False,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise SuspectError(f"a torch suspect must be an nn.Module, got {type(module).__name__}")
        self.module = module
        card = getattr(module, "card", None)
        self.input_shape = tuple(card.input_shape) if card is not None else input_shape
        self.num_classes = card.num_classes if card is not None else num_classes
        self.labels_only = labels_only or bool(getattr(module, "labels_only", False))
        self.max_batch = batch_size
        self.identity = weights_digest(module) if isinstance(module, ModelprintModel) else ""
        self.location = f"in-process {type(module).__name__}"

    @property
    def model(self) -> Any:
        return self.module if isinstance(self.module, ModelprintModel) else None

    @torch.no_grad()
    def _answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        was_training = self.module.training
        self.module.eval()
        try:
            device = next(self.module.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        try:
            logits = logits_of(self.module(torch.from_numpy(x).to(device))).float().cpu()
        finally:
            self.module.train(was_training)
        self.requests += 1
        self.queries_sent += len(x)
        if logits.ndim != 2 or len(logits) != len(x):
            raise SuspectError(f"the suspect answered shape {tuple(logits.shape)} for {len(x)} queries")
        return logits_answer(logits.numpy(), self.labels_only)


@register_suspect("model")
class ModelFileSuspect(TorchSuspect):
    """A modelprint model file (``NAME.safetensors`` + ``NAME.json``), loaded without unpickling.

    Example::

        verify(fp, ModelFileSuspect("suspect.safetensors")).verdict
    """

    suffixes = (".safetensors", ".json")

    def __init__(
        self, path: str | os.PathLike, *, labels_only: bool = False, batch_size: int = 256, device: str = "cpu"
    ) -> None:
        super().__init__(load_model(path, device=device), labels_only=labels_only, batch_size=batch_size)
        self.location = str(path)
