"""The fingerprint artifact, the evidence contract, and the base class of every method.

Every family answers two questions, so verification, calibration, evaluation, benchmarks
and reports never special-case one:

* :meth:`FingerprintMethod.evidence`: what a suspect gives back, item by item: per-query
  label agreement (0/1) for query sets, per-query scores for score-based methods,
  per-component similarities for white-box methods;
* :meth:`FingerprintMethod.statistic`: one number from the evidence, larger = more like
  the source (matching rate, verifier score, fingerprint score).

``null_family`` says how the statistic's null is modelled: ``"counts"`` when every item is
0/1 (beta-binomial over independent models), ``"scores"`` for a similarity (normal),
``"probabilities"`` for a score in [0, 1] (Beta), ``"keys"`` for a mark's components
(simulated independent keys); see :mod:`modelprint.null`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .._io import atomic_write, check_readable, nesting_depth, sha256_file
from .._version import __version__
from ..data import Dataset, load_splits
from ..errors import FingerprintFileError, ModelprintError, ParameterError, SuspectError
from ..models import ModelprintModel, weights_digest
from ..null import Null, NullEvidence
from ..parallel import check_device
from ..registry import Registry
from ..suspects import as_suspect, check_compatible

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
        except (KeyError, TypeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
            raise FingerprintFileError(f"{p}: not a modelprint fingerprint (no readable 'modelprint' header)") from None
        if version != FINGERPRINT_SCHEMA_VERSION:
            raise FingerprintFileError(
                f"{p}: fingerprint schema {version!r}, this modelprint reads {FINGERPRINT_SCHEMA_VERSION}"
            )
        x, y = tensors.get("x"), tensors.get("y")
        if x is None or y is None or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise FingerprintFileError(f"{p}: expected tensors x (N,C,H,W) and y (N,)")
        check_meta(meta, x, y, str(p))
        extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
        return cls(x.float(), y.long(), meta, extra)


def check_meta(meta: Any, x: torch.Tensor, y: torch.Tensor, where: str) -> None:
    """Refuse a fingerprint whose metadata or tensors could not have been written by modelprint:
    the header's types, the stored null's numbers, queries in [0, 1], labels among the classes."""

    def bad(what: str) -> FingerprintFileError:
        return FingerprintFileError(f"{where}: {what}; the file is damaged or was not written by modelprint")

    if not isinstance(meta, dict):
        raise bad(f"its metadata is a {type(meta).__name__}, not a table")
    if nesting_depth(meta, MAX_META_DEPTH) > MAX_META_DEPTH:
        raise bad(f"its metadata nests tables deeper than {MAX_META_DEPTH} levels")
    odd = _non_finite(meta)
    if odd:
        raise bad(f"its metadata holds {odd}")
    if not isinstance(meta.get("method"), str) or not meta["method"]:
        raise bad("its metadata names no method")
    for key in ("params", "positives"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise bad(f"its {key} is not a table")
    classes = meta.get("num_classes")
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 2):
        raise bad(f"its num_classes is {classes!r}")
    problem = Null.problem(meta["null"]) if meta.get("null") is not None else None
    if problem:
        raise bad(problem)
    for key in ("source_mean", "source_std"):
        values = meta.get(key)
        if values is None:
            continue
        if (
            not isinstance(values, list)
            or len(values) != x.shape[1]
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        ):
            raise bad(f"its {key} is not one number per input channel")
        if key == "source_std" and min(values) <= 0:
            raise bad("its source_std holds a value that is not positive")
    if len(x) and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise bad("its queries are not all finite and in [0, 1]")
    if len(y) and classes is not None and (y.min() < 0 or y.max() >= classes):
        raise bad(f"its labels run {int(y.min())}..{int(y.max())}, outside the {classes} classes")


# Deeper than any metadata modelprint writes (a null's region is 3 levels down).
MAX_META_DEPTH = 16


def _non_finite(value: Any, where: str = "") -> str | None:
    """Where the metadata (already known to nest at most :data:`MAX_META_DEPTH` deep) holds a
    number that is not finite, NaN or infinity: no setting, statistic or null of modelprint's is."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} at {where}, not a finite number"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found[:200]
    return None


