"""``manifest.jsonl``: one JSON line per finished model of a zoo.

Fields: id, role, category, arch, parent (id of the zoo model it derives from), recipe
(the steps that made it), accuracy (on the test split), file (relative to the zoo),
sha256 (of the weights file) and status. The builder appends a line as each model
finishes and rewrites the file in spec order at the end; a line cut short by a crash is
ignored on reading, so a killed build leaves a manifest that still reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from .._io import atomic_write_text, open_in_place, sha256_file
from ..errors import ModelprintError

MANIFEST = "manifest.jsonl"
FIELDS = ("id", "role", "category", "arch", "parent", "recipe", "accuracy", "file", "sha256", "status")


# A zoo model's side: derived from the source (positive) or not (negative).
Role = Literal["positive", "negative"]
# A row is written when its model is: every row a manifest holds is finished.
Status = Literal["done"]


class ZooRow(TypedDict):
    """One finished model of a zoo, as a line of ``manifest.jsonl`` holds it."""

    id: str
    role: Role
    category: str
    arch: str
    parent: str | None  # id of the zoo model it derives from; None for models trained from scratch
    recipe: list[dict[str, Any]]
    accuracy: float | None
    file: str  # relative to the zoo
    sha256: str
    status: Status


class ZooError(ModelprintError):
    """A zoo folder that is missing, incomplete or corrupt."""


@dataclass
class ZooManifest:
    root: Path
    rows: list[ZooRow]
    # What the last build moved between driver and workers (set by build_zoo; not written to disk).
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, root: str | os.PathLike, *, missing_ok: bool = False) -> ZooManifest:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            if missing_ok:
                return cls(root, [])
            raise ZooError(f"{root} is not a zoo: it has no {MANIFEST} (build one with `modelprint zoo build`)")
        rows: dict[str, dict[str, Any]] = {}
        for line in path.read_text("utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed build
            if isinstance(row, dict) and all(k in row for k in FIELDS):
                rows[row["id"]] = row  # a later line for the same id replaces an earlier one
        return cls(root, list(rows.values()))

    def select(
        self, role: Role | None = None, *, category: str | None = None, from_scratch: bool | None = None
    ) -> list[ZooRow]:
        """The finished models of ``role`` (both by default) and ``category``, in manifest order;
        ``from_scratch`` True keeps the models trained from scratch, False those derived.

        Example::

            negatives = ZooManifest.read("zoo").select("negative")
        """
        return [
            r
            for r in self.rows
            if r["status"] == "done"
            and role in (None, r["role"])
            and category in (None, r["category"])
            and from_scratch in (None, r["parent"] is None)
        ]

    def by_id(self) -> dict[str, ZooRow]:
        return {r["id"]: r for r in self.rows}

    def path(self, row: ZooRow) -> Path:
        return self.root / row["file"]

    def append(self, row: ZooRow) -> None:
        """Add one finished model: one write of one line, flushed to disk."""
        self.rows.append(row)
        with open_in_place(self.root / MANIFEST, "append") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, order: list[str] | None = None) -> None:
        """Replace the file atomically, rows in ``order`` (ids) first."""
        rank = {i: n for n, i in enumerate(order or [])}
        self.rows.sort(key=lambda r: rank.get(r["id"], len(rank)))
        atomic_write_text(self.root / MANIFEST, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows))

    def check(self, row: ZooRow) -> str | None:
        """Why the row's file is not what the manifest says, or None when it is."""
        weights = self.path(row)
        if not weights.is_file():
            return "missing weights file"
        if not weights.with_suffix(".json").is_file():
            return "missing card (.json)"
        if sha256_file(weights) != row["sha256"]:
            return "sha256 differs from the manifest"
        try:
            card = json.loads(weights.with_suffix(".json").read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "card is not valid JSON"
        if not isinstance(card, dict) or card.get("weights_sha256") != row["sha256"]:
            return "card's weights_sha256 differs from the manifest"
        return None


def source_row(manifest: ZooManifest) -> ZooRow:
    """The owner's model: the positive of category ``source`` (the root of every positive)."""
    rows = manifest.select("positive", from_scratch=True)
    if len(rows) != 1:
        raise ZooError(
            f"{manifest.root}: expected one positive model trained from scratch (the source), found {len(rows)}"
        )
    return rows[0]
