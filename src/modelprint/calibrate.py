"""Calibration: fit a fingerprint's null on models independent of its source, and store it.

The null, the number of reference models and their sha256s go into the fingerprint's
metadata, so the owner's commitment (the file's sha256) covers them: calibrate, then
publish the commitment. Positives (the owner's own pruned / fine-tuned copies) are
stored too, so a verdict can say how typical a suspect is of a derived copy.

Reference models (``--reference-models N``) are trained by modelprint on the owner's split with
seeds from :data:`CALIBRATION_SEED` on: the source's architecture, a few others, and
students distilled from those (:func:`reference_plan`); :mod:`modelprint.tune` uses seeds
from :data:`TUNING_SEED` on, so the models a method's settings were chosen on never also
calibrate its null.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .attacks.extraction import Distill
from .data import DatasetSplits, load_splits
from .errors import CalibrationError, ParameterError
from .fingerprints import METHODS, Fingerprint, method_of
from .models import ModelprintModel, save_model, weights_digest
from .models.attachments import split_attachments
from .null import Null
from .progress import note, progress_bar
from .scoring import model_evidence
from .train import TrainConfig, train_new, training_settings

CALIBRATION_SEED = 1000
# Independent models whose statistic averages this much sit where copies do: more of them
# cannot make a null that tells a copy apart.
SEPARATION_LIMIT = 0.9
TUNING_SEED = 2000
# Reference architectures after the source's own: small members of other families.
REFERENCE_ARCHS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("cnn", {}),
    ("resnet18", {"width": 16}),
    ("vgg11", {"width": 16}),
)


def is_derived_from(model: ModelprintModel, source_sha256: str) -> bool:
    """True when ``model`` is the source or its card's lineage passes through it."""
    if not source_sha256:
        return False
    if weights_digest(model) == source_sha256:
        return True
    return any(step.get("parent_sha256") == source_sha256 for step in model.card.lineage)


def calibrate(
    fp: Fingerprint,
    negatives: Sequence[ModelprintModel],
    positives: Sequence[ModelprintModel] = (),
    *,
    origin: str = "models",
) -> Fingerprint:
    """A copy of ``fp`` whose metadata holds the null fitted on ``negatives`` (and the
    positives' statistics). ``origin`` says where the negatives came from (files, zoo, reference)."""
    source = str(fp.meta.get("source_sha256", ""))
    derived = [i for i, m in enumerate(negatives) if is_derived_from(m, source)]
    if derived:
        raise CalibrationError(
            f"negative #{derived[0] + 1} ({weights_digest(negatives[derived[0]])[:12]}…) is the source or derived "
            "from it: a null needs models trained independently of the source"
        )
    shas = [weights_digest(m) for m in negatives]
    if len(set(shas)) != len(shas):
        raise CalibrationError("the same negative model is given twice: each reference model must count once")
    chose = set((fp.meta.get("screening") or {}).get("selection_sha256") or []) & set(shas)
    if chose:  # cross-fitting: the models that chose the queries cannot also calibrate them
        raise CalibrationError(
            f"{len(chose)} of the negatives chose this fingerprint's queries (reference screening) "
            "and cannot also fit its null: give the other reference models"
        )
    method = method_of(fp)
    rows = model_evidence(fp, negatives)
    null = method.fit_null(fp, [r.values for r in rows], [r.statistic for r in rows]).to_json()
    # n_models and statistics are the null's own: a family may fit on some of the references only
    null.update({"source": origin, "sha256": shas})
    meta = {**fp.meta, "null": null}
    if positives:
        pos = model_evidence(fp, positives)
        meta["positives"] = {"sha256": [r.sha256 for r in pos], "statistics": [r.statistic for r in pos]}
    return Fingerprint(fp.x, fp.y, meta, dict(fp.extra))