def check_prepare_settings(method: FingerprintMethod, settings: dict[str, Any]) -> None:
    """Refuse preparation settings the method does not take, naming the ones it does."""
    unknown = sorted(set(settings) - set(method.prepare_settings))
    if unknown:
        takes = ", ".join(method.prepare_settings) or "none"
        raise ParameterError(
            f"method {method.name} takes no setting {', '.join(unknown)} to prepare; it takes: {takes}"
        )


@contextmanager
def fitting(fp: Fingerprint, method_name: str) -> Iterator[None]:
    """Turn a method's failure on a fingerprint that does not carry what it needs (a method
    name swapped in the header, a missing tensor) into one clear error instead of a traceback."""
    try:
        yield
    except ModelprintError:
        raise
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, RuntimeError) as e:
        detail = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise FingerprintFileError(
            f"the fingerprint does not carry what method {method_name} needs ({type(e).__name__}: {detail}); "
            "was its header changed? check it against the owner's commitment (its published sha256)"
        ) from None


@dataclass(frozen=True)
class Evidence:
    """A suspect's answer to a fingerprint, one value per item (query or component), in item order.

    ``values`` (items,) float64: 0/1 agreement for label methods, a score or similarity
    otherwise. ``queries`` is what getting it cost (0 for white-box evidence)."""

    values: np.ndarray
    kind: str  # "labels" | "scores" | "components"
    queries: int

    def __len__(self) -> int:
        return len(self.values)


def owner_images(model: ModelprintModel, data: Dataset | None, n: int, seed: int) -> torch.Tensor:
    """``n`` images drawn with ``seed`` from ``data``, or from the owner's split of the data set
    the model card names when no data is given (for methods that start from the owner's data)."""
    if data is None:
        if not model.card.dataset:
            raise ParameterError("the model card names no data set: pass the owner's data")
        data = load_splits(model.card.dataset).owner
    if len(data) < n:
        raise ParameterError(f"need {n} owner images, the data holds {len(data)}")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.x[idx]


# What a suspect gives back, item by item (see the module docstring).
EvidenceKind = Literal["labels", "scores", "components"]
# What a high statistic says (see FingerprintMethod.evidence_of).
EvidenceOf = Literal["lineage", "training-data"]


