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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .calibrate import calibrate as _calibrate
from .data import Dataset, load_splits
from .errors import ParameterError
from .fingerprints import Fingerprint, create_method
from .models import ModelprintModel, load_model, wrap_model
from .models.sanity import chance_problem
from .suspects import Suspect, open_suspect
from .train import accuracy
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
        if not torch.is_floating_point(x):
            raise ParameterError(
                f"data x is {str(x.dtype).removeprefix('torch.')}; give float images in [0, 1] "
                "(for 0..255 pixels: x.float() / 255)"
            )
        if x.ndim != 4:
            raise ParameterError(f"data x must be images (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            raise ParameterError(
                f"data x of shape {tuple(x.shape)} looks channels-last (N, H, W, C); give (N, C, H, W): "
                "x.permute(0, 3, 1, 2)"
            )
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


@contextmanager
def _modes_kept(*models: Any) -> Iterator[None]:
    """Give every module back in the train / eval mode it came in (verifying switches to eval)."""
    modules = [m for m in models if isinstance(m, nn.Module)]
    modes = [[sub.training for sub in m.modules()] for m in modules]
    try:
        yield
    finally:
        for module, flags in zip(modules, modes):
            for sub, flag in zip(module.modules(), flags):
                sub.training = flag


# The owner's images a fingerprint checks the source's accuracy on (enough to tell chance apart).
ACCURACY_CHECK_IMAGES = 1000


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
    check_accuracy: bool = True,
    **params: Any,
) -> Fingerprint:
    """A fingerprint of ``model`` by ``method`` (its settings as ``params``) with ``n`` items.

    ``data`` is the owner's data (the methods that start from real images need it unless the
    model file's card names a data set); its image shape is the input shape of a plain module.
    ``mean`` / ``std``: the normalisation a plain module was trained with; the fingerprint
    records it and :func:`calibrate` and :func:`verify` give it to plain modules too. With
    ``data``, a model that answers it at about chance is refused (``check_accuracy=False`` to
    skip): its inputs are almost surely prepared wrongly. ``seed`` is drawn and recorded in the
    fingerprint when omitted. The result is uncalibrated: every verdict is ``inconclusive``
    until :func:`calibrate`.
    """
    dataset = as_dataset(data) if data is not None else None
    shape = input_shape or (dataset.input_shape if dataset is not None else None)
    with _modes_kept(model):
        source = as_model(
            model,
            input_shape=shape,
            mean=mean,
            std=std,
            classes=dataset.classes if dataset else (),
            dataset=data if isinstance(data, str) else "",
        )
        if dataset is not None and check_accuracy:
            every = max(1, len(dataset) // ACCURACY_CHECK_IMAGES)  # spread over the data, which may be sorted by class
            sample = dataset.subset(torch.arange(0, len(dataset), every), dataset.split)
            problem = chance_problem(accuracy(source, sample), source.card.num_classes)
            if problem:
                raise ParameterError(f"{problem}; pass mean= and std= for a plain module, or check_accuracy=False")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        method_ = create_method(method, **params)
        return method_.generate(source, dataset, n=n, seed=seed, device=device, progress=progress)


def _fingerprint_models(
    fp: Fingerprint, models: Sequence[ModelLike], mean: Sequence[float] | None, std: Sequence[float] | None
) -> list[ModelprintModel]:
    """Plain modules wrapped for ``fp``: its input shape and classes, and the preprocessing
    given here or else the one the fingerprint recorded for its source (never silently none)."""
    shape = fp.meta.get("input_shape")
    mean = mean if mean is not None else fp.meta.get("source_mean")
    std = std if std is not None else fp.meta.get("source_std")
    classes = fp.meta.get("num_classes")
    return [as_model(m, input_shape=shape, num_classes=classes, mean=mean, std=std) for m in models]


def calibrate(
    fp: Fingerprint,
    references: Sequence[ModelLike],
    *,
    positives: Sequence[ModelLike] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Fingerprint:
    """``fp`` with its null fitted on ``references``: models trained independently of the
    source (never derived from it), at least a handful and ideally 20 or more. ``positives``,
    copies you made of the source (e.g. pruned), are stored to show where copies score.
    Plain modules get the source's preprocessing as the fingerprint recorded it, or
    ``mean`` / ``std`` when theirs differs."""
    if isinstance(references, str | os.PathLike | nn.Module):
        raise ParameterError("references is a list of independent models (modules or model files)")
    with _modes_kept(*references, *positives):
        return _calibrate(
            fp, _fingerprint_models(fp, references, mean, std), _fingerprint_models(fp, positives, mean, std)
        )


def verify(
    fp: Fingerprint,
    suspect: ModelLike | Suspect,
    *,
    fpr: float = 1e-3,
    max_queries: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **options: Any,
) -> Verification:
    """The verdict on ``suspect`` (a module, a model file, an exported graph, a URL or a
    :class:`~modelprint.suspects.Suspect`) at false-positive rate ``fpr``; ``max_queries``
    verifies sequentially within that budget. A plain module gets the source's preprocessing
    as the fingerprint recorded it, or ``mean`` / ``std``. ``options`` go to a file or URL's adapter."""
    if isinstance(suspect, Suspect):
        target: Any = suspect
    elif isinstance(suspect, nn.Module):
        target = _fingerprint_models(fp, [suspect], mean, std)[0]
    elif isinstance(suspect, str | os.PathLike):
        target = open_suspect(suspect, **options)
    else:
        raise ParameterError(f"a suspect is a module, a path or a URL, got {type(suspect).__name__}")
    with _modes_kept(suspect):
        return _verify(fp, target, fpr=fpr, max_queries=max_queries)
