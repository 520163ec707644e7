"""Reference models: trained independently of the source on the owner's data, as the owner
always can, to fit a fingerprint's null (calibration) and to choose a method's settings (tuning).

The plan (:func:`reference_plan`): the source's architecture with other seeds, other
architectures, and students distilled from those. Calibration draws its seeds from
:data:`CALIBRATION_SEED` on, tuning from :data:`TUNING_SEED` on, so the models a method's
settings were chosen on never also calibrate its null.

Reference models are a zoo of negatives: :meth:`ReferencePlan.spec` writes the plan as a zoo spec
and :func:`train_reference` builds it with the zoo builder, so they train on parallel
workers or a Ray cluster, resume after a kill, and come out with the same bytes whichever
backend built them (each model on one thread).

A *reference set* is such a zoo kept in a folder to calibrate every fingerprint of one
source: the zoo (``zoo.toml``, ``manifest.jsonl``, ``models/``), ``positives/`` (the owner's
own derived copies of the source: pruned 30 % and 60 %, fine-tuned, pruned and fine-tuned;
they tell sequential verification where copies agree) and ``reference.json`` (the source's
sha256, the data set, the recipe, and each model's file, sha256, architecture, seed and, for
a student, the model it was distilled from), written last.
Loading checks every model against its recorded sha256 and the set against the fingerprint
(same data set and input shape, not the source itself). A method that needs its own view
of a reference model (the white-box mark's independent owner) gets it per fingerprint
through :meth:`~modelprint.fingerprints.FingerprintMethod.reference_model`.

Example::

    refs = build_reference_set(load_model("owner.safetensors"), ReferencePlan(10), "owner-refs", workers=2)
    fp = calibrate(fp, reference_models("owner-refs", fp), reference_positives("owner-refs", fp))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, check_readable
from ._version import __version__
from .attacks import create_attack
from .errors import ParameterError
from .fingerprints import Fingerprint, method_of
from .models import (
    ModelBytes,
    ModelprintModel,
    load_model,
    model_from_bytes,
    model_to_bytes,
    trust_arch,
    weights_digest,
    write_model_bytes,
)
from .models.attachments import split_attachments
from .models.custom import trusted_archs
from .parallel import task_backend, task_threads
from .train import TrainConfig, training_settings
from .zoo import ZooManifest
from .zoo.build import SPEC_FILE, DataKey, build_zoo
from .zoo.spec import ZooSpec, parse_spec_text

CALIBRATION_SEED = 1000
TUNING_SEED = 2000
# Reference architectures after the source's own: small members of other families.
REFERENCE_ARCHS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("cnn", {}),
    ("resnet18", {"width": 16}),
    ("vgg11", {"width": 16}),
)
REFERENCE_FILE = "reference.json"
REFERENCE_SCHEMA_VERSION = 1
# 20: on 336 independent digits models (the null-digits zoo, disjoint from every benchmark zoo),
# nulls fitted on 20 models drawn like a reference set let C and LTRC give p-values below 1e-3
# (median smallest p 4e-4 and 6e-5), on 10 they could not for C (4e-3); see benchmarks/BENCHMARKS.md.
DEFAULT_SIZE = 20
# What reference training needs to know of a source model; a fingerprint's meta holds the same fields.
SOURCE_FIELDS = ("dataset", "source_arch", "source_arch_args", "source_training", "input_shape")


def source_meta(source: ModelprintModel) -> dict[str, Any]:
    """The :data:`SOURCE_FIELDS` of a source model."""
    c = source.card
    return dict(zip(SOURCE_FIELDS, (c.dataset, c.arch, c.arch_args, c.training, list(c.input_shape))))


def source_subset(meta: dict[str, Any]) -> int:
    """How many images of its split the source trained on (0: all); reference models use as many."""
    return int((meta.get("source_training") or {}).get("train_subset") or 0)


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
        raise ParameterError(f"a reference set needs at least 1 model, got {n}")
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


def derived_copies(source: ModelprintModel, data: Any, *, epochs: int = 5, seed: int = TUNING_SEED) -> list:
    """The owner's own derived copies: pruned 30 % and 60 %, fine-tuned (all layers), pruned 60 % + fine-tuned."""
    prune = [create_attack("prune", rate=r).apply(source, seed=seed) for r in (0.3, 0.6)]
    ft = create_attack("finetune", mode="ftal", epochs=epochs).apply(source, data, seed=seed)
    pft = create_attack("finetune", mode="ftal", epochs=epochs).apply(prune[1], data, seed=seed + 1)
    return [*prune, ft, pft]


