"""A verification record an arbiter can audit offline, and the audit.

A suspect behind an API can answer differently tomorrow, so a verdict is evidence only if
what the suspect answered is kept. :func:`recorded_verify` verifies as :func:`~modelprint.
verify.verify` does and writes down, in order, every query the suspect was sent (the sha256
of its exact float32 bytes) with the answer exactly as the verification used it (label, and
the probabilities unless the suspect is label-only, as float32 little-endian in base64: exact,
and ten times faster to write than decimals; :func:`probabilities` decodes them) and when it
came. Each entry holds the hash
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

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_text, sha256_file
from ._version import __version__
from .combine import CombinedVerification, verify_combined
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
_COMPACT = json.JSONEncoder(separators=(",", ":"))


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
    :meth:`Suspect.predict` tells), each as the JSON it was hashed over plus its hash, so the
    record is encoded once; ``entries`` parses them back."""

    encoded: list[str] = field(default_factory=list)
    head: str = GENESIS

    def answered(self, x: np.ndarray, labels: np.ndarray, probs: np.ndarray | None, seconds: float) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        rows = None if probs is None else np.ascontiguousarray(probs, dtype="<f4")
        x = np.ascontiguousarray(x, dtype=np.float32)
        seconds = round(seconds, 4)
        for i in range(len(x)):
            body = canonical_entry(
                index=len(self.encoded),
                input_sha256=query_sha256(x[i]),
                label=int(labels[i]),
                prev=self.head,
                probs=None if rows is None else base64.b64encode(rows[i].tobytes()).decode("ascii"),
                received=at,
                seconds=seconds,
            )
            self.head = hashlib.sha256(body.encode()).hexdigest()
            self.encoded.append(f'{body[:-1]},"hash":"{self.head}"}}')

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.encoded]


def canonical_entry(
    *, index: int, input_sha256: str, label: int, prev: str, probs: str | None, received: str, seconds: float
) -> str:
    """What :func:`entry_hash` hashes for an entry with these fields: the same canonical JSON,
    written directly (the values are ints, a float and strings that need no escaping), because
    the general encoder was half of what recording cost."""
    answer = "null" if probs is None else f'"{probs}"'
    return (
        f'{{"index":{index},"input_sha256":"{input_sha256}","label":{label},"prev":"{prev}",'
        f'"probs":{answer},"received":"{received}","seconds":{seconds!r}}}'
    )