def separation_advice(independent_mean: float, method: str) -> str | None:
    """The sentence for independent models that agree with the source as copies do (their
    mean statistic at least :data:`SEPARATION_LIMIT`), naming the other methods; None otherwise."""
    if independent_mean < SEPARATION_LIMIT:
        return None
    others = ", ".join(name for name in METHODS.names() if name != method)
    return (
        f"the independent models score {independent_mean:.2f} on average, as a copy would: {method}'s queries do "
        f"not separate models here, so use another method ({others}; `modelprint bench` on a zoo of yours shows "
        "which do)"
    )


def parse_arch(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:K=V,K=V`` (values as JSON where they parse)."""

    name, _, rest = text.partition(":")
    args: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, sep, v = item.partition("=")
        if not sep:
            raise ParameterError(f"architecture arguments are K=V, got {item!r} in {text!r}")
        try:
            args[k] = json.loads(v)
        except json.JSONDecodeError:
            args[k] = v
    return name, args


def reference_kinds(n: int) -> list[str]:
    """What each of ``n`` reference models of the default plan is, in order: ``own`` (the
    source's architecture from scratch), ``other`` (another architecture from scratch) and
    ``student`` (the source's architecture distilled from the ``other`` model just before it)."""
    return [("own", "other", "student")[i % 3] for i in range(n)]


def reference_plan(
    meta: dict[str, Any],
    n: int,
    *,
    first_seed: int,
    archs: Sequence[tuple[str, dict[str, Any]]] | None = None,
    students: bool = True,
) -> list[tuple[str, dict[str, Any], int, int | None]]:
    """(architecture, arguments, seed, teacher) for ``n`` reference models, ``teacher`` being the
    index of the model a student is distilled from (None: trained from scratch).

    The source's own architecture always comes first (the same network trained on the same
    data with another seed is the hardest honest negative, so the null must see it). With
    ``students`` the plan runs own, other, student, own, other, student...: a student of an
    independent model is what an innocent extraction looks like, and on the null zoos nulls
    fitted without such models called them a match several times more often than nominal at
    1e-3. Without ``students``, the source's architecture is followed by ``archs`` (default
    :data:`REFERENCE_ARCHS`, other families than the source's) in turn. Seeds count up from
    ``first_seed``, skipping the source's own."""
    if n < 1:
        raise ParameterError(f"--reference needs at least 1 model, got {n}")
    # an independent owner's model has no attachment of ours (a mark is added per method by reference_model)
    own = (str(meta.get("source_arch") or "cnn"), split_attachments(dict(meta.get("source_arch_args") or {}))[0])
    if archs is None:
        others = [a for a in REFERENCE_ARCHS if a[0] != own[0]]
    else:
        others = [(name, dict(args)) for name, args in archs if (name, dict(args)) != own]
    source_seed = (meta.get("source_training") or {}).get("seed")
    seeds = (s for s in range(first_seed, first_seed + 10 * n + 10) if s != source_seed)
    plan: list[tuple[str, dict[str, Any], int, int | None]] = []
    if not students:
        cycle = [own] + others
        return [(*cycle[i % len(cycle)], next(seeds), None) for i in range(n)]
    k = 0
    for i, kind in enumerate(reference_kinds(n)):
        if kind == "other" and others:
            arch, k = others[k % len(others)], k + 1
            plan.append((*arch, next(seeds), None))
        elif kind == "student":
            plan.append((*own, next(seeds), i - 1))
        else:
            plan.append((*own, next(seeds), None))
    return plan


def source_subset(meta: dict[str, Any]) -> int:
    """How many images of its split the source trained on (0: all); reference models use as many."""
    return int((meta.get("source_training") or {}).get("train_subset") or 0)


# What reference training needs to know of a source model; a fingerprint's meta holds the same fields.
SOURCE_FIELDS = ("dataset", "source_arch", "source_arch_args", "source_training", "input_shape")


def source_meta(source: ModelprintModel) -> dict[str, Any]:
    """The :data:`SOURCE_FIELDS` of a source model."""
    c = source.card
    return dict(zip(SOURCE_FIELDS, (c.dataset, c.arch, c.arch_args, c.training, list(c.input_shape))))


def _owner_splits(meta: dict[str, Any], data: str | None, split_seed: int) -> DatasetSplits:
    """The owner's data as the source saw it, checked against the source's input shape."""
    spec = data or meta.get("dataset")
    if not spec:
        raise ParameterError("the fingerprint does not name its data set: give --data")
    splits = load_splits(spec, split_seed=split_seed, train_subset=source_subset(meta))
    shape = tuple(meta.get("input_shape") or ())
    if tuple(splits.owner.input_shape) != shape:
        raise ParameterError(
            f"{spec} gives {'x'.join(map(str, splits.owner.input_shape))} inputs but the source takes "
            f"{'x'.join(map(str, shape))}; give the source's --data (e.g. digits:16)"
        )
    return splits


def train_reference(
    meta: dict[str, Any],
    n: int,
    *,
    data: str | None = None,
    split_seed: int = 0,
    first_seed: int = CALIBRATION_SEED,
    archs: Sequence[tuple[str, dict[str, Any]]] | None = None,
    epochs: int | None = None,
    out_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    students: bool = True,
) -> list[ModelprintModel]:
    """Train ``n`` models independent of the source on the owner's split, as the owner always
    can: same data set, other seeds and architectures, the source's training settings, and
    (``students``) every third model distilled from another (:func:`reference_plan`); each is
    written to ``out_dir`` when given."""

    splits = _owner_splits(meta, data, split_seed)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in (meta.get("source_training") or {}).items() if k in fields}
    if epochs is not None:
        base["epochs"] = epochs
    plan = reference_plan(meta, n, first_seed=first_seed, archs=archs, students=students)
    started = time.monotonic()
    trained: list[ModelprintModel] = []
    for i, (arch, args, seed, teacher) in enumerate(plan):
        cfg = TrainConfig(**training_settings(arch, base))  # the architecture's own needs over the source's
        if teacher is None:
            model = train_new(
                arch, splits.owner, cfg, seed=seed, test=splits.test, device=device, progress=progress, **args
            )
        else:  # the owner's unlabelled images, as an independent thief of the teacher would use its own
            student = Distill(arch=arch, arch_args=dict(args), epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer,
                              batch_size=cfg.batch_size, augment=cfg.augment)  # fmt: skip
            # one long step (a student's whole training): a bar on a terminal, heartbeat lines in a log
            title = f"reference model {i + 1}/{n}: distilling {arch} from reference model {teacher + 1}"
            with progress_bar(1, title, enabled=progress) as bar:
                model = student.apply(trained[teacher], splits.owner, seed=seed, device=device, test=splits.test)
                bar.update(1)
        trained.append(model)
        if out_dir is not None:
            save_model(model, Path(out_dir) / f"reference-{i:02d}-{arch}-s{seed}")
        if progress:
            how = f"distilled from reference model {teacher + 1}" if teacher is not None else "from scratch"
            spent = time.monotonic() - started
            eta = f", ETA {spent / (i + 1) * (n - i - 1):.0f} s" if i + 1 < n else ""
            note(
                f"reference model {i + 1}/{n}: {arch} {args or ''} seed {seed} ({how}), "
                f"accuracy {model.card.accuracy:.3f} ({spent:.0f} s so far{eta})"
            )
    return trained


def null_description(fp: Fingerprint, fprs: Sequence[float] = (1e-2, 1e-3)) -> dict[str, Any]:
    """The stored null in numbers a person can check: where independent models sit and the
    statistic a suspect needs to be called a match at each FPR."""
    null = fp.meta.get("null")
    if not null:
        raise ParameterError("the fingerprint is not calibrated")
    stats_ = np.asarray(null["statistics"])
    return {
        "family": null["family"],
        "n_models": null["n_models"],
        "source": null.get("source"),
        "reference_statistics": {"min": float(stats_.min()), "mean": float(stats_.mean()), "max": float(stats_.max())},
        "smallest_p": Null.from_json(null).smallest_p(),
        **Null.from_json(null).needed(fprs),
    }
