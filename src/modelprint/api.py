"""Three calls from your own ``nn.Module`` to a verdict: fingerprint, calibrate, verify.

Every call takes a plain ``nn.Module`` (given ``(x - mean) / std`` of images in [0, 1],
returning logits), a modelprint model, or a model file's path; the functions underneath
(:mod:`modelprint.fingerprints`, :mod:`modelprint.calibrate`, :mod:`modelprint.verify`)
are there when you need more control.

Example::

    fp = modelprint.fingerprint(net, data=(x_owner, y_owner), method="c", seed=0)
    fp = modelprint.calibrate(fp, references=[indep_1, indep_2, ...])   # independent models
    print(modelprint.verify(fp, suspect_net).verdict)                     # match / no-match / inconclusive
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .calibrate import calibrate as _calibrate
from .data import Dataset, load_splits
from .errors import ParameterError
from .fingerprints import Fingerprint, create_method
from .models import ModelprintModel, load_model, wrap_model
from .suspects import Suspect, open_suspect
from .verify import Verification
from .verify import verify as _verify

DataLike = str | Dataset | tuple[torch.Tensor, torch.Tensor]
ModelLike = nn.Module | str | os.PathLike


def as_dataset(data: DataLike, *, split: str = "owner") -> Dataset:
    """A data set spec (``"folder:PATH"``, ``"digits:16"``, ...; its ``split``), a
    :class:`~modelprint.data.Dataset`, or tensors ``(x, y)``: x (N, C, H, W) in [0, 1], y (N,)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, str):
        return getattr(load_splits(data), split)
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = (torch.as_tensor(t) for t in data)
        if x.ndim != 4 or not torch.is_floating_point(x):
            raise ParameterError(f"data x must be float images (N, C, H, W) in [0, 1], got {tuple(x.shape)}")
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise ParameterError("data x must lie in [0, 1]; scale the images (the model normalises them itself)")
        classes = tuple(str(i) for i in range(int(y.max()) + 1)) if len(y) else ()
        return Dataset(x.float(), y.long(), classes, "tensors", split)
    raise ParameterError(f"data must be a data set spec, a Dataset or (x, y) tensors, got {type(data).__name__}")


def as_model(model: ModelLike, *, input_shape: Sequence[int] | None = None, **card: Any) -> ModelprintModel:
    """A modelprint model from a model file path, a modelprint model, or your ``nn.Module``
    (then ``input_shape`` is required; ``card`` goes to :func:`~modelprint.models.wrap_model`)."""
    if isinstance(model, ModelprintModel):
        return model
    if isinstance(model, str | os.PathLike):
        return load_model(model)
    if isinstance(model, nn.Module):
        if input_shape is None:
            raise ParameterError("give input_shape=(C, H, W) for a plain nn.Module (or pass data to read it from)")
        return wrap_model(model, input_shape=tuple(input_shape), **card)  # type: ignore[arg-type]
    raise ParameterError(f"expected an nn.Module or a model file path, got {type(model).__name__}")


def fingerprint(
    model: ModelLike,
    data: DataLike | None = None,
    *,
    method: str = "c",
    n: int = 100,
    seed: int | None = None,
    input_shape: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str = "cpu",
    progress: bool = False,
    **params: Any,
) -> Fingerprint:
    """A fingerprint of ``model`` by ``method`` (its settings as ``params``) with ``n`` items.

    ``data`` is the owner's data (the methods that start from real images need it unless the
    model file's card names a data set); its image shape is the input shape of a plain module.
    ``seed`` is drawn and recorded in the fingerprint when omitted. The result is uncalibrated:
    every verdict is ``inconclusive`` until :func:`calibrate`.
    """
    dataset = as_dataset(data) if data is not None else None
    shape = input_shape or (dataset.input_shape if dataset is not None else None)
    source = as_model(model, input_shape=shape, mean=mean, std=std, classes=dataset.classes if dataset else (),
                      dataset=data if isinstance(data, str) else "")  # fmt: skip
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    return create_method(method, **params).generate(source, dataset, n=n, seed=seed, device=device, progress=progress)


def _fingerprint_models(fp: Fingerprint, models: Sequence[ModelLike]) -> list[ModelprintModel]:
    shape = fp.meta.get("input_shape")
    return [as_model(m, input_shape=shape, num_classes=fp.meta.get("num_classes")) for m in models]


def calibrate(fp: Fingerprint, references: Sequence[ModelLike], *, positives: Sequence[ModelLike] = ()) -> Fingerprint:
    """``fp`` with its null fitted on ``references``: models trained independently of the
    source (never derived from it), at least a handful and ideally 20 or more. ``positives``,
    copies you made of the source (e.g. pruned), are stored to show where copies score."""
    if isinstance(references, str | os.PathLike | nn.Module):
        raise ParameterError("references is a list of independent models (modules or model files)")
    return _calibrate(fp, _fingerprint_models(fp, references), _fingerprint_models(fp, positives))


def verify(
    fp: Fingerprint,
    suspect: ModelLike | Suspect,
    *,
    fpr: float = 1e-3,
    max_queries: int | None = None,
    **options: Any,
) -> Verification:
    """The verdict on ``suspect`` (a module, a model file, an exported graph, a URL or a
    :class:`~modelprint.suspects.Suspect`) at false-positive rate ``fpr``; ``max_queries``
    verifies sequentially within that budget. ``options`` go to a file or URL's adapter."""
    if isinstance(suspect, Suspect):
        target: Any = suspect
    elif isinstance(suspect, nn.Module):
        target = _fingerprint_models(fp, [suspect])[0]
    elif isinstance(suspect, str | os.PathLike):
        target = open_suspect(suspect, **options)
    else:
        raise ParameterError(f"a suspect is a module, a path or a URL, got {type(suspect).__name__}")
    return _verify(fp, target, fpr=fpr, max_queries=max_queries)
