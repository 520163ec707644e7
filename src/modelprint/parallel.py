"""Where independent tasks run (zoo models, benchmark suspects): one small interface,
``submit(fn, *args) -> handle``, ``wait(handles) -> (finished, rest)``, ``result(handle)``,
over a local process pool, the current process, or Ray."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ParameterError


class _Backend:
    """submit(fn, *args) -> handle; wait(handles) -> (finished handles, rest); result(handle)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def wait(self, handles: list[Any]) -> tuple[list[Any], list[Any]]: ...
    def result(self, handle: Any) -> Any: ...


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
    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.remotes: dict[Callable[..., Any], Any] = {}

    def submit(self, fn, *args):
        if fn not in self.remotes:
            self.remotes[fn] = self.ray.remote(num_cpus=1, max_retries=0)(fn)
        return self.remotes[fn].remote(*args)

    def wait(self, handles):
        done, rest = self.ray.wait(handles, num_returns=1)
        return done, rest

    def result(self, handle):
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None


def _quiet_interrupt() -> None:
    """Workers leave silently on Ctrl-C; the main process reports it (and a rerun resumes)."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))


@contextmanager
def task_backend(name: str, workers: int) -> Iterator[_Backend]:
    """Run independent tasks: ``local`` (a spawn process pool; ``workers=0`` runs them in
    this process) or ``ray`` (one Ray task each; joins ``RAY_ADDRESS`` when set, else
    starts a local Ray instance). Task functions must be importable module-level functions."""
    if name == "local":
        if workers == 0:
            yield _Inline()
            return
        # spawn: forking a process that already runs torch threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_quiet_interrupt) as pool:
            yield _Pool(pool)
        return
    if name == "ray":
        try:
            import ray
        except ImportError:
            raise ParameterError("--backend ray needs Ray: pip install 'modelprint[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            if os.environ.get("RAY_ADDRESS"):
                ray.init(log_to_driver=False)
            else:
                ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
        try:
            yield _Ray(ray)
        finally:
            if started_here:
                ray.shutdown()
        return
    raise ParameterError(f"backend must be local or ray, got {name!r}")
