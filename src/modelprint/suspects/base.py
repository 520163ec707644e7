"""The suspect contract: one ``predict`` for every place a model can live.

A verifier asks a suspect one thing: the answers to a batch of query images. Every adapter
(an in-process torch module, a model file, TorchScript, ONNX, an HTTP prediction API) is a
subclass that implements ``_answer`` on a float32 numpy batch; :meth:`Suspect.predict` is
final and does what must never differ between them: it checks the queries (N, C, H, W in
[0, 1]), splits them into the adapter's batch size, counts what was spent, and checks every
answer (one row per query, labels in range, finite probabilities that sum to one). A broken
answer is a :class:`~modelprint.errors.SuspectError`, never evidence.

Each adapter declares what it returns: ``labels_only`` suspects (many commercial APIs) give
the top-1 label only; the others give class probabilities too. Methods that read scores
(MetaV) refuse a label-only suspect before it is queried.

Example::

    suspect = open_suspect("stolen.onnx")            # or a .safetensors file, a .pt, a URL
    suspect.predict(fp.x[:10]).labels                # tensor([3, 1, ...])
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from ..errors import ModelprintError, ParameterError, SuspectError
from ..registry import Registry

# Probabilities must sum to one within this (float32 softmax over 1000 classes stays far inside it).
PROBABILITY_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Answer:
    """A suspect's answers to N queries: ``labels`` (N,) int64 and, unless the suspect is
    label-only, ``probs`` (N, classes) float32 class probabilities."""

    labels: torch.Tensor
    probs: torch.Tensor | None


class Recorder(Protocol):
    """Told of every batch a suspect answered, after its answers passed the checks (a
    verification record keeps them: :mod:`modelprint.record`)."""

    def answered(self, x: np.ndarray, labels: np.ndarray, probs: np.ndarray | None, seconds: float) -> None: ...


class Suspect(ABC):
    """Base of every adapter. Subclasses set the attributes below in ``__init__`` and implement
    ``_answer(x: np.ndarray float32 (n, C, H, W)) -> (labels (n,), probs (n, K) or None)``.

    ``input_shape`` (C, H, W) and ``num_classes`` may be ``None`` when the suspect does not say
    (a foreign TorchScript file): the fingerprint's shape is then sent as it is, and the class
    count is read from the first answer and held to afterwards.
    """

    name: ClassVar[str] = ""
    recorder: Recorder | None = None  # set while a verification is recorded
    # File suffixes (lower case) that ``open_suspect`` reads as this kind, for the automatic choice.
    suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.labels_only: bool = False
        self.input_shape: tuple[int, int, int] | None = None
        self.num_classes: int | None = None
        self.identity: str = ""  # sha256 of what was verified (weights or file); the URL for an API
        self.location: str = ""
        self.max_batch: int = 256
        self.queries: int = 0  # queries answered
        self.queries_sent: int = 0  # queries sent, retries included (what a paid API charges)
        self.requests: int = 0

    # -- the contract -------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> Answer:
        """Answers to queries ``x`` (N, C, H, W), float in [0, 1]; checked, in query order."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise SuspectError(f"queries must be a tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
        if len(x) == 0:
            raise SuspectError("no queries to send: the fingerprint holds no inputs for this range")
        if self.input_shape is not None and tuple(x.shape[1:]) != tuple(self.input_shape):
            raise SuspectError(
                f"the queries are {_fmt(x.shape[1:])} (C x H x W) but the suspect takes {_fmt(self.input_shape)}"
            )
        xs = x.detach().cpu().float().numpy()
        if not np.isfinite(xs).all() or xs.min() < 0 or xs.max() > 1:
            raise SuspectError("queries must be finite and in [0, 1]: every modelprint model takes [0, 1] inputs")
        labels, probs = [], []
        for i in range(0, len(xs), self.max_batch):
            chunk = np.ascontiguousarray(xs[i : i + self.max_batch])
            started = time.perf_counter()
            try:
                lab, pr = self._checked(chunk, *self._answer(chunk))
            except ModelprintError:
                raise
            except (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError, RuntimeError) as e:
                # the suspect's doing, never the fingerprint's: said so here, not left to a caller's guess
                first = (str(e).strip().splitlines() or [""])[0][:160]
                raise SuspectError(f"the suspect's answer could not be used ({type(e).__name__}: {first})") from None
            if self.recorder is not None:
                self.recorder.answered(chunk, lab, None if self.labels_only else pr, time.perf_counter() - started)
            labels.append(lab)
            probs.append(pr)
            self.queries += len(chunk)
        out_probs = None if self.labels_only else torch.from_numpy(np.concatenate(probs))
        return Answer(torch.from_numpy(np.concatenate(labels)), out_probs)

    @abstractmethod
    def _answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (N,) and probabilities (N, classes), or None for a label-only suspect, of ``x``."""

    @property
    def model(self) -> Any:
        """The suspect's ``ModelprintModel`` when its weights can be read (white-box methods); else None."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the verdict records about the suspect: kind, where, what it answers, what it cost."""
        return {
            "type": self.name,
            "location": self.location,
            "identity": self.identity,
            "labels_only": self.labels_only,
            "queries": self.queries,
            "queries_sent": self.queries_sent,
            "requests": self.requests,
        }

    # -- checks every answer passes -----------------------------------------------------------
    def _checked(self, x: np.ndarray, labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(x)
        if not self.labels_only:
            probs = self._checked_probs(n, probs)
        if labels is None:
            if probs is None:
                raise SuspectError("the suspect answered neither labels nor probabilities")
            return probs.argmax(1).astype(np.int64), probs
        labels = _as_array(labels, "labels")
        if labels.shape != (n,):
            raise SuspectError(f"the suspect answered {_count(labels)} labels for {n} queries")
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.isfinite(labels)):
                raise SuspectError("the suspect's labels are not integers")
            if not np.all(labels == np.round(labels)):
                raise SuspectError("the suspect's labels are not integers")
        labels = labels.astype(np.int64)
        k = self.num_classes
        if labels.min() < 0 or (k is not None and labels.max() >= k):
            raise SuspectError(f"the suspect answered a label outside 0..{(k or 0) - 1}")
        return labels, probs

    def _checked_probs(self, n: int, probs: Any) -> np.ndarray:
        probs = _as_array(probs, "probabilities")
        if probs.ndim != 2 or probs.shape[0] != n:
            raise SuspectError(
                f"the suspect answered shape {tuple(probs.shape)} for {n} queries; expected ({n}, classes)"
            )
        if not np.issubdtype(probs.dtype, np.number) or np.issubdtype(probs.dtype, np.complexfloating):
            raise SuspectError("the suspect's probabilities are not real numbers")
        if self.num_classes is None:
            self.num_classes = int(probs.shape[1])
        if probs.shape[1] != self.num_classes:
            raise SuspectError(f"the suspect answered {probs.shape[1]} classes, expected {self.num_classes}")
        probs = probs.astype(np.float32)
        check_finite(probs)
        if probs.min() < 0 or np.abs(probs.sum(1) - 1).max() > PROBABILITY_SUM_TOLERANCE:
            raise SuspectError("the suspect's probabilities are not a distribution (negative or not summing to 1)")
        return probs