def probabilities(entry: dict[str, Any], num_classes: int) -> np.ndarray | None:
    """An entry's probabilities as float32 (None for a label-only answer); :class:`RecordError`
    when they are not ``num_classes`` finite float32 values in base64."""
    if entry.get("probs") is None:
        return None
    try:
        raw = base64.b64decode(entry["probs"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RecordError(f"entry {entry.get('index')}'s probabilities are not base64") from None
    if len(raw) != 4 * num_classes:
        raise RecordError(f"entry {entry.get('index')} holds {len(raw) // 4} probabilities, not {num_classes}")
    values = np.frombuffer(raw, dtype="<f4")
    if not np.all(np.isfinite(values)):
        raise RecordError(f"entry {entry.get('index')}'s probabilities are not finite")
    return values


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
    fp, digest = _recordable(fingerprint, fingerprint_sha256)
    suspect = as_suspect(suspect)
    with _recording(suspect) as recorder:
        verdict = verify(fp, suspect, fpr=fpr, max_queries=max_queries, batch=batch, threshold=threshold)
    settings = {"fpr": fpr, "max_queries": max_queries, "batch": batch, "threshold": threshold}
    verification = {**_without_region(verdict.to_dict()), "evidence": verdict.evidence}
    _write_record(path, digest, commitment, suspect, settings, recorder, verification)
    return verdict


def recorded_verify_combined(
    fingerprints: Sequence[Fingerprint | str | Path],
    suspect: ModelprintModel | Suspect,
    path: str | Path,
    *,
    fingerprint_sha256s: Sequence[str] | None = None,
    fpr: float = DEFAULT_FPR,
    max_queries: int | None = None,
    commitments: Sequence[str] | None = None,
) -> CombinedVerification:
    """:func:`~modelprint.combine.verify_combined` of ``suspect`` against several fingerprints of
    one source, and one record of it: the fingerprints' sha256s in order, and every query of
    every family in the order it was sent, in one chain."""
    digests = list(fingerprint_sha256s) if fingerprint_sha256s is not None else [None] * len(fingerprints)
    if len(digests) != len(fingerprints) or (commitments is not None and len(commitments) != len(fingerprints)):
        raise ParameterError("give one fingerprint_sha256 and one commitment per fingerprint, in order")
    loaded = [_recordable(f, d) for f, d in zip(fingerprints, digests)]
    suspect = as_suspect(suspect)
    with _recording(suspect) as recorder:
        combined = verify_combined([fp for fp, _ in loaded], suspect, fpr=fpr, max_queries=max_queries)
    verification = combined.to_dict()
    verification["families"] = [
        {**_without_region(family), "evidence": verdict.evidence}
        for family, verdict in zip(verification["families"], combined.families)
    ]
    settings = {"fpr": fpr, "max_queries": max_queries}
    given = None if commitments is None else list(commitments)
    _write_record(path, [d for _, d in loaded], given, suspect, settings, recorder, verification)
    return combined


def _without_region(verification: dict[str, Any]) -> dict[str, Any]:
    """The verification without its null's confidence region: the fingerprint the record names
    holds it, and it was four fifths of the record's header (and its encoding time)."""
    null = {k: v for k, v in (verification.get("null") or {}).items() if k != "region"}
    return {**verification, "null": null}


def _recordable(fingerprint: Fingerprint | str | Path, digest: str | None) -> tuple[Fingerprint, str]:
    """The fingerprint, loaded, and its file's sha256; refused when its method reads weights."""
    if isinstance(fingerprint, Fingerprint):
        if not digest:
            raise ParameterError("a loaded fingerprint needs fingerprint_sha256, its file's sha256 (save returns it)")
        fp = fingerprint
    else:
        fp, digest = Fingerprint.load(fingerprint), sha256_file(fingerprint)
    method = method_of(fp)
    if method.evidence_kind == "components":
        raise ParameterError(
            f"{method.name} reads the suspect's weights, not its answers: there is nothing to record; keep the "
            "suspect file (its sha256 is in the verdict)"
        )
    return fp, digest


@contextmanager
def _recording(suspect: Suspect) -> Iterator[ChainRecorder]:
    recorder = ChainRecorder()
    suspect.recorder = recorder
    try:
        yield recorder
    finally:
        suspect.recorder = None


def _write_record(
    path: str | Path,
    digest: str | list[str],
    commitment: str | list[str] | None,
    suspect: Suspect,
    settings: dict[str, Any],
    recorder: ChainRecorder,
    verification: dict[str, Any],
) -> None:
    record = {
        "format": RECORD_FORMAT,
        "modelprint": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint_sha256": digest,
        "commitment": commitment,
        "suspect": suspect.describe(),
        "settings": settings,
        "head": recorder.head,
        "verification": verification,
    }
    atomic_write_text(Path(path), _record_json(record, recorder.encoded))


def _record_json(record: dict[str, Any], entries: list[str]) -> str:
    """The record as compact JSON (`python -m json.tool` prints it readably), its entries spliced
    in as they were encoded and hashed rather than encoded a second time."""
    head = _COMPACT.encode(record)
    return f'{head[:-1]},"entries":[{",".join(entries)}]}}\n'


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
    shapes = {"suspect": dict, "settings": dict, "entries": list, "head": str, "verification": dict}
    for key, kind in shapes.items():
        if not isinstance(record.get(key), kind):
            raise RecordError(f"{p}: not a verification record ({key} missing or not a {kind.__name__})")
    digest, commitment = record.get("fingerprint_sha256"), record.get("commitment")
    several = isinstance(digest, list)
    if not (isinstance(digest, str) or (several and digest and all(isinstance(d, str) for d in digest))):
        raise RecordError(f"{p}: not a verification record (fingerprint_sha256 is neither a sha256 nor a list of them)")
    if several and not (commitment is None or (isinstance(commitment, list) and len(commitment) == len(digest))):
        raise RecordError(f"{p}: a combined record needs one commitment per fingerprint, or none")
    families = record["verification"].get("families")
    if several and not (isinstance(families, list) and all(isinstance(f, dict) for f in families)):
        raise RecordError(f"{p}: a combined record's verification lists no families")
    fields = {"index": int, "input_sha256": str, "label": int, "prev": str, "hash": str}
    for i, e in enumerate(record["entries"]):
        if not isinstance(e, dict) or any(not isinstance(e.get(k), t) for k, t in fields.items()):
            raise RecordError(f"{p}: entry {i} is not a query entry (index, input_sha256, label, prev, hash)")
        if e.get("probs") is not None and not isinstance(e["probs"], str):
            raise RecordError(f"{p}: entry {i}'s probabilities are not base64 text")


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
        probs = None if self.labels_only else np.stack([probabilities(e, self.num_classes) for e in rows])
        return labels, probs


def audit(record: str | Path | dict[str, Any], fingerprint: str | Path | Sequence[str | Path]) -> Audit:
    """Reproduce a recorded verification from the record (its file, or what :func:`read_record`
    read from it) and the fingerprint file(s) alone: one file, or for a combined record the
    files in the order it names them."""
    record = record if isinstance(record, dict) else read_record(record)
    paths = [fingerprint] if isinstance(fingerprint, (str, os.PathLike)) else list(fingerprint)
    combined = isinstance(record["fingerprint_sha256"], list)
    named = record["fingerprint_sha256"] if combined else [record["fingerprint_sha256"]]
    if len(paths) != len(named):
        raise RecordError(f"the record names {len(named)} fingerprint(s); {len(paths)} given")
    commitments = record.get("commitment") if combined else [record.get("commitment")]
    differences = chain_breaks(record["entries"], record["head"])
    for i, (path, recorded, commitment) in enumerate(zip(paths, named, commitments or [None] * len(named))):
        differences += _identity_differences(sha256_file(path), recorded, commitment, i if combined else None)
    fps = [Fingerprint.load(p) for p in paths]
    replay = ReplaySuspect(record, tuple(fps[0].input_shape), int(fps[0].meta.get("num_classes") or 0))
    settings = _settings(record["settings"])
    try:
        if combined:
            again = verify_combined(fps, replay, fpr=settings["fpr"], max_queries=settings["max_queries"]).to_dict()
        else:
            again = verify(fps[0], replay, **settings).to_dict()
    except ModelprintError as e:
        replayed = f"the verification could not be replayed: {e}"
        return Audit(False, [*differences, *replay.mismatches, replayed], record["verification"], None)
    differences += replay.mismatches
    if replay.next != len(record["entries"]):
        differences.append(f"the verification used {replay.next} of the {len(record['entries'])} recorded answers")
    differences += _verification_differences(record["verification"], again, combined)
    return Audit(not differences, differences, record["verification"], again)


def _identity_differences(digest: str, recorded: str, commitment: Any, position: int | None) -> list[str]:
    which = "the fingerprint" if position is None else f"fingerprint {position + 1}"
    out = []
    if digest != recorded:
        out.append(f"{which} has sha256 {digest}, the record {recorded}")
    if commitment is not None and str(commitment).strip().lower() != digest:
        out.append(f"the record's commitment {str(commitment)[:80]!r} is not {which}'s sha256 {digest}")
    return out


def _verification_differences(recorded: dict[str, Any], again: dict[str, Any], combined: bool) -> list[str]:
    """What the replay computed otherwise than the record says, one line per field."""
    if not combined:
        pairs = [("", recorded, again, COMPARED)]
    else:
        pairs = [("", recorded, again, ("verdict", "queries"))]
        families = recorded.get("families") or []
        if len(families) != len(again["families"]):
            return [f"families: recorded {len(families)}, recomputed {len(again['families'])}"]
        for i, (r, a) in enumerate(zip(families, again["families"])):
            pairs.append((f"family {i + 1} ({a['method']}) ", r, a, (*COMPARED, "adjusted_p", "rejected")))
    return [
        f"{prefix}{key}: recorded {r.get(key)!r}, recomputed {a.get(key)!r}"
        for prefix, r, a, keys in pairs
        for key in keys
        if not _same(r.get(key), a.get(key))
    ]


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