@dataclass(frozen=True)
class ReferencePlan:
    """Which reference models to train, as plain data: ``n`` models (:func:`reference_plan`)
    on the owner's split of ``data`` (default: the one the source names) cut with
    ``split_seed``, seeds from ``first_seed``, other architectures ``archs`` (default
    :data:`REFERENCE_ARCHS`), ``epochs`` each (default: the source's), and with ``students``
    every third model distilled from the one before.

    Example::

        plan = ReferencePlan(10, epochs=5)
        models = train_reference(source_meta(source), plan, workers=2)
    """

    n: int = DEFAULT_SIZE
    data: str | None = None
    split_seed: int = 0
    first_seed: int = CALIBRATION_SEED
    archs: Sequence[tuple[str, dict[str, Any]]] | None = None
    epochs: int | None = None
    students: bool = True

    def models(self, meta: dict[str, Any]) -> list[tuple[str, dict[str, Any], int, int | None]]:
        """(architecture, arguments, seed, teacher) per model, for the source ``meta`` describes."""
        return reference_plan(meta, self.n, first_seed=self.first_seed, archs=self.archs, students=self.students)

    def spec(self, meta: dict[str, Any], name: str = "reference") -> ZooSpec:
        """The plan as a zoo spec for the source ``meta`` describes: scratch models with the
        source's training settings (each architecture's own needs over them, ``epochs`` over
        both), students as a ``distill`` step on the owner's split from their teacher. The text
        is a function of the plan and the source only, so the same plan resumes the same build."""
        dataset = self.data or meta.get("dataset")
        if not dataset:
            raise ParameterError("the source does not name its data set: give the owner's data")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        base = {k: v for k, v in (meta.get("source_training") or {}).items() if k in known}
        if self.epochs is not None:
            base["epochs"] = self.epochs
        lines = [
            "# Reference models, independent of the source, trained on the owner's data (written by modelprint)",
            f"name = {_toml(name)}",
            f"data = {_toml(dataset)}",
            f"split_seed = {int(self.split_seed)}",
            f"train_subset = {source_subset(meta)}",
            "",
            "[train]",
            *(f"{key} = {_toml(value)}" for key, value in sorted(base.items())),
        ]
        models = self.models(meta)
        for i, (arch, args, seed, teacher) in enumerate(models):
            lines += ["", "[[models]]", f'name = "m{i}"']
            if teacher is None:
                kind = "own" if (arch, args) == models[0][:2] else "other"
                fields = {"arch": arch, "args": args, "seed": seed, "role": "negative"}
                fields["category"] = f"reference-{kind}"
            else:  # the owner's unlabelled images, as an independent thief of the teacher would use its own
                cfg = TrainConfig(**training_settings(arch, base))
                step = {"attack": "distill", "arch": arch, "arch_args": args, "epochs": cfg.epochs, "lr": cfg.lr}
                step.update(optimizer=cfg.optimizer, batch_size=cfg.batch_size, augment=cfg.augment)
                step.update(data="owner", seed=seed)
                fields = {"from": f"m{teacher}", "category": "reference-student", "steps": [step]}
            lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
        return parse_spec_text("\n".join(lines) + "\n", SPEC_FILE)


def _toml(value: Any) -> str:
    """``value`` as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):  # TOML takes every character but the controls JSON escapes, and DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise ParameterError(f"a reference model's setting {value!r} cannot be written into its zoo spec")


def _toml_key(key: str) -> str:
    """A TOML key: bare where TOML allows it, else quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml(key)


def build_reference_zoo(
    spec: ZooSpec,
    meta: dict[str, Any],
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    backend: str = "local",
    device: str = "cpu",
    progress: bool = True,
) -> ZooManifest:
    """Build (or finish building) ``spec``'s reference models into the folder ``out`` with the
    zoo builder (``workers`` processes, default the CPU count; ``backend`` local or ray), after
    checking the data gives the source's input shape. Returns the manifest, rows in plan order."""
    splits = DataKey(spec.data, spec.split_seed, spec.train_subset).load().splits  # the builder's cache
    shape = tuple(meta.get("input_shape") or ())
    if tuple(splits.owner.input_shape) != shape:
        raise ParameterError(
            f"{spec.data} gives {'x'.join(map(str, splits.owner.input_shape))} inputs but the source takes "
            f"{'x'.join(map(str, shape))}; give the source's data (e.g. digits:16)"
        )
    written = Path(out) / SPEC_FILE
    if written.is_file() and written.read_text("utf-8") != spec.text:
        raise ParameterError(
            f"{out} holds reference models planned with other settings (its {SPEC_FILE} differs): give a new "
            "folder, or the same settings to finish that build"
        )
    return build_zoo(spec, out, workers=workers, backend=backend, device=device, progress=progress)