def check_finite(outputs: np.ndarray) -> None:
    """Refuse outputs (N, classes) with a NaN or inf in any row: a broken model gives no evidence."""
    bad = ~np.isfinite(outputs).all(1)
    if bad.any():
        raise SuspectError(
            f"the suspect's outputs are not finite (NaN or inf) for {int(bad.sum())} of {len(outputs)} queries; "
            "its weights are probably broken: no verdict can be drawn from it"
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32; non-finite logits stay non-finite so the check catches them."""
    z = logits.astype(np.float32)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


OUTPUTS = ("logits", "probabilities")


def logits_answer(outputs: np.ndarray, labels_only: bool, kind: str = "logits") -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (the argmax, as the model's own prediction) and probabilities from a graph's
    outputs (N, K): ``kind="logits"`` (softmax taken here) or ``"probabilities"`` (a graph that
    ends in a softmax: taken as they are, and checked to be distributions)."""
    if kind not in OUTPUTS:
        raise ParameterError(f"outputs must be one of {', '.join(OUTPUTS)}, got {kind!r}")
    if outputs.ndim != 2:
        raise SuspectError(f"the suspect answered shape {tuple(outputs.shape)}; expected (queries, classes)")
    check_finite(outputs)
    labels = outputs.argmax(1).astype(np.int64)
    if labels_only:
        return labels, None
    return labels, softmax(outputs) if kind == "logits" else outputs.astype(np.float32)


def _as_array(value: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise SuspectError(f"the suspect's {what} are not a rectangular array") from None


def _count(a: np.ndarray) -> str:
    return str(len(a)) if a.ndim >= 1 else "a scalar instead of"


def _fmt(shape: Any) -> str:
    return "x".join(str(int(s)) for s in shape)


SUSPECTS: Registry[Suspect] = Registry("suspect type")
register_suspect = SUSPECTS.register
