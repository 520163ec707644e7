"""Three calls from your own ``nn.Module`` to a verdict: fingerprint, calibrate, verify.

Every call takes a plain ``nn.Module`` (given ``(x - mean) / std`` of images in [0, 1],
returning logits), a modelprint model, or a model file's path; the functions underneath
(:mod:`modelprint.fingerprints`, :mod:`modelprint.calibrate`, :mod:`modelprint.verify`)
are there when you need more control. Each is the whole workflow of its command:
``fingerprint`` does what ``modelprint fingerprint create`` does (mark, tune, generate,
calibrate on a reference set), ``calibrate`` what ``modelprint fingerprint calibrate`` does.

Example::

    fp = modelprint.fingerprint(net, data=(x_owner, y_owner), method="c", seed=0)
    fp = modelprint.calibrate(fp, references=[indep_1, indep_2, ...])   # independent models
    print(modelprint.verify(fp, suspect_net).verdict)                     # match / no-match / inconclusive
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .calibrate import calibrate as _calibrate
from .data import Dataset, load_splits
from .errors import ParameterError
from .fingerprints import BASELINE_METHOD, Fingerprint, FingerprintMethod, create_method
from .models import ModelprintModel, load_model, save_model, wrap_model
from .models.sanity import chance_problem
from .progress import note
from .reference import REFERENCE_FILE, reference_models, reference_positives
from .screening import screened_calibration
from .suspects import Suspect, open_suspect
from .train import accuracy
from .tune import tune_method
from .verify import Verification
from .verify import verify as _verify
from .zoo import ZooManifest

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

# Independent models to calibrate on: a reference set's folder, or models (modules, model
# files, folders of model files).
ReferencesLike = str | os.PathLike | Sequence[ModelLike]


@dataclass(frozen=True)
class Tuning:
    """How :func:`fingerprint` chooses a method's settings: it trains ``references``
    independent models on the owner's data (``epochs`` each, default the source's) and keeps
    the settings with the highest true-positive rate at ``fpr`` on copies it makes of the source.

    Example::

        fp = modelprint.fingerprint("owner.safetensors", method="rc", tune=Tuning(fpr=1e-2, references=6))
    """

    fpr: float = 1e-2
    references: int = 6
    epochs: int | None = None


def fingerprint(
    model: ModelLike,
    data: DataLike | None = None,
    *,
    method: str = BASELINE_METHOD,
    n: int = 100,
    seed: int | None = None,
    input_shape: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: str = "cpu",
    progress: bool = False,
    check_accuracy: bool = True,
    tune: bool | Tuning = False,
    mark: Mapping[str, Any] | None = None,
    marked_out: str | os.PathLike | None = None,
    references: ReferencesLike | None = None,
    screen: int | None = None,
    **params: Any,
) -> Fingerprint:
    """A fingerprint of ``model`` by ``method`` (its settings as ``params``) with ``n`` items.

    ``data`` is the owner's data (the methods that start from real images need it unless the
    model file's card names a data set); its image shape is the input shape of a plain module.
    ``mean`` / ``std``: the normalisation a plain module was trained with; the fingerprint
    records it and :func:`calibrate` and :func:`verify` give it to plain modules too. With
    ``data``, a model that answers it at about chance is refused (``check_accuracy=False`` to
    skip): its inputs are almost surely prepared wrongly. ``seed`` is drawn and recorded in the
    fingerprint when omitted (for a method that marks the model, it is the owner's key).

    The steps of ``modelprint fingerprint create``, each when asked: a method that marks the
    model first trains its mark in with ``mark`` (``host``, ``k``, ``epochs``, ...), writes the
    marked model to ``marked_out`` and fingerprints that; ``tune=True`` (or a :class:`Tuning`)
    chooses the method's settings on reference models trained for it (recorded as ``tuning``);
    ``references`` (as for :func:`calibrate`, ``screen`` too) calibrates the result at once.
    Without ``references`` every verdict is ``inconclusive`` until :func:`calibrate`.
    """
    if screen is not None and references is None:
        raise ParameterError(
            "`screen` chooses queries with a reference set: give `references` too", params=("screen", "references")
        )
    dataset = as_dataset(data) if data is not None else None
    with _modes_kept(model):
        source = _source(model, data, dataset, input_shape, mean=mean, std=std, check_accuracy=check_accuracy)
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        maker = create_method(method, **params)
        if maker.needs_preparation(source):
            source = _prepared(maker, source, data, dataset, seed, dict(mark or {}), marked_out, progress)
        spec = data if isinstance(data, str) else None
        maker, tuning = _tuned(maker, source, params, tune, n=n, seed=seed, data=spec, device=device)
        fp = maker.generate(source, dataset, n=n, seed=seed, device=device, progress=progress)
    if tuning is not None:
        fp.meta["tuning"] = tuning
    if references is not None:
        fp = calibrate(fp, references, screen=screen, mean=mean, std=std)
    return fp


def _source(
    model: ModelLike,
    data: DataLike | None,
    dataset: Dataset | None,
    input_shape: Sequence[int] | None,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    check_accuracy: bool,
) -> ModelprintModel:
    """The model to fingerprint; one that answers the owner's data at about chance is refused
    when ``check_accuracy`` (its inputs are almost surely prepared wrongly)."""
    source = as_model(
        model,
        input_shape=input_shape or (dataset.input_shape if dataset is not None else None),
        mean=mean,
        std=std,
        classes=dataset.classes if dataset else (),
        dataset=data if isinstance(data, str) else "",
    )
    if dataset is None or not check_accuracy:
        return source
    every = max(1, len(dataset) // ACCURACY_CHECK_IMAGES)  # spread over the data, which may be sorted by class
    sample = dataset.subset(torch.arange(0, len(dataset), every), dataset.split)
    problem = chance_problem(accuracy(source, sample), source.card.num_classes)
    if problem:
        raise ParameterError(f"{problem}; pass mean= and std= for a plain module, or check_accuracy=False")
    return source


def _prepared(
    maker: FingerprintMethod,
    source: ModelprintModel,
    data: DataLike | None,
    dataset: Dataset | None,
    key: int,
    mark: dict[str, Any],
    marked_out: str | os.PathLike | None,
    progress: bool,
) -> ModelprintModel:
    """``source`` prepared for a method that changes it first (a white-box mark trained in on
    the owner's split with ``key``), written to ``marked_out``. Given as a spec (or not at all:
    the card's), the data set's test split measures the accuracy before and after."""
    if marked_out is None:
        raise ParameterError(
            f"{maker.name} marks the model first: give `marked_out`, where the marked model goes",
            params=("marked_out",),
        )
    if isinstance(data, str) or data is None:
        splits = load_splits(data or source.card.dataset)
        owner, test = splits.owner, splits.test
    else:
        owner, test = dataset, None
    prepared = maker.prepare(source, owner, key=key, test=test, progress=progress, **mark)
    path = save_model(prepared, marked_out)
    before = f", before {accuracy(source, test):.4f}" if test is not None else ""
    note(
        f"prepared {source.card.arch} for {maker.name} with key {key}: {path} "
        f"(test accuracy {prepared.card.accuracy:.4f}{before})"
    )
    return prepared


def _tuned(
    maker: FingerprintMethod, source: ModelprintModel, params: dict[str, Any], tune: bool | Tuning, **settings: Any
) -> tuple[FingerprintMethod, dict[str, Any] | None]:
    """The method with its settings chosen by :func:`~modelprint.tune.tune_method` when ``tune``
    asks for it, and the tuning's record (``None`` without tuning)."""
    if not tune:
        return maker, None
    tuning = tune if isinstance(tune, Tuning) else Tuning()
    chosen, record = tune_method(
        source, maker.name, params=params, negatives=tuning.references, fpr=tuning.fpr, epochs=tuning.epochs, **settings
    )
    note(f"tuned {maker.name}: " + ", ".join(f"{k}={v}" for k, v in record["chosen"].items()))
    return create_method(maker.name, **chosen), record


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
    references: ReferencesLike = (),
    *,
    positives: Sequence[ModelLike] = (),
    zoo: str | os.PathLike | None = None,
    screen: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Fingerprint:
    """``fp`` with its null fitted on independent models: models trained independently of the
    source (never derived from it), at least a handful and ideally 20 or more.

    ``references`` is a reference set's folder (``modelprint reference build``; the owner's
    copies it holds count as positives), or a list of modules, model files, folders of model
    files and reference sets; ``zoo`` adds a zoo's negatives. ``positives``, copies you made
    of the source (e.g. pruned), are stored to show where copies score. ``screen`` keeps the
    ``screen`` queries half of the models follow least and fits the null on the other half.
    Plain modules get the source's preprocessing as the fingerprint recorded it, or
    ``mean`` / ``std`` when theirs differs. Does what ``modelprint fingerprint calibrate`` does.
    """
    if isinstance(references, nn.Module):
        raise ParameterError("references is a list of independent models (modules or model files) or a reference set")
    items = [references] if isinstance(references, str | os.PathLike) else list(references)
    models, copies, origin = _independent_models(fp, items, zoo, mean, std)
    copies += _fingerprint_models(fp, positives, mean, std)
    if not models:
        raise ParameterError("give independent models: references (models or a reference set's folder) or zoo")
    with _modes_kept(*items, *positives):
        if screen is None:
            return _calibrate(fp, models, copies, origin=origin)
        return screened_calibration(fp, models, screen, copies, origin=origin)


def _independent_models(
    fp: Fingerprint,
    items: list[Any],
    zoo: str | os.PathLike | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> tuple[list[ModelprintModel], list[ModelprintModel], str]:
    """The models ``items`` and ``zoo`` stand for, in a fixed order (model files, modules, the
    zoo's negatives, reference sets), the owner's copies the reference sets hold, and where the
    models came from."""
    paths = [Path(i) for i in items if isinstance(i, str | os.PathLike)]
    # a folder without model files of its own is a reference set (or says why it is not one)
    sets = [p for p in paths if p.is_dir() and ((p / REFERENCE_FILE).is_file() or not any(p.glob("*.safetensors")))]
    files = _model_files([p for p in paths if p not in sets])
    modules = [i for i in items if not isinstance(i, str | os.PathLike)]
    models = [load_model(f) for f in files] + _fingerprint_models(fp, modules, mean, std)
    origin = ([f"{len(files)} files"] if files else []) + (["models"] if modules else [])
    if zoo is not None:
        manifest = ZooManifest.read(zoo)
        rows = manifest.select("negative")
        models += [load_model(manifest.path(r)) for r in rows]
        origin.append(f"{len(rows)} zoo negatives of {Path(zoo).name}")
    copies: list[ModelprintModel] = []
    for folder in sets:
        models += reference_models(folder, fp)
        copies += reference_positives(folder, fp)
        origin.append(f"the reference set {folder.name}")
    return models, copies, ", ".join(origin)


def _model_files(paths: list[Path]) -> list[Path]:
    """Model files, a folder standing for the ``*.safetensors`` in it."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    return files


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