def train_reference(
    meta: dict[str, Any],
    plan: ReferencePlan,
    *,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    backend: str = "local",
    device: str = "cpu",
    progress: bool = True,
) -> list[ModelprintModel]:
    """Train the models of ``plan``, independent of the source ``meta`` describes, on the
    owner's split, as the owner always can: same data set, other seeds and architectures, the
    source's training settings. They are built as a zoo (:func:`build_reference_zoo`) in
    ``out_dir``, or a temporary folder."""
    spec = plan.spec(meta)
    build = {"workers": workers, "backend": backend, "device": device, "progress": progress}
    folder = tempfile.TemporaryDirectory(prefix="modelprint-reference-") if out_dir is None else nullcontext(out_dir)
    with folder as root:
        manifest = build_reference_zoo(spec, meta, root, **build)
        return [load_model(manifest.path(row)) for row in manifest.rows]


def build_reference_set(
    source: ModelprintModel | Fingerprint,
    plan: ReferencePlan,
    out: str | os.PathLike,
    *,
    positives: bool = True,
    workers: int | None = None,
    backend: str = "local",
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``plan``'s models independent of ``source`` into ``out`` as a zoo built on
    ``workers`` processes of ``backend`` (resumed when ``out`` holds an unfinished build of the
    same plan), and record them with the owner's ``positives`` (derived copies of ``source``,
    see the module docstring). ``source`` may be a fingerprint of the owner's model, which
    records all the training needs; the set then holds no derived copies (they are made from
    the model). Returns the record written to ``out/reference.json``."""
    out = Path(out)
    if (out / REFERENCE_FILE).exists():
        raise ParameterError(
            f"{out} already holds a reference set: give it as `references`, or build anew", params=("references",)
        )
    if isinstance(source, Fingerprint):
        meta = {k: source.meta.get(k) for k in SOURCE_FIELDS}
        source_sha256, positives = source.meta["source_sha256"], False
    else:
        meta, source_sha256 = source_meta(source), weights_digest(source)
    spec = plan.spec(meta)
    build = {"workers": workers, "backend": backend, "device": device, "progress": progress}
    # the owner's copies derive from the source, which is no zoo model: one more process makes them meanwhile
    with task_backend("local", 0 if workers == 0 else 1) as pool:
        data = (spec.data, plan.split_seed, spec.train_subset, trusted_archs())
        making = pool.submit(_derived_copy_bytes, model_to_bytes(source), *data) if positives else None
        manifest = build_reference_zoo(spec, meta, out, **build)
        copies = _save_positives(pool.result(making), out) if making else []
    record = {
        "schema_version": REFERENCE_SCHEMA_VERSION,
        "modelprint": __version__,
        "source_sha256": source_sha256,
        "dataset": spec.data,
        "split_seed": plan.split_seed,
        "input_shape": meta["input_shape"],
        "first_seed": plan.first_seed,
        "epochs": plan.epochs,
        "students": plan.students,
        "models": _entries(manifest, plan.models(meta)),
        "positives": copies,
    }
    atomic_write_text(out / REFERENCE_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _entries(manifest: ZooManifest, plan: list) -> list[dict[str, Any]]:
    """Each reference model's entry in the record, from its zoo row and its place in the plan."""
    entries = []
    for row, (arch, args, seed, teacher) in zip(manifest.rows, plan, strict=True):
        entry = {"file": row["file"], "sha256": row["sha256"], "arch": arch, "arch_args": args, "seed": seed}
        entry["accuracy"] = row["accuracy"]
        if teacher is not None:
            entry["distilled_from"] = teacher
        entries.append(entry)
    return entries


def _derived_copy_bytes(
    source: ModelBytes, data: str, split_seed: int, train_subset: int, trusted: Sequence[str]
) -> list[ModelBytes]:
    """:func:`derived_copies` of ``source`` on the owner's split, as a task: values in, values
    out, on one thread (as every reference model), so the bytes do not depend on the machine."""
    trust_arch(*trusted)
    with task_threads(1):
        owner = DataKey(data, split_seed, train_subset).load().splits.owner
        return [model_to_bytes(m) for m in derived_copies(model_from_bytes(source), owner)]


def _save_positives(copies: list[ModelBytes], out: Path) -> list[dict[str, Any]]:
    """The owner's derived copies written under ``out/positives`` and their entries."""
    entries = []
    for name, payload in zip(("prune30", "prune60", "finetune", "prune60-finetune"), copies):
        path = write_model_bytes(payload, out / "positives" / f"positive-{name}")
        sha256 = hashlib.sha256(payload.weights).hexdigest()
        entries.append({"file": str(path.relative_to(out)), "sha256": sha256, "derived": name})
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
            "build` makes one); pass the folder as `negatives`, independent models",
            params=("negatives",),
        )
    if (Path(folder) / SPEC_FILE).is_file() and not (Path(folder) / REFERENCE_FILE).exists():
        raise ParameterError(
            f"{folder} holds an unfinished reference set (no {REFERENCE_FILE} yet): run the command that "
            "built it again to finish it"
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
