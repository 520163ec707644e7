"""Reference sets: models trained independently of the source, once per owner data set and
training recipe, then reused to calibrate every fingerprint of that source.

Reference models depend on the owner's data and recipe, not on the fingerprint, so training
them again for each fingerprint (``calibrate --reference-models N``) pays the same cost many times.
A reference set is a folder: ``models/`` (model files: the source's architecture and others
trained from scratch, and students distilled from independent ones), ``positives/`` (the owner's own
derived copies of the source: pruned 30 % and 60 %, fine-tuned, pruned and fine-tuned; they
tell sequential verification where copies agree) and ``reference.json`` (the source's
sha256, the data set, the recipe, and each model's file, sha256, architecture, seed and, for
a student, the model it was distilled from).
Loading checks every model against its recorded sha256 and the set against the fingerprint
(same data set and input shape, not the source itself). A method that needs its own view
of a reference model (the white-box mark's independent owner) gets it per fingerprint
through :meth:`~modelprint.fingerprints.FingerprintMethod.reference_model`.

Example::

    refs = build_reference_set(load_model("owner.safetensors"), 10, "owner-refs")
    fp = calibrate(fp, reference_models("owner-refs", fp), reference_positives("owner-refs", fp))
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, check_readable
from ._version import __version__
from .calibrate import (
    CALIBRATION_SEED,
    SOURCE_FIELDS,
    reference_plan,
    source_meta,
    source_subset,
    train_reference,
)
from .data import load_splits
from .errors import ParameterError
from .fingerprints import Fingerprint, method_of
from .models import ModelprintModel, load_model, save_model, weights_digest
from .tune import reference_positives as derived_copies

REFERENCE_FILE = "reference.json"
REFERENCE_SCHEMA_VERSION = 1
# 20: on 336 independent digits models (the null-digits zoo, disjoint from every benchmark zoo),
# nulls fitted on 20 models drawn like a reference set let C and LTRC give p-values below 1e-3
# (median smallest p 4e-4 and 6e-5), on 10 they could not for C (4e-3); see benchmarks/BENCHMARKS.md.
DEFAULT_SIZE = 20


def build_reference_set(
    source: ModelprintModel | Fingerprint,
    n: int,
    out: str | os.PathLike,
    *,
    data: str | None = None,
    split_seed: int = 0,
    archs: Sequence[tuple[str, dict[str, Any]]] | None = None,
    epochs: int | None = None,
    first_seed: int = CALIBRATION_SEED,
    positives: bool = True,
    students: bool = True,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``n`` models independent of ``source`` on the owner's split (the source's
    architecture first, then others and, with ``students``, every third distilled from the one
    before; seeds from ``first_seed``, see :func:`~modelprint.calibrate.reference_plan`) into
    ``out`` and record them, with the owner's ``positives`` (derived copies of ``source``, see
    the module docstring). ``source`` may be a fingerprint of the owner's model, which records
    all the training needs; the set then holds no derived copies (they are made from the model).
    Returns the record written to ``out/reference.json``."""
    out = Path(out)
    if (out / REFERENCE_FILE).exists():
        raise ParameterError(f"{out} already holds a reference set: give it as --references {out}, or build anew")
    if isinstance(source, Fingerprint):
        meta = {k: source.meta.get(k) for k in SOURCE_FIELDS}
        source_sha256, positives = source.meta["source_sha256"], False
    else:
        meta, source_sha256 = source_meta(source), weights_digest(source)
    models = train_reference(
        meta, n, data=data, split_seed=split_seed, first_seed=first_seed, archs=archs, epochs=epochs,
        students=students, device=device, progress=progress,
    )  # fmt: skip
    plan = reference_plan(meta, n, first_seed=first_seed, archs=archs, students=students)
    entries = _save_models(models, plan, out)
    copies = []
    if positives:
        splits = load_splits(data or meta["dataset"], split_seed=split_seed, train_subset=source_subset(meta))
        copies = _save_positives(derived_copies(source, splits.owner), out)
    record = {
        "schema_version": REFERENCE_SCHEMA_VERSION,
        "modelprint": __version__,
        "source_sha256": source_sha256,
        "dataset": data or meta["dataset"],
        "split_seed": split_seed,
        "input_shape": meta["input_shape"],
        "first_seed": first_seed,
        "epochs": epochs,
        "students": students,
        "models": entries,
        "positives": copies,
    }
    atomic_write_text(out / REFERENCE_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _save_models(models: list[ModelprintModel], plan: list, out: Path) -> list[dict[str, Any]]:
    """Each reference model written under ``out/models`` and its entry in the record."""
    entries = []
    for i, (m, (_, _, seed, teacher)) in enumerate(zip(models, plan)):
        path = save_model(m, out / "models" / f"reference-{i:02d}-{m.card.arch}-s{seed}")
        entry = {"file": str(path.relative_to(out)), "sha256": weights_digest(m), "arch": m.card.arch}
        entry.update(arch_args=m.card.arch_args, seed=seed, accuracy=m.card.accuracy)
        if teacher is not None:
            entry["distilled_from"] = teacher
        entries.append(entry)
    return entries


def _save_positives(copies: list[ModelprintModel], out: Path) -> list[dict[str, Any]]:
    """The owner's derived copies written under ``out/positives`` and their entries."""
    entries = []
    for name, m in zip(("prune30", "prune60", "finetune", "prune60-finetune"), copies):
        path = save_model(m, out / "positives" / f"positive-{name}")
        entries.append({"file": str(path.relative_to(out)), "sha256": weights_digest(m), "derived": name})
    return entries


def read_reference_set(folder: str | os.PathLike) -> dict[str, Any]:
    """The record of the reference set in ``folder``, checked for shape (not yet its models)."""
    if (
        Path(folder).is_dir()
        and not (Path(folder) / REFERENCE_FILE).exists()
        and any(Path(folder).glob("*.safetensors"))
    ):
        raise ParameterError(
            f"{folder} holds model files but no {REFERENCE_FILE}: it is not a reference set (`modelprint reference "
            "build` makes one); give its models as --negatives FOLDER"
        )
    path = check_readable(Path(folder) / REFERENCE_FILE, "reference set record", ParameterError)
    try:
        record = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ParameterError(f"{path} is not a readable reference set record ({e})") from None
    if not isinstance(record, dict) or record.get("schema_version") != REFERENCE_SCHEMA_VERSION:
        raise ParameterError(f"{path}: not a modelprint reference set (schema {REFERENCE_SCHEMA_VERSION})")
    entries = record.get("models")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "file" in e and "sha256" in e for e in entries):
        raise ParameterError(f"{path}: its model list is damaged")
    return record


