"""The resumable zoo builder.

Every model is one independent task. A task never touches the zoo folder: it receives what
it needs as values (its plan, its parent model's bytes, the data it trains on) and returns
the new model's bytes with its manifest row; only the driver reads and writes files,
atomically. So a task runs the same in this process, in a local process pool, or on any
node of a Ray cluster that has modelprint installed and nothing else. The scheduler hands a
task out as soon as its parent is built, appends each finished model to ``manifest.jsonl``,
and at the end rewrites the manifest in spec order. Killing the build at any moment and
running the same command again skips every model the manifest lists with a matching file,
and rebuilds the rest; temp files of a killed write are removed.

Backends: ``local`` (a process pool; ``workers=0`` builds in this process; workers load the
data from this machine's disk, once each) and ``ray`` (each model a Ray task; joins
``RAY_ADDRESS`` when set, else starts a local Ray instance; the data is put into the object
store once per build and every parent's bytes once, so no node needs the driver's files; a
task whose worker dies is retried, with the same seed, so the retry makes the same bytes).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from .._io import atomic_write_text, open_in_place
from .._lazy import ray as import_ray
from .._version import __version__
from ..attacks import create_attack
from ..data import SPLITS, load_dataset, load_splits, parse_spec
from ..errors import ModelprintError, OutputPathError, ParameterError
from ..fingerprints import MARK_METHOD, create_method
from ..models import ModelBytes, model_from_bytes, model_to_bytes, read_model_bytes, write_model_bytes
from ..models.architectures import create_arch
from ..models.custom import trust_arch, trusted_archs
from ..parallel import check_device, task_backend, task_threads
from ..progress import note, progress_bar
from ..train import TrainConfig, train_new
from .manifest import MANIFEST, ZooError, ZooManifest, ZooRow
from .spec import ModelPlan, ZooSpec, parse_spec_text, read_spec_text

SPEC_FILE = "zoo.toml"
BUILD_FILE = "build.json"
# For tests of retries only: with this set to a folder, the first attempt of every task in a Ray
# worker dies the way a lost node or an out-of-memory kill ends it (the folder remembers attempts).
CRASH_ONCE_ENV = "MODELPRINT_TEST_CRASH_ONCE_DIR"


@dataclass(frozen=True)
class DataKey:
    """Where a task's data comes from when it may read this machine's disk (a local worker)."""

    data: str
    split_seed: int
    train_subset: int = 0

    def load(self) -> BuildData:
        key = (self.data, self.split_seed, self.train_subset)
        if key not in _DATA_CACHE:
            splits = load_splits(self.data, split_seed=self.split_seed, train_subset=self.train_subset)
            _DATA_CACHE[key] = BuildData(splits, self.split_seed)
        return _DATA_CACHE[key]


@dataclass
class BuildData:
    """A build's data as values: the splits, and the other data sets steps name (loaded on demand
    only where the disk is at hand; the driver loads every one a Ray build needs up front)."""

    splits: Any
    split_seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def step_data(self, name: str) -> Any:

        if name in SPLITS:
            return self.splits.get(name)
        if name not in self.extra:
            parse_spec(name)
            self.extra[name] = load_dataset(name, "all", split_seed=self.split_seed)
        return self.extra[name]


_DATA_CACHE: dict[tuple[str, int, int], BuildData] = {}


def build_model(
    plan: dict[str, Any], context: dict[str, Any], data: BuildData | DataKey, parent: ModelBytes | None
) -> dict[str, Any]:
    """Make one zoo model from values; returns its manifest row with the model's bytes under
    ``"_model"``. Runs in a worker, anywhere: it opens no file of the zoo."""

    _maybe_crash(plan["id"])
    trust_arch(*context.get("trusted_archs", ()))  # what the driver trusted, in whichever process this runs
    machine = f"{socket.gethostname()}, where the task for {plan['id']} runs,"
    check_device(context["device"], machine, "give GPU tasks only to nodes with GPUs (Ray: num_gpus), or build on cpu")
    with task_threads(context["threads"]):
        return _build_model(plan, context, data.load() if isinstance(data, DataKey) else data, parent)


def _maybe_crash(model_id: str) -> None:
    folder = os.environ.get(CRASH_ONCE_ENV)
    if not folder or "ray" not in sys.modules:
        return
    ray = import_ray()
    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return  # never in the driver's own process
    marker = Path(folder) / hashlib.sha256(model_id.encode()).hexdigest()[:16]
    if not marker.exists():
        marker.touch()
        os._exit(1)


def _node() -> str:
    if "ray" in sys.modules:
        ray = import_ray()
        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    return f"local:{os.getpid()}"


def _build_model(plan: dict[str, Any], context: dict[str, Any], data: BuildData, parent: ModelBytes | None) -> dict:
    started = time.perf_counter()
    p = ModelPlan(**plan)
    splits = data.splits
    if p.parent is None:
        model = train_new(
            p.arch,
            splits.get(p.split).balanced(p.subset, p.seed),
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
            settings = {k: v for k, v in p.mark.items() if k != "key"}
            model = create_method(MARK_METHOD).prepare(
                model, splits.get(p.split), key=p.mark["key"], test=splits.test, progress=False, **settings
            )
    else:
        if parent is None:
            raise ZooError(f"{p.id} derives from {p.parent}, but its parent's bytes were not passed")
        model = model_from_bytes(parent, names=(f"{p.parent} (weights)", f"{p.parent} (card)"))
        for step in p.steps:
            params = {k: v for k, v in step.items() if k not in ("attack", "data", "seed")}
            step_data = data.step_data(step["data"]) if step.get("data") else None
            model = create_attack(step["attack"], **params).apply(
                model, step_data, seed=step["seed"], device=context["device"], test=splits.test
            )
    model.card.train_seconds = round(time.perf_counter() - started, 2)
    model = model.cpu()
    payload = model_to_bytes(model)
    return {
        "id": p.id,
        "role": p.role,
        "category": p.category,
        "arch": model.card.arch,
        "parent": p.parent,
        "recipe": p.recipe(),
        "accuracy": model.card.accuracy,
        "sha256": model.card.weights_sha256,
        "status": "done",
        "_seconds": round(time.perf_counter() - started, 3),
        "_node": _node(),
        "_model": payload,
    }


def load_spec(spec: str | Path, data: str | None = None) -> ZooSpec:
    text, source = read_spec_text(spec)
    return parse_spec_text(text, source, data=data)


def build_data(root: str | os.PathLike) -> dict[str, Any]:
    """Which data the zoo in ``root`` was built from: ``{"data", "split_seed", "train_subset"}``."""
    try:
        info = json.loads((Path(root) / BUILD_FILE).read_text("utf-8"))
        return {
            "data": info["data"],
            "split_seed": int(info.get("split_seed", 0)),
            "train_subset": int(info.get("train_subset", 0)),
        }
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ParameterError(f"{root} has no readable {BUILD_FILE} (which data the zoo was built from)") from None


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
                "build into a new `out` folder, or pass the same spec and `data` to resume",
                params=("out", "data"),
            )
    else:
        if any(p.name not in (".DS_Store", LOCK_FILE) for p in out.iterdir()):
            raise ZooError(f"{out} is not empty and holds no zoo; choose a new or empty `out` folder", params=("out",))
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
    gpus_per_task: float = 1.0,
    progress: bool = True,
) -> ZooManifest:
    """Build (or finish building) every model of ``spec`` into ``out``; returns the manifest.

    Each model trains with ``threads`` CPU threads (default 1): float sums depend on the
    thread count, so a fixed count makes the files byte-identical whatever ``workers`` is.
    Parallelism comes from ``workers`` (default: the CPU count). With ``device="cuda"`` and
    Ray, each task asks for ``gpus_per_task`` GPUs (fractions share one GPU between small models).
    """
    zoo = spec if isinstance(spec, ZooSpec) else load_spec(spec, data)
    out = Path(out)
    cpus = os.cpu_count() or 1
    workers = cpus if workers is None else workers
    if workers < 0:
        raise ParameterError(f"`workers` must be >= 0, got {workers}", params=("workers",))
    if threads < 1:
        raise ParameterError(f"`threads` must be >= 1, got {threads}", params=("threads",))
    key = DataKey(zoo.data, zoo.split_seed, zoo.train_subset)
    local_data = key.load()  # a missing or unreadable data set fails here, before any training
    check_buildable(zoo, local_data)
    with zoo_lock(out):
        return _build_locked(zoo, out, workers, backend, device, threads, gpus_per_task, progress, key, local_data)


def check_buildable(zoo: ZooSpec, data: BuildData) -> None:
    """What can be checked before the folder is claimed and anything trains: every scratch
    model builds with its arguments (on the meta device: no memory), every data set a step
    names loads."""

    shape, classes = tuple(data.splits.owner.input_shape), data.splits.owner.num_classes
    seen = set()
    for p in zoo.models:
        if p.parent is None and (p.arch, repr(p.args)) not in seen:
            seen.add((p.arch, repr(p.args)))
            try:
                with torch.device("meta"):
                    create_arch(p.arch, num_classes=classes, input_shape=shape, **p.args)
            except Exception as e:  # a typo in an argument, a width the architecture cannot take
                raise ZooError(f"{zoo.source} line {p.line}: cannot build {p.arch} with {p.args}: {e}") from None
        for step in p.steps:
            if step.get("data"):
                try:
                    data.step_data(step["data"])
                except ModelprintError as e:
                    raise ZooError(f"{zoo.source} line {p.line}: step {step['attack']}: {e}") from None


LOCK_FILE = ".modelprint.lock"


@contextmanager
def zoo_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s build lock (an advisory ``flock``, released by the kernel however the
    holder ends); a second builder is refused with one line naming the holder."""

    if out.exists() and not out.is_dir():
        raise ZooError(f"{out} is a file, not a folder; give a new or empty `out` folder", params=("out",))
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open_in_place(out / LOCK_FILE, "update")  # held for the whole build
    except OSError as e:
        raise ZooError(f"cannot use {out} as a zoo folder: {e.strerror or e}") from None
    except OutputPathError as e:
        raise ZooError(f"cannot use {out} as a zoo folder: {e}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(200).strip() or "another process"
            raise ZooError(f"{out} is being built by {holder}; wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def _resume(zoo: ZooSpec, out: Path) -> tuple[ZooManifest, dict[str, ZooRow], list[ModelPlan]]:
    """Claim ``out`` and keep what an earlier run finished (and still checks): (manifest, finished, to do)."""
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
        note(f"resuming {zoo.name}: {len(finished)} of {len(zoo.models)} models already built")
    return manifest, finished, todo


def _record(pool: Any, handle: Any, p: ModelPlan, out: Path, manifest: ZooManifest, stats: BuildStats) -> tuple:
    """Write a finished model (only the driver writes) and its manifest line: (row, seconds it took)."""
    try:
        row = pool.result(handle)
    except ModelprintError as e:
        raise ZooError(f"building {p.id} (spec line {p.line}) failed: {e}") from None
    seconds, node, payload = row.pop("_seconds"), row.pop("_node"), row.pop("_model")
    path = write_model_bytes(payload, out / "models" / p.file)
    row = {**row, "file": str(path.relative_to(out))}
    manifest.append(row)
    stats.nodes.add(node)
    stats.result_bytes += payload.nbytes
    stats.models += 1
    return row, seconds


def _data_arg(
    pool: Any, backend: str, workers: int, todo: list[ModelPlan], key: DataKey, local: BuildData, stats: BuildStats
) -> Any:
    """What a task gets as its data. Ray: the data goes into the object store once, with every data
    set a step names; a local pool's workers read it from this machine (a key, loaded once per
    worker); inline: the value."""
    if backend != "ray":
        return local if workers == 0 else key
    for name in sorted({s["data"] for p in todo for s in p.steps if s.get("data")}):
        local.step_data(name)
    stats.data_bytes = _nbytes(local)
    return pool.put(local)


def _build_locked(
    zoo: ZooSpec,
    out: Path,
    workers: int,
    backend: str,
    device: str,
    threads: int,
    gpus_per_task: float,
    progress: bool,
    key: DataKey,
    local_data: BuildData,
) -> ZooManifest:
    manifest, finished, todo = _resume(zoo, out)
    context = {
        "data": zoo.data,
        "split_seed": zoo.split_seed,
        "train_subset": zoo.train_subset,
        "device": device,
        "threads": threads,
        "trusted_archs": trusted_archs(),
    }
    if backend == "local" and workers == 0:
        check_device(device)
    started = time.perf_counter()
    gpus = gpus_per_task if device.startswith("cuda") else 0.0
    stats = BuildStats()
    with (
        task_backend(backend, workers, gpus_per_task=gpus) as pool,
        progress_bar(len(zoo.models), f"zoo {zoo.name}", progress) as bar,
    ):
        data_arg = _data_arg(pool, backend, workers, todo, key, local_data, stats)
        bar.update(len(finished))
        run = {"context": context, "data_arg": data_arg, "stats": stats, "progress": progress}
        _run_builds(pool, bar, zoo, out, manifest, finished, todo, workers=workers, **run)
    manifest.rewrite([p.id for p in zoo.models])
    manifest.stats = stats.to_dict()
    nodes = f" on {len(stats.nodes)} node{'s' if len(stats.nodes) != 1 else ''}" if backend == "ray" else ""
    note(
        f"zoo {zoo.name}: {len(manifest.rows)} models in {out} ({time.perf_counter() - started:.0f}s this run, "
        f"{workers} {backend} workers{nodes})"
    )
    return manifest


def _run_builds(
    pool: Any,
    bar: Any,
    zoo: ZooSpec,
    out: Path,
    manifest: ZooManifest,
    finished: dict[str, dict[str, Any]],
    todo: list[ModelPlan],
    *,
    workers: int,
    context: dict[str, Any],
    data_arg: Any,
    stats: BuildStats,
    progress: bool,
) -> None:
    """Build every model of ``todo`` on ``pool``, a parent before its children, recording each
    in ``manifest`` (and ``finished``) as it lands."""
    running: dict[Any, ModelPlan] = {}
    descendants = _descendant_counts(zoo.models)
    pending_children = {i: sum(q.parent == i and q.id not in finished for q in zoo.models) for i in zoo.by_id()}
    parents: dict[str, Any] = {}  # id -> the parent's bytes (or its object-store reference)

    def parent_arg(pid: str | None) -> Any:
        if pid is None:
            return None
        if pid not in parents:
            payload = read_model_bytes(out / finished[pid]["file"])
            stats.parent_bytes += payload.nbytes
            parents[pid] = pool.put(payload)
        return parents[pid]

    while todo or running:
        capacity = max(workers, 1) * 2 - len(running)  # keep every worker busy, never queue the whole zoo
        ready = [p for p in todo if p.parent is None or p.parent in finished]
        ready.sort(key=lambda p: -descendants[p.id])  # unblock long chains first (stable: spec order)
        starting = ready[: max(capacity, 0)]
        if starting:  # a log's heartbeat names the models being built
            bar.update(0, description=f"zoo {zoo.name}: building {escape(', '.join(p.id for p in starting))}")
        for p in starting:
            todo.remove(p)
            running[pool.submit(build_model, p.to_dict(), context, data_arg, parent_arg(p.parent))] = p
        if not running:
            raise ZooError(f"cannot build {', '.join(p.id for p in todo[:3])}: their parents never finished")
        done, _ = pool.wait(list(running))
        for handle in done:
            p = running.pop(handle)
            row, seconds = _record(pool, handle, p, out, manifest, stats)
            finished[p.id] = row
            if p.parent is not None:
                pending_children[p.parent] -= 1
                if pending_children[p.parent] == 0:
                    parents.pop(p.parent, None)  # no child left: let the bytes go
            bar.update(1, description=f"zoo {zoo.name}: {escape(p.id)}")
            if progress:
                note(f"{p.id} acc {row['accuracy']:.3f} ({seconds:.1f}s)")


@dataclass
class BuildStats:
    """What a build moved between the driver and its workers (the object store, for Ray)."""

    models: int = 0
    data_bytes: int = 0  # put once per build (Ray)
    parent_bytes: int = 0  # each parent's bytes, once
    result_bytes: int = 0  # every new model's bytes back to the driver
    nodes: set[str] = field(default_factory=set)  # Ray node ids (the local pool: its worker processes)

    def to_dict(self) -> dict[str, Any]:
        moved = self.parent_bytes + self.result_bytes
        return {
            "models": self.models,
            "data_bytes": self.data_bytes,
            "parent_bytes": self.parent_bytes,
            "result_bytes": self.result_bytes,
            "bytes_per_model": round(moved / self.models) if self.models else 0,
            "nodes": len(self.nodes),
        }


def _nbytes(data: BuildData) -> int:

    total = 0
    for ds in [data.splits.get(name) for name in ("owner", "attacker", "tune", "test")] + list(data.extra.values()):
        for t in vars(ds).values():
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


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


__all__ = [
    "BUILD_FILE",
    "build_data",
    "MANIFEST",
    "SPEC_FILE",
    "BuildData",
    "DataKey",
    "build_model",
    "build_zoo",
    "load_spec",
    "verify_zoo",
]
