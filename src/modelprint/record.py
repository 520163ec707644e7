"""A verification record an arbiter can audit offline, and the audit.

A suspect behind an API can answer differently tomorrow, so a verdict is evidence only if
what the suspect answered is kept. :func:`recorded_verify` verifies as :func:`~modelprint.
verify.verify` does and writes down, in order, every query the suspect was sent (the sha256
of its exact float32 bytes) with the answer exactly as received (label, and the
probabilities unless the suspect is label-only) and when it came. Each entry holds the hash
of the one before and its own hash over both, so an edit, a deletion or a reordering
anywhere breaks the chain from there on. The record also holds the fingerprint's sha256,
the suspect's identity, the settings and the verdict.

:func:`audit` reproduces the verdict from the record and the fingerprint alone: it checks
the chain, that the fingerprint is the one recorded and that its queries hash to the
recorded ones, answers the queries again from the record, and runs the same verification.
Any difference is named. The record is untrusted input (either party may hand it over): it
is read as JSON under a size limit and every field is type-checked before use.

Example::

    verdict = recorded_verify("owner.fp.safetensors", open_suspect("stolen.onnx"), "record.json")
    audit("record.json", "owner.fp.safetensors").reproduced   # True, offline, without the suspect
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_text, sha256_file
from ._version import __version__
from .errors import ModelprintError, ParameterError
from .fingerprints import Fingerprint, method_of
from .models import ModelprintModel
from .suspects import Suspect, as_suspect
from .verify import DEFAULT_BATCH, DEFAULT_FPR, Verification, verify

RECORD_FORMAT = "modelprint-verification-record/1"
# A record holds about 0.6 kB per query with 10 classes: 100,000 such queries stay far under it,
# and parsing what it allows stays within a few GB of memory.
MAX_RECORD_BYTES = 256 << 20
GENESIS = "0" * 64
# What must come out the same when the verdict is reproduced.
COMPARED = ("verdict", "statistic", "p_value", "n", "queries", "threshold", "decided_by", "calibrated")


class RecordError(ModelprintError):
    """A record that cannot be read as one (truncated, not JSON, wrong types): exit code 2."""


# One encoder for every entry: json.dumps with options builds a new one per call, which was most
# of what recording cost.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 over the entry's canonical JSON (sorted keys, no spaces), its own ``hash`` left out."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_CANONICAL.encode(body).encode()).hexdigest()


def query_sha256(x: np.ndarray) -> str:
    """sha256 of one query's exact bytes as sent: float32, C order, shape (C, H, W)."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