class FingerprintMethod(ABC):
    """Base of every method: settings in the constructor, the model at call time.

    Subclasses are keyword-only dataclasses (their fields are the paper's parameters)
    and implement ``_generate``; :meth:`generate` validates, seeds and packages. The
    default evidence is label agreement on the stored queries and the statistic the
    matching rate; score-based and white-box families override :meth:`_evidence`,
    :meth:`statistic`, ``evidence_kind`` and ``null_family``.
    """

    name: str = ""
    evidence_kind: ClassVar[EvidenceKind] = "labels"
    statistic_name: ClassVar[str] = "matching_rate"
    null_family: ClassVar[NullEvidence] = "counts"
    # What a high statistic says: "lineage" (the suspect derives from the source) or "training-data"
    # (it learnt the owner's private points, as the source did: dataset inference). A model trained
    # on the same data without any theft is a negative for the first and scores like the source for
    # the second, which also shows nothing when the source did not memorise its points.
    evidence_of: ClassVar[EvidenceOf] = "lineage"
    # Where the method comes from, as a dispute report cites it.
    paper: ClassVar[str] = ""
    # Evidence needs the suspect's scores (probabilities), not only its labels: a label-only suspect is refused.
    needs_scores: ClassVar[bool] = False
    # Boolean settings that switch a paper's tricks on and off, for `bench --ablation` (short name -> setting).
    ablation: ClassVar[dict[str, str]] = {}
    # The paper's reported ARUC per combination of those tricks kept (e.g. "AL+IT"), for the bench report.
    paper_ablation: ClassVar[dict[str, float]] = {}

    # What :meth:`prepare` accepts (``fingerprint create --host/--mark``, a zoo spec's ``mark``).
    prepare_settings: ClassVar[tuple[str, ...]] = ()
    # What the seed of :meth:`generate` is to the owner, as the CLI names it when it draws one.
    seed_name: ClassVar[str] = "seed"

    @property
    def sequential(self) -> bool:
        """Whether verification may spend the items in order and stop early: only when each is
        0/1 agreement, i.e. the statistic's null is a count null."""
        return self.null_family == "counts"

    def items(self, fp: Fingerprint) -> int:
        """How many evidence items the fingerprint holds (its queries, for query sets)."""
        return len(fp)

    def needs_preparation(self, source: ModelprintModel) -> bool:
        """Whether ``source`` must go through :meth:`prepare` before :meth:`generate` (a white-box
        mark that is not trained in yet); black-box methods read any model as it is."""
        return False

    def prepare(
        self,
        source: ModelprintModel,
        owner: Dataset,
        *,
        key: int,
        test: Dataset | None = None,
        progress: bool = True,
        **settings: Any,
    ) -> ModelprintModel:
        """The model to generate from: a copy of ``source`` changed by the owner with ``key`` and
        ``settings`` on the ``owner`` data (a method that embeds a mark); ``source`` by default."""
        check_prepare_settings(self, settings)
        return source

    @classmethod
    def learnt_from(cls, meta: dict[str, Any]) -> dict[str, str]:
        """The models a fingerprint was trained on, ``{weights sha256: id}``, from its metadata's
        ``trained_models`` (methods that learn from a training zoo record them there): a
        benchmark must not score them, or it would measure memory."""
        return {r["sha256"]: r["id"] for r in meta.get("trained_models") or []}

    def summary(self, fp: Fingerprint) -> str:
        """One line on what ``fp`` holds, for ``fingerprint create`` and ``fingerprint show``."""
        return f"{len(fp)} queries"

    def evidence(self, fp: Fingerprint, suspect: Any, start: int = 0, stop: int | None = None) -> Evidence:
        """Evidence from ``suspect`` (a model, or any :class:`~modelprint.suspects.Suspect`: a file,
        an exported graph, an API) for items ``start:stop`` (all by default); checks the suspect first.

        Components evidence is read from weights: it needs a suspect whose weights can be read
        (a model file or an in-process model) and refuses the others with one clear message."""
        total = self.items(fp)
        stop = total if stop is None else min(stop, total)
        if not 0 <= start < stop:
            raise ParameterError(f"no evidence items in [{start}, {stop}) of a fingerprint with {total}")
        adapter = as_suspect(suspect)
        check_compatible(fp.input_shape, fp.meta.get("num_classes"), adapter)
        if self.needs_scores and adapter.labels_only:
            raise SuspectError(
                f"{self.name} reads the suspect's scores (probabilities) and this suspect answers with labels "
                "only: verify it with a label method (c, ltrc, naturalfinger, ipguard, metafinger, ...)"
            )
        if self.evidence_kind == "components" and adapter.model is None:
            raise SuspectError(
                f"{self.name} compares weights and this suspect ({adapter.name}) does not expose them: "
                "give its modelprint model file, or verify it with a black-box method"
            )
        with fitting(fp, self.name):
            ev = self._evidence(fp, adapter.model if self.evidence_kind == "components" else adapter, start, stop)
        values = np.asarray(ev.values, dtype=np.float64)
        if values.shape != (stop - start,) or not np.isfinite(values).all():
            raise ParameterError(f"{self.name}: evidence must be {stop - start} finite values, got {values.shape}")
        return Evidence(values, ev.kind, ev.queries)

    def _evidence(self, fp: Fingerprint, suspect: Any, start: int, stop: int) -> Evidence:
        """Label agreement on queries ``start:stop``; ``suspect`` is a Suspect (a model for components evidence)."""
        labels = suspect.predict(fp.x[start:stop]).labels
        return Evidence((labels == fp.y[start:stop]).numpy().astype(np.float64), "labels", stop - start)

    def reference_model(self, fp: Fingerprint, model: ModelprintModel, seed: int) -> ModelprintModel:
        """What an independent reference model trained with ``seed`` looks like to this method's
        null; the model itself for black-box methods (white-box ones give it its own owner's mark)."""
        return model

    def fit_null(self, fp: Fingerprint, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        """The null of this method's statistic, fitted on reference models' ``evidence`` and
        ``statistics``; a family that can simulate independent owners adds them here."""
        return Null.for_method(self.null_family).fit(evidence, statistics)

    def tuning_grid(self, input_shape: tuple[int, ...]) -> dict[str, list[Any]]:
        """Candidate values per setting for ``fingerprint create --tune``, searched one setting at a
        time in this order (first value = where the search starts); empty = nothing to tune."""
        return {}

    def required_inputs(self) -> dict[str, str]:
        """Settings that name files this method cannot work without ({setting: what it is}),
        so that a caller can check them before any work; none by default."""
        return {}

    def missing_inputs(self) -> dict[str, str]:
        """The :meth:`required_inputs` left unset, or naming a path that does not exist."""
        missing = {}
        for setting, what in self.required_inputs().items():
            value = getattr(self, setting, None)
            if not value:
                missing[setting] = what
            elif not Path(str(value)).exists():
                missing[setting] = f"{what}; {value} does not exist"
        return missing

    def inputs_digest(self) -> str:
        """sha256 of the files the settings name (a GAN, a training zoo), so that a cache keyed
        on the settings notices when those files change; empty when the settings name none."""
        return ""

    def statistic(self, values: np.ndarray) -> float:
        """One number from the evidence values; the mean by default (the matching rate for labels)."""
        return float(np.mean(values))

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
        check_device(device)
        model = source.to(device).eval()
        started = time.time()
        # Methods may freeze or unfreeze the source's weights while they search; the caller gets them back as lent.
        requires = [p.requires_grad for p in source.parameters()]
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                x, y, extra, info = self._generate(model, data, n=n, seed=seed, device=device, progress=progress)
        finally:
            for p, r in zip(source.parameters(), requires):
                p.requires_grad_(r)
        source.cpu()
        created = os.environ.get("SOURCE_DATE_EPOCH")
        meta = {
            "method": self.name,
            "params": self.params(),
            "n": n,
            "seed": seed,
            "source_sha256": weights_digest(source),
            "source_arch": source.card.arch,
            "source_arch_args": source.card.arch_args,
            "source_training": source.card.training,
            "dataset": source.card.dataset,
            "num_classes": source.card.num_classes,
            "input_shape": list(source.card.input_shape),
            # the source's preprocessing: a plain module given later (a reference, a suspect) gets the same
            "source_mean": list(source.card.mean),
            "source_std": list(source.card.std),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(created) if created else started)),
            "generation_seconds": None if created else round(time.time() - started, 3),
            "modelprint_version": __version__,
            **info,
        }
        return Fingerprint(
            x.detach().cpu().float(), y.detach().cpu().long(), meta, {k: v.detach().cpu() for k, v in extra.items()}
        )

    @abstractmethod
    def _generate(
        self, model: ModelprintModel, data: Dataset | None, *, n: int, seed: int, device: str, progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        """The queries ``x``, their labels ``y``, extra tensors and metadata of ``n`` items."""


METHODS: Registry[FingerprintMethod] = Registry("fingerprint method")
register_method = METHODS.register

create_method = METHODS.create


def ablation_variants(name: str) -> dict[str, tuple[str, dict[str, bool]]]:
    """Every combination of the method's tricks, as ``{label: (name, settings)}``: the label
    lists the tricks kept, e.g. ``naturalfinger[AL+IT]``; all kept is the plain ``name``."""

    tricks = METHODS.get(name).ablation
    out: dict[str, tuple[str, dict[str, bool]]] = {}
    for kept in itertools.product((False, True), repeat=len(tricks)):
        on = [short for short, k in zip(tricks, kept) if k]
        label = name if all(kept) else f"{name}[{'+'.join(on) or 'none'}]"
        out[label] = (name, {setting: k for setting, k in zip(tricks.values(), kept)})
    return out


def method_of(fp: Fingerprint) -> FingerprintMethod:
    """The method object that made ``fp``, with the settings it was made with."""
    name = fp.meta.get("method")
    if not isinstance(name, str) or name not in METHODS:
        raise FingerprintFileError(
            f"the fingerprint was made by method {name!r}, which this modelprint does not know "
            f"(known: {', '.join(METHODS.names())})"
        )
    params = fp.meta.get("params") or {}
    if not isinstance(params, dict):
        raise FingerprintFileError(f"the fingerprint's params are not a table of settings: {str(params)[:80]!r}")
    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(params) - fields)
    if unknown:  # a setting this modelprint would ignore could change what the fingerprint means
        raise FingerprintFileError(
            f"the fingerprint was made by {name} with settings this modelprint does not know: "
            f"{', '.join(map(str, unknown))[:200]} (its settings: {', '.join(sorted(fields)) or 'none'})"
        )
    return METHODS.create(name, **params)
