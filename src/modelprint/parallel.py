"""Where independent tasks run (zoo models, benchmark suspects): one small interface,
``submit(fn, *args) -> handle``, ``wait(handles) -> (finished, rest)``, ``result(handle)``
and ``put(value) -> what to pass instead`` (Ray's object store; the value itself elsewhere),
over a local process pool, the current process, or Ray."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ._lazy import ray as import_ray
from .errors import ParameterError

# A Ray task whose worker dies (node lost, killed for memory) runs again, at most this many times.
# Tasks are deterministic given their arguments (seeds included), so a retry makes the same bytes.
MAX_TASK_RETRIES = 3


def check_device(device: str, machine: str = "this machine", advice: str = "") -> str:
    """``device`` checked before any work runs on it: ``cpu``, or ``cuda`` / ``cuda:N`` where
    ``machine`` has a CUDA device (``advice`` is added to the message when it has none)."""
    cuda = re.fullmatch(r"cuda(:\d+)?", device) is not None
    if device == "cpu" or (cuda and torch.cuda.is_available()):
        return device
    if cuda:
        said = f"`device` {device!r} asked for, but {machine} has no CUDA device" + (f"; {advice}" if advice else "")
        raise ParameterError(said, params=("device",))
    raise ParameterError(f"`device` must be cpu or cuda[:N], got {device!r}", params=("device",))


class _Backend:
    """submit(fn, *args) -> handle; wait(handles) -> (finished handles, rest); result(handle);
    put(value) -> what to pass to submit for a value many tasks share."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def wait(self, handles: list[Any]) -> tuple[list[Any], list[Any]]: ...
    def result(self, handle: Any) -> Any: ...

    def put(self, value: Any) -> Any:
        return value


class _Finished:
    """An inline task's outcome (hashable by identity, like a future)."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error


class _Inline(_Backend):
    def submit(self, fn, *args):
        try:
            return _Finished(fn(*args))
        except Exception as e:  # reported by result(), as the pool would
            return _Finished(error=e)

    def wait(self, handles):
        return handles[:1], handles[1:]

    def result(self, handle):
        if handle.error is not None:
            raise handle.error
        return handle.value


class _Pool(_Backend):
    def __init__(self, pool: cf.ProcessPoolExecutor) -> None:
        self.pool = pool

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def wait(self, handles):
        done, rest = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return [h for h in handles if h in done], [h for h in handles if h in rest]

    def result(self, handle):
        return handle.result()


class _Ray(_Backend):
    def __init__(self, ray: Any, gpus_per_task: float = 0.0) -> None:
        self.ray = ray
        self.gpus = gpus_per_task
        self.remotes: dict[Callable[..., Any], Any] = {}

    def submit(self, fn, *args):
        if fn not in self.remotes:
            # Object references passed as top-level arguments arrive as their values in the worker.
            options = {"num_cpus": 1, "num_gpus": self.gpus, "max_retries": MAX_TASK_RETRIES}
            self.remotes[fn] = self.ray.remote(**options)(fn)
        return self.remotes[fn].remote(*args)

    def put(self, value):
        return self.ray.put(value)

    def wait(self, handles):
        done, rest = self.ray.wait(handles, num_returns=1)
        return done, rest

    def result(self, handle):
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None


@contextmanager
def task_threads(n: int) -> Iterator[None]:
    """Run a task's torch work on ``n`` threads (float sums depend on the count, so a fixed one
    makes a task's bytes the same in any worker), then give the caller's process its own count
    back: a task may run inline."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _worker_init(driver: int) -> None:
    """Workers leave silently on Ctrl-C (the main process reports it, and a rerun resumes), and
    die with their driver: a SIGKILLed build must not leave them training under init."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != driver:  # the driver died before the line above took effect
        os._exit(1)


@contextmanager
def task_backend(name: str, workers: int, *, gpus_per_task: float = 0.0) -> Iterator[_Backend]:
    """Run independent tasks: ``local`` (a spawn process pool; ``workers=0`` runs them in
    this process) or ``ray`` (one Ray task each, ``gpus_per_task`` GPUs apiece; joins
    ``RAY_ADDRESS`` when set, else starts a local Ray instance). Task functions must be
    importable module-level functions; arguments and results travel by value."""
    if name == "local":
        if workers == 0:
            yield _Inline()
            return
        # spawn: forking a process that already runs torch threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            yield _Pool(pool)
        return
    if name == "ray":
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            if os.environ.get("RAY_ADDRESS"):
                ray.init(log_to_driver=False)
            else:
                ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
        try:
            if gpus_per_task > 0:
                have = ray.cluster_resources().get("GPU", 0.0)
                if have < gpus_per_task:
                    raise ParameterError(
                        f"each task asks for {gpus_per_task:g} GPU but the Ray cluster has {have:g}: "
                        "start nodes with GPUs (ray start --num-gpus N), or build with `device` cpu",
                        params=("device",),
                    )
            yield _Ray(ray, gpus_per_task)
        finally:
            if started_here:
                ray.shutdown()
        return
    raise ParameterError(f"backend must be local or ray, got {name!r}")