@dataclass
class ChainRecorder:
    """Keeps every answered query as a chained entry (the :class:`~modelprint.suspects.base.Recorder`
    :meth:`Suspect.predict` tells)."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def answered(self, x: np.ndarray, labels: np.ndarray, probs: np.ndarray | None, seconds: float) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        rows = None if probs is None else probs.tolist()
        for i in range(len(x)):
            entry = {
                "index": len(self.entries),
                "input_sha256": query_sha256(x[i]),
                "label": int(labels[i]),
                "probs": None if rows is None else rows[i],
                "received": at,
                "seconds": round(seconds, 4),
                "prev": self.entries[-1]["hash"] if self.entries else GENESIS,
            }
            entry["hash"] = entry_hash(entry)
            self.entries.append(entry)


def recorded_verify(
    fingerprint: Fingerprint | str | Path,
    suspect: ModelprintModel | Suspect,
    path: str | Path,
    *,
    fingerprint_sha256: str | None = None,
    fpr: float = DEFAULT_FPR,
    max_queries: int | None = None,
    batch: int = DEFAULT_BATCH,
    threshold: float | None = None,
    commitment: str | None = None,
) -> Verification:
    """:func:`~modelprint.verify.verify` of ``suspect`` against ``fingerprint`` (a fingerprint
    file, or one already loaded with ``fingerprint_sha256`` the sha256 of its file, as
    :meth:`Fingerprint.save` returns it), and the record of it written to ``path`` (atomically)."""
    if isinstance(fingerprint, Fingerprint):
        if not fingerprint_sha256:
            raise ParameterError("a loaded fingerprint needs fingerprint_sha256, its file's sha256 (save returns it)")
        fp = fingerprint
    else:
        fp, fingerprint_sha256 = Fingerprint.load(fingerprint), sha256_file(fingerprint)
    method = method_of(fp)
    if method.evidence_kind == "components":
        raise ParameterError(
            f"{method.name} reads the suspect's weights, not its answers: there is nothing to record; keep the "
            "suspect file (its sha256 is in the verdict)"
        )
    suspect = as_suspect(suspect)
    recorder = ChainRecorder()
    suspect.recorder = recorder
    try:
        verdict = verify(fp, suspect, fpr=fpr, max_queries=max_queries, batch=batch, threshold=threshold)
    finally:
        suspect.recorder = None
    record = {
        "format": RECORD_FORMAT,
        "modelprint": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint_sha256": fingerprint_sha256,
        "commitment": commitment,
        "suspect": suspect.describe(),
        "settings": {"fpr": fpr, "max_queries": max_queries, "batch": batch, "threshold": threshold},
        "entries": recorder.entries,
        "head": recorder.entries[-1]["hash"] if recorder.entries else GENESIS,
        "verification": {**verdict.to_dict(), "evidence": verdict.evidence},
    }
    # compact: the C encoder is 10x the indenting one, and `python -m json.tool` prints it readably
    atomic_write_text(Path(path), json.dumps(record, separators=(",", ":")) + "\n")
    return verdict


@dataclass(frozen=True)
class Audit:
    """What :func:`audit` found: ``reproduced``, or the ``differences`` (one line each)."""

    reproduced: bool
    differences: list[str]
    recorded: dict[str, Any]
    recomputed: dict[str, Any] | None


def read_record(path: str | Path) -> dict[str, Any]:
    """The record at ``path``, its shape checked; :class:`RecordError` when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise RecordError(f"{p}: no such record")
    if p.stat().st_size > MAX_RECORD_BYTES:
        raise RecordError(f"{p}: {p.stat().st_size} bytes, over the {MAX_RECORD_BYTES}-byte limit for a record")
    try:
        record = json.loads(p.read_text("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise RecordError(f"{p}: not a verification record (not JSON: {e.__class__.__name__}, truncated?)") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise RecordError(f"{p}: not a verification record (format is not {RECORD_FORMAT})")
    _check_types(record, p)
    return record


def _check_types(record: dict[str, Any], p: Path) -> None:
    shapes = {"fingerprint_sha256": str, "suspect": dict, "settings": dict, "entries": list, "head": str}
    shapes |= {"verification": dict}
    for key, kind in shapes.items():
        if not isinstance(record.get(key), kind):
            raise RecordError(f"{p}: not a verification record ({key} missing or not a {kind.__name__})")
    fields = {"index": int, "input_sha256": str, "label": int, "prev": str, "hash": str}
    for i, e in enumerate(record["entries"]):
        if not isinstance(e, dict) or any(not isinstance(e.get(k), t) for k, t in fields.items()):
            raise RecordError(f"{p}: entry {i} is not a query entry (index, input_sha256, label, prev, hash)")
        probs = e.get("probs")
        if probs is not None and not (isinstance(probs, list) and all(isinstance(v, (int, float)) for v in probs)):
            raise RecordError(f"{p}: entry {i}'s probabilities are not a list of numbers")


def chain_breaks(entries: list[dict[str, Any]], head: str) -> list[str]:
    """Where the hash chain does not hold: an edited entry, a missing or moved one, a changed head."""
    problems, prev = [], GENESIS
    for i, e in enumerate(entries):
        if e["index"] != i:
            problems.append(f"entry {i} says it is entry {e['index']}: an entry was deleted, added or moved")
        if e["prev"] != prev:
            problems.append(f"entry {i} does not follow the entry before it (its prev hash differs)")
        if entry_hash(e) != e["hash"]:
            problems.append(f"entry {i} was changed after it was recorded (its hash does not match its content)")
        prev = e["hash"]
    if prev != head:
        problems.append("the record's head is not the last entry's hash: entries were removed from the end")
    return problems


class ReplaySuspect(Suspect):
    """Answers the fingerprint's queries from a record, in the recorded order; a query whose
    bytes hash otherwise than the recorded one is noted in ``mismatches``, not answered."""

    name = "record"

    def __init__(self, record: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.entries = record["entries"]
        self.labels_only = bool(record["suspect"].get("labels_only")) or any(
            e.get("probs") is None for e in self.entries
        )
        self.input_shape, self.num_classes = input_shape, num_classes
        self.identity = str(record["suspect"].get("identity", ""))
        self.location = "record"
        self.next = 0
        self.mismatches: list[str] = []

    def _answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.next + len(x) > len(self.entries):
            raise RecordError(
                f"the verification asks for query {len(self.entries) + 1}, but the record holds {len(self.entries)}"
            )
        rows = self.entries[self.next : self.next + len(x)]
        for i, (query, e) in enumerate(zip(x, rows)):
            if query_sha256(query) != e["input_sha256"]:
                self.mismatches.append(
                    f"query {self.next + i}: the fingerprint's query does not hash to the recorded one"
                )
        self.next += len(x)
        labels = np.array([e["label"] for e in rows], dtype=np.int64)
        probs = None if self.labels_only else np.array([e["probs"] for e in rows], dtype=np.float32)
        return labels, probs


def audit(record_path: str | Path, fingerprint: str | Path) -> Audit:
    """Reproduce a recorded verification from the record and the fingerprint file alone."""
    record = read_record(record_path)
    differences = chain_breaks(record["entries"], record["head"])
    digest = sha256_file(fingerprint)
    if digest != record["fingerprint_sha256"]:
        differences.append(f"the fingerprint has sha256 {digest}, the record {record['fingerprint_sha256']}")
    commitment = record.get("commitment")
    if commitment is not None and str(commitment).strip().lower() != digest:
        differences.append(f"the record's commitment {str(commitment)[:80]!r} is not the fingerprint's sha256 {digest}")
    fp = Fingerprint.load(fingerprint)
    replay = ReplaySuspect(record, tuple(fp.input_shape), int(fp.meta.get("num_classes") or 0))
    settings = _settings(record["settings"])
    try:
        again = verify(fp, replay, **settings)
    except ModelprintError as e:
        replayed = f"the verification could not be replayed: {e}"
        return Audit(False, [*differences, *replay.mismatches, replayed], record["verification"], None)
    differences += replay.mismatches
    if replay.next != len(record["entries"]):
        differences.append(f"the verification used {replay.next} of the {len(record['entries'])} recorded answers")
    recomputed = again.to_dict()
    for key in COMPARED:
        if not _same(record["verification"].get(key), recomputed.get(key)):
            differences.append(
                f"{key}: recorded {record['verification'].get(key)!r}, recomputed {recomputed.get(key)!r}"
            )
    return Audit(not differences, differences, record["verification"], recomputed)


def _settings(settings: dict[str, Any]) -> dict[str, Any]:
    """verify's keyword arguments from a record's settings, each checked to be a number or absent."""
    out: dict[str, Any] = {"fpr": settings.get("fpr", DEFAULT_FPR), "batch": settings.get("batch", DEFAULT_BATCH)}
    out |= {"max_queries": settings.get("max_queries"), "threshold": settings.get("threshold")}
    for key, value in out.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RecordError(f"the record's setting {key} is not a number: {value!r}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(np.isclose(a, b, rtol=1e-9, atol=0))
    return a == b
