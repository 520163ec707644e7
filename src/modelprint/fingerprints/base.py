"""The fingerprint artifact and the base class every black-box method derives from."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .. import __version__
from .._io import atomic_write, check_readable, sha256_file
from ..data import Dataset
from ..errors import FingerprintFileError, ParameterError
from ..models import ModelprintModel
from ..registry import Registry

FINGERPRINT_SCHEMA_VERSION = 1


@dataclass
class Fingerprint:
    """Query inputs ``x`` (N, C, H, W) in [0, 1] and expected labels ``y`` (N,).

    ``extra`` holds further per-query tensors (e.g. the target labels); ``meta`` is
    JSON-able: method, parameters, source model sha256, dataset, creation time, version.
    """

    x: torch.Tensor
    y: torch.Tensor
    meta: dict[str, Any]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def save(self, path: str | os.PathLike) -> str:
        """Write ``path`` atomically and return its sha256: the owner's commitment."""
        tensors = {"x": self.x.contiguous(), "y": self.y.contiguous()}
        tensors.update({f"extra.{k}": v.contiguous() for k, v in self.extra.items()})
        # A single metadata key: safetensors writes several in hash-map order, which would change
        # the file's bytes, and so the commitment, from one save to the next.
        header = json.dumps({"schema_version": FINGERPRINT_SCHEMA_VERSION, "meta": self.meta}, sort_keys=True)
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"modelprint": header}))
        return sha256_file(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Fingerprint:
        p = check_readable(path, "fingerprint", FingerprintFileError)
        try:
            with safe_open(str(p), framework="pt") as f:
                header = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items())
        except (SafetensorError, OSError, ValueError) as e:
            raise FingerprintFileError(f"{p} is not a readable fingerprint file ({e})") from None
        try:
            payload = json.loads(header["modelprint"])
            version, meta = payload["schema_version"], payload["meta"]
        except (KeyError, TypeError, json.JSONDecodeError):
            raise FingerprintFileError(f"{p}: not a modelprint fingerprint (no readable 'modelprint' header)") from None
        if version != FINGERPRINT_SCHEMA_VERSION:
            raise FingerprintFileError(
                f"{p}: fingerprint schema {version!r}, this modelprint reads {FINGERPRINT_SCHEMA_VERSION}"
            )
        x, y = tensors.get("x"), tensors.get("y")
        if x is None or y is None or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise FingerprintFileError(f"{p}: expected tensors x (N,C,H,W) and y (N,)")
        extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
        return cls(x.float(), y.long(), meta, extra)


class FingerprintMethod:
    """Base of black-box methods: settings in the constructor, the model at call time.

    Subclasses are keyword-only dataclasses (their fields are the paper's parameters)
    and implement ``_generate``; :meth:`generate` validates, seeds and packages.
    """

    name: str = ""

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def generate(
        self,
        source: ModelprintModel,
        data: Dataset | None = None,
        *,
        n: int = 100,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = True,
    ) -> Fingerprint:
        """Make ``n`` query inputs and their expected labels from ``source``."""
        if not isinstance(source, ModelprintModel):
            raise ParameterError("source must be a ModelprintModel (use modelprint.models.load_model)")
        if n < 1:
            raise ParameterError(f"n must be at least 1, got {n}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError("device 'cuda' asked for but no CUDA device is available")
        model = source.to(device).eval()
        started = time.time()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x, y, extra, info = self._generate(model, data, n=n, seed=seed, device=device, progress=progress)
        source.cpu()
        created = os.environ.get("SOURCE_DATE_EPOCH")
        meta = {
            "method": self.name,
            "params": self.params(),
            "n": n,
            "seed": seed,
            "source_sha256": source.card.weights_sha256,
            "source_arch": source.card.arch,
            "dataset": source.card.dataset,
            "num_classes": source.card.num_classes,
            "input_shape": list(source.card.input_shape),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(created) if created else started)),
            "generation_seconds": None if created else round(time.time() - started, 3),
            "modelprint_version": __version__,
            **info,
        }
        return Fingerprint(
            x.detach().cpu().float(), y.detach().cpu().long(), meta, {k: v.detach().cpu() for k, v in extra.items()}
        )

    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        raise NotImplementedError  # abstract: every registered method overrides it


METHODS: Registry[FingerprintMethod] = Registry("fingerprint method")
register_method = METHODS.register

create_method = METHODS.create
