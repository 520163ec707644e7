"""The resumable zoo builder.

Every model is one independent task: load its parent's file (or train from scratch), run
its steps, write the model atomically. The scheduler hands a task to a worker as soon as
its parent is built, appends each finished model to ``manifest.jsonl`` from the main
process only, and at the end rewrites the manifest in spec order. Killing the build at
any moment and running the same command again skips every model the manifest lists with
a matching file, and rebuilds the rest; temp files of a killed write are removed.

Backends: ``local`` (a process pool; ``workers=0`` builds in this process) and ``ray``
(each model a Ray task; connects to ``RAY_ADDRESS`` when set, else starts a local Ray
instance; on a cluster ``out`` must be a shared file system).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from .. import __version__
from .._io import atomic_write_text
from ..errors import ModelprintError, ParameterError
from ..parallel import task_backend
from ..progress import console, progress_bar
from .manifest import MANIFEST, ZooError, ZooManifest
from .spec import ModelPlan, ZooSpec, parse_spec_text, read_spec_text

SPEC_FILE = "zoo.toml"
BUILD_FILE = "build.json"

_SPLITS_CACHE: dict[tuple[str, int, int], Any] = {}


def _splits(data: str, split_seed: int, train_subset: int = 0) -> Any:
    from ..data import load_splits

    key = (data, split_seed, train_subset)
    if key not in _SPLITS_CACHE:
        _SPLITS_CACHE[key] = load_splits(data, split_seed=split_seed, train_subset=train_subset)
    return _SPLITS_CACHE[key]


def _step_data(name: str, splits: Any, split_seed: int) -> Any:
    from ..data import SPLITS, load_dataset, parse_spec

    if name in SPLITS:
        return splits.get(name)
    parse_spec(name)
    return load_dataset(name, "all", split_seed=split_seed)


def build_model(plan: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Make one zoo model and write it; returns its manifest row. Runs in a worker."""
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(context["threads"])
    try:
        return _build_model(plan, context)
    finally:
        torch.set_num_threads(threads_before)  # inline builds run in the caller's process


