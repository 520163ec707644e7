"""``zoo build``, ``zoo ls`` and ``zoo verify``: the suspects a benchmark scores."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import ParameterError
from ..zoo import ZooError, ZooManifest
from ..zoo.build import build_zoo, verify_zoo
from ..zoo.spec import builtin_specs
from .common import AsJson, TrainBackend, TrainWorkers, print_json, result, zoo_app

ZooFolder = Annotated[Path, typer.Argument(help="Zoo folder.")]
Spec = Annotated[str, typer.Argument(help=f"Spec file (.toml) or a built-in name: {', '.join(builtin_specs())}.")]
Threads = Annotated[
    int, typer.Option("--threads", help="CPU threads per model (1 keeps files identical across --workers).")
]
ZooDevice = Annotated[str, typer.Option("--device", help="cpu, or cuda (with Ray: each task asks for GPUs).")]
GpusPerTask = Annotated[
    float,
    typer.Option(
        "--gpus-per-task", help="With --device cuda and Ray: GPUs per model (0.25 packs 4 small models a GPU)."
    ),
]


@zoo_app.command("build")
def zoo_build(
    spec: Spec,
    out: Annotated[Path, typer.Option("--out", help="Zoo folder (created; an unfinished build there is resumed).")],
    workers: TrainWorkers = None,
    backend: TrainBackend = "local",
    data: Annotated[
        str, typer.Option("--data", help="Override the spec's data set, e.g. cifar10:/data/cifar-10.")
    ] = None,
    threads: Threads = 1,
    device: ZooDevice = "cpu",
    gpus_per_task: GpusPerTask = 1.0,
    as_json: AsJson = False,
) -> None:
    """Build every model of a zoo spec; killed builds resume where they stopped."""
    if not 0 < gpus_per_task <= 64:
        raise ParameterError(f"--gpus-per-task must be in (0, 64], got {gpus_per_task}")
    settings = {"workers": workers, "backend": backend, "device": device, "data": data, "threads": threads}
    try:
        build_zoo(spec, out, gpus_per_task=gpus_per_task, **settings)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished models are kept; run the same command to resume\n")
        raise typer.Exit(130) from None
    rows = ZooManifest.read(out).rows
    done = sum(r["status"] == "done" for r in rows)
    manifest = str(out / "manifest.jsonl")
    result(as_json, {"manifest": manifest, "models": len(rows), "done": done}, manifest)


@zoo_app.command("ls")
def zoo_ls(zoo: ZooFolder, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a zoo's manifest as a table (or JSON lines)."""
    manifest = ZooManifest.read(zoo)
    if as_json:
        for row in manifest.rows:
            sys.stdout.write(json.dumps(row, sort_keys=True) + "\n")
        return
    table = Table(title=f"{zoo} ({len(manifest.rows)} models)")
    for col in ("id", "role", "category", "arch", "accuracy", "status"):
        table.add_column(col, justify="right" if col == "accuracy" else "left", overflow="fold")
    for r in manifest.rows:
        acc = "" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        table.add_row(escape(r["id"]), r["role"], r["category"], r["arch"], acc, r["status"])
    out = Console(width=max(120, Console().width))
    out.print(table)
    counts = Counter((r["role"], r["category"]) for r in manifest.rows)
    out.print(", ".join(f"{role} {cat}: {n}" for (role, cat), n in sorted(counts.items())))


@zoo_app.command("verify")
def zoo_verify(zoo: ZooFolder, as_json: AsJson = False) -> None:
    """Check every model file of a zoo against the manifest's sha256."""
    bad = verify_zoo(zoo)
    total = len(ZooManifest.read(zoo).rows)
    if as_json:
        print_json({"models": total, "failed": [{"file": row["file"], "why": why} for row, why in bad]})
    else:
        for row, why in bad:
            sys.stdout.write(f"FAIL {row['file']}: {why}\n")
    if bad:
        raise ZooError(f"{len(bad)} of {total} model files fail verification (first: {bad[0][0]['file']})")
    if not as_json:
        sys.stdout.write(f"ok: {total} model files match the manifest\n")