def _checked(root: Path, entry: dict[str, Any]) -> ModelprintModel:
    path = (root / str(entry["file"])).resolve()
    if not path.is_relative_to(root):
        raise ParameterError(f"{root / REFERENCE_FILE}: model file {entry['file']!r} lies outside the set")
    model = load_model(path)
    if weights_digest(model) != entry["sha256"]:
        raise ParameterError(f"{path} has changed since the reference set was built (sha256 differs)")
    return model


def reference_positives(folder: str | os.PathLike, fp: Fingerprint) -> list[ModelprintModel]:
    """The owner's derived copies in the set, checked like its models; none when ``fp`` was not
    made from the very model the set was built for (e.g. a marked copy of it)."""
    root = Path(folder).resolve()
    record = read_reference_set(root)
    if record.get("source_sha256") != fp.meta.get("source_sha256"):
        return []
    return [_checked(root, entry) for entry in record.get("positives") or []]


def reference_models(folder: str | os.PathLike, fp: Fingerprint) -> list[ModelprintModel]:
    """The set's models as ``fp``'s method sees independent models, each checked against the
    sha256 the set recorded; refuses a set made for other data or another input shape."""
    root = Path(folder).resolve()
    record = read_reference_set(root)
    theirs, ours = record.get("dataset"), fp.meta.get("dataset")
    if theirs and ours and theirs != ours:
        raise ParameterError(f"the reference set was trained on {theirs}, the fingerprint's source on {ours}")
    if list(record.get("input_shape") or []) != list(fp.meta.get("input_shape") or []):
        raise ParameterError(
            f"the reference set's models take {record.get('input_shape')}, the fingerprint {fp.meta.get('input_shape')}"
        )
    method = method_of(fp)
    models = []
    for entry in record["models"]:
        model = _checked(root, entry)
        models.append(method.reference_model(fp, model, int(entry.get("seed", model.card.seed) or 0)))
    return models