def _build_model(plan: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from ..attacks import create_attack
    from ..models import load_model, save_model
    from ..train import TrainConfig, train_new

    started = time.perf_counter()
    p = ModelPlan(**plan)
    root = Path(context["out"])
    splits = _splits(context["data"], context["split_seed"], context.get("train_subset", 0))
    if p.parent is None:
        model = train_new(
            p.arch,
            splits.get(p.split),
            TrainConfig(**p.train),
            seed=p.seed,
            test=splits.test,
            device=context["device"],
            progress=False,
            **p.args,
        )
        if context.get("train_subset"):  # reference models of this source train on the same amount of data
            model.card.training["train_subset"] = context["train_subset"]
        if p.mark:  # the owner marks the model it trained, on the same data
            from ..fingerprints.frequency import inject

            model = inject(model, splits.get(p.split), test=splits.test, progress=False, **p.mark)
    else:
        model = load_model(root / context["parent_file"])
        for step in p.steps:
            params = {k: v for k, v in step.items() if k not in ("attack", "data", "seed")}
            data = _step_data(step["data"], splits, context["split_seed"]) if step.get("data") else None
            model = create_attack(step["attack"], **params).apply(
                model, data, seed=step["seed"], device=context["device"], test=splits.test
            )
    model.card.train_seconds = round(time.perf_counter() - started, 2)
    path = save_model(model, root / "models" / p.file)
    return {
        "id": p.id,
        "role": p.role,
        "category": p.category,
        "arch": model.card.arch,
        "parent": p.parent,
        "recipe": p.recipe(),
        "accuracy": model.card.accuracy,
        "file": str(path.relative_to(root)),
        "sha256": model.card.weights_sha256,
        "status": "done",
        "_seconds": round(time.perf_counter() - started, 3),
    }


def load_spec(spec: str | Path, data: str | None = None) -> ZooSpec:
    text, source = read_spec_text(spec)
    return parse_spec_text(text, source, data=data)


def _prepare(spec: ZooSpec, out: Path) -> None:
    """Claim ``out`` for this spec, or check that it already belongs to it."""
    out.mkdir(parents=True, exist_ok=True)
    build_info = {"name": spec.name, "data": spec.data, "split_seed": spec.split_seed}
    if spec.train_subset:
        build_info["train_subset"] = spec.train_subset
    spec_path, info_path = out / SPEC_FILE, out / BUILD_FILE
    if spec_path.exists():
        same_spec = spec_path.read_text("utf-8") == spec.text
        try:
            old = json.loads(info_path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        if not same_spec or {k: old.get(k) for k in build_info} != build_info:
            raise ZooError(
                f"{out} holds a zoo built from another spec or data ({old.get('name')}, {old.get('data')}); "
                "build into a new --out folder, or pass the same spec and --data to resume"
            )
    else:
        if any(p.name != ".DS_Store" for p in out.iterdir()):
            raise ZooError(f"{out} is not empty and holds no zoo; choose a new or empty --out folder")
        atomic_write_text(spec_path, spec.text)
    atomic_write_text(info_path, json.dumps({**build_info, "modelprint": __version__}, indent=2) + "\n")
    for stale in (out / "models").glob(".*.tmp") if (out / "models").is_dir() else []:
        stale.unlink()  # half-written files of a killed build


def build_zoo(
    spec: str | Path | ZooSpec,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    backend: str = "local",
    device: str = "cpu",
    data: str | None = None,
    threads: int = 1,
    progress: bool = True,
) -> ZooManifest:
    """Build (or finish building) every model of ``spec`` into ``out``; returns the manifest.

    Each model trains with ``threads`` CPU threads (default 1): float sums depend on the
    thread count, so a fixed count makes the files byte-identical whatever ``workers`` is.
    Parallelism comes from ``workers`` (default: the CPU count).
    """
    zoo = spec if isinstance(spec, ZooSpec) else load_spec(spec, data)
    out = Path(out)
    cpus = os.cpu_count() or 1
    workers = cpus if workers is None else workers
    if workers < 0:
        raise ParameterError(f"--workers must be >= 0, got {workers}")
    if threads < 1:
        raise ParameterError(f"--threads must be >= 1, got {threads}")
    _splits(
        zoo.data, zoo.split_seed, zoo.train_subset
    )  # a missing or unreadable data set fails here, before any training
    _prepare(zoo, out)
    manifest = ZooManifest.read(out, missing_ok=True)
    plans = zoo.by_id()
    finished = {}
    for row in manifest.rows:
        if row["id"] in plans and row["status"] == "done" and manifest.check(row) is None:
            finished[row["id"]] = row
    manifest.rows = list(finished.values())
    manifest.rewrite([p.id for p in zoo.models])
    todo = [p for p in zoo.models if p.id not in finished]
    if finished:
        console.print(f"resuming {zoo.name}: {len(finished)} of {len(zoo.models)} models already built")
    context = {
        "out": str(out),
        "data": zoo.data,
        "split_seed": zoo.split_seed,
        "train_subset": zoo.train_subset,
        "device": device,
        "threads": threads,
    }
    started = time.perf_counter()
    running: dict[Any, ModelPlan] = {}
    descendants = _descendant_counts(zoo.models)
    with (
        task_backend(backend, workers) as pool,
        progress_bar(len(zoo.models), f"zoo {zoo.name}", progress) as bar,
    ):
        bar.update(len(finished))
        while todo or running:
            capacity = max(workers, 1) * 2 - len(running)  # keep every worker busy, never queue the whole zoo
            ready = [p for p in todo if p.parent is None or p.parent in finished]
            ready.sort(key=lambda p: -descendants[p.id])  # unblock long chains first (stable: spec order)
            for p in ready[: max(capacity, 0)]:
                todo.remove(p)
                ctx = {**context, "parent_file": finished[p.parent]["file"] if p.parent else None}
                running[pool.submit(build_model, p.to_dict(), ctx)] = p
            if not running:
                raise ZooError(f"cannot build {', '.join(p.id for p in todo[:3])}: their parents never finished")
            done, _ = pool.wait(list(running))
            for handle in done:
                p = running.pop(handle)
                try:
                    row = pool.result(handle)
                except ModelprintError as e:
                    raise ZooError(f"building {p.id} (spec line {p.line}) failed: {e}") from None
                seconds = row.pop("_seconds")
                manifest.append(row)
                finished[p.id] = row
                bar.update(1, description=f"zoo {zoo.name}: {escape(p.id)}")
                if progress:
                    console.print(f"[dim]{escape(p.id)}[/] acc {row['accuracy']:.3f} ({seconds:.1f}s)", highlight=False)
    manifest.rewrite([p.id for p in zoo.models])
    console.print(
        f"zoo {zoo.name}: {len(manifest.rows)} models in {out} ({time.perf_counter() - started:.0f}s this run, "
        f"{workers} {backend} workers)"
    )
    return manifest


def _descendant_counts(plans: list[ModelPlan]) -> dict[str, int]:
    counts = {p.id: 0 for p in plans}
    parents = {p.id: p.parent for p in plans}
    for p in plans:
        up = p.parent
        while up is not None:
            counts[up] += 1
            up = parents.get(up)
    return counts


def verify_zoo(root: str | os.PathLike) -> list[tuple[dict[str, Any], str]]:
    """(row, reason) for every model whose file does not match the manifest."""
    manifest = ZooManifest.read(root)
    return [(row, why) for row in manifest.rows if (why := manifest.check(row)) is not None]


__all__ = ["BUILD_FILE", "MANIFEST", "SPEC_FILE", "build_model", "build_zoo", "load_spec", "verify_zoo"]
