"""Run an untrusted model graph in a contained worker process and ask it for outputs.

A TorchScript file is code, and an ONNX runtime reads whatever a graph points it at; a
suspect file is hostile by assumption. :class:`ContainedModel` starts a fresh Python
(``_worker.py``, isolated mode, an empty environment, a fresh empty working directory)
that shuts itself in before it sees the model (see that file for the exact mechanisms:
rlimits, its own network namespace, Landlock) and then answers batches over a pipe. This
side keeps the deadlines (loading, each batch), caps what it reads back to the size the
answer must have, kills the worker on any breach, and never leaves it behind.

What is guaranteed where Landlock is available (Linux >= 5.13): the model cannot write,
create or delete any file, cannot read files outside the Python installation and system
libraries, cannot open TCP connections (ABI >= 4), cannot use more than ``memory_mb`` of
address space or ``cpu_seconds`` of CPU, and cannot outlive the verifier. Elsewhere only
the limits, the deadlines and the empty environment hold; :attr:`ContainedModel.containment`
says which, and TorchScript is refused there unless the caller accepts the risk.

Example::

    with ContainedModel("onnx", Path("suspect.onnx").read_bytes()) as m:
        logits = m.run(np.zeros((4, 1, 16, 16), np.float32))
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import site
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError, SuspectError
from .base import Suspect, logits_answer

WORKER = Path(__file__).with_name("_worker.py")
MAX_HEADER_BYTES = 64 * 1024
CONTAINMENT = ("required", "best-effort")
# System folders a Python process loads shared libraries and locale data from.
SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
                     "/etc/localtime", "/sys/devices/system/cpu", "/sys/fs/cgroup", "/proc/cpuinfo",
                     "/proc/meminfo")  # fmt: skip
DEVICE_FILES = ("/dev/null", "/dev/urandom", "/dev/zero")


@dataclass(frozen=True)
class SandboxLimits:
    """What a contained worker may use. ``memory_mb``: address space (torch and onnxruntime
    take about 1.2 GB of it before any model); ``cpu_seconds``: CPU time over its whole life;
    ``load_timeout`` / ``call_timeout``: wall-clock seconds to load the model / answer one
    batch; ``file_mb``: largest file it may write (its stderr only: every other write is
    refused); ``threads``: compute threads; ``containment``: ``required`` refuses to run where
    the file-system sandbox cannot be enforced, ``best-effort`` runs with the rest."""

    memory_mb: int = 4096
    cpu_seconds: int = 600
    load_timeout: float = 120.0
    call_timeout: float = 120.0
    file_mb: int = 16
    threads: int = 1
    containment: str = "required"

    def __post_init__(self) -> None:
        for name in ("memory_mb", "cpu_seconds", "file_mb", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"sandbox {name} must be a positive integer, got {value!r}")
        for name in ("load_timeout", "call_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < 1e6):
                raise ParameterError(f"sandbox {name} must be a positive number of seconds, got {value!r}")
        if self.containment not in CONTAINMENT:
            raise ParameterError(f"containment must be one of {', '.join(CONTAINMENT)}, got {self.containment!r}")


def read_roots() -> list[str]:
    """Folders the worker may read beneath: this Python's installation and site-packages (where
    torch / onnxruntime load their libraries from; the worker runs ``python -I``, so nothing
    else is on its path) and the system libraries. Not ``sys.path`` as a whole: it holds the
    verifier's working folder, where the secrets are."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    roots.update(SYSTEM_READ_ROOTS)
    return sorted(os.path.realpath(r) for r in roots)


class ContainedModel:
    """One worker process holding one model graph. ``kind``: ``onnx`` or ``torchscript``;
    ``data``: the file's bytes (the worker never opens the file). :meth:`run` takes float32
    (N, C, H, W) and returns the graph's first output as float32 (N, K), K at most
    ``max_classes``. Every failure is a :class:`SuspectError` and leaves no process behind."""

    def __init__(self, kind: str, data: bytes, limits: SandboxLimits | None = None, max_classes: int = 100_000):
        if kind not in ("onnx", "torchscript"):
            raise ParameterError(f"a contained model is onnx or torchscript, got {kind!r}")
        self.kind, self.limits, self.max_classes = kind, limits or SandboxLimits(), max_classes
        self.containment: dict[str, Any] = {}
        self._workdir = tempfile.mkdtemp(prefix="modelprint-suspect-")
        self._stderr = tempfile.TemporaryFile()
        settings = {
            "parent": os.getpid(),
            "kind": kind,
            "memory_bytes": self.limits.memory_mb * 1024**2,
            "cpu_seconds": self.limits.cpu_seconds,
            "file_bytes": self.limits.file_mb * 1024**2,
            "threads": self.limits.threads,
            "read_roots": read_roots(),
            "device_files": list(DEVICE_FILES),
            "require_filesystem": self.limits.containment == "required",
        }
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.limits.threads)}
        if "LD_LIBRARY_PATH" in os.environ:  # where the user's torch finds its libraries
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", str(WORKER), json.dumps(settings)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=self._workdir,
                env=env,
                close_fds=True,
                start_new_session=True,  # the verifier's Ctrl-C reaches it through close(), not a signal race
            )
        except OSError as e:
            self._cleanup()
            raise SuspectError(f"cannot start the sandbox worker: {e}") from None
        try:
            self._send({}, data)
            header, _ = self._receive(self.limits.load_timeout, 0, "loading the model")
            self.containment = header.get("containment", {})
            if "error" in header:
                raise SuspectError(f"the sandboxed {kind} worker refused: {header['error']}")
        except BaseException:
            self.close()
            raise

    def run(self, x: np.ndarray) -> np.ndarray:
        """The graph's first output for ``x`` float32 (N, C, H, W), as float32 (N, K)."""
        x = np.ascontiguousarray(x, dtype="<f4")
        self._send({"shape": list(x.shape)}, x.tobytes())
        header, data = self._receive(self.limits.call_timeout, len(x) * self.max_classes * 4, "answering")
        if "error" in header:
            raise SuspectError(f"the sandboxed {self.kind} worker: {header['error']}")
        shape = header.get("shape")
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise SuspectError(f"the sandboxed {self.kind} worker sent a malformed answer")
        if int(np.prod(shape)) * 4 != len(data):
            raise SuspectError(f"the sandboxed {self.kind} worker sent {len(data)} bytes for shape {shape}")
        return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)

    # -- transport ------------------------------------------------------------------------------
    def _send(self, header: dict, data: bytes) -> None:
        text = json.dumps({**header, "nbytes": len(data)}).encode()
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(struct.pack(">I", len(text)) + text)
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise SuspectError(self._death("before it took the queries")) from None

    def _receive(self, timeout: float, max_payload: int, doing: str) -> tuple[dict, bytes]:
        deadline = time.monotonic() + timeout
        head = self._read_exact(4, deadline, doing)
        size = struct.unpack(">I", head)[0]
        if size > MAX_HEADER_BYTES:
            raise SuspectError(f"the sandboxed {self.kind} worker sent a {size}-byte header; refused")
        try:
            header = json.loads(self._read_exact(size, deadline, doing))
            nbytes = int(header.get("nbytes", 0))
        except (ValueError, TypeError, AttributeError):
            raise SuspectError(f"the sandboxed {self.kind} worker sent a malformed header") from None
        if not 0 <= nbytes <= max_payload:
            raise SuspectError(
                f"the sandboxed {self.kind} worker sent {nbytes} bytes, more than an answer of "
                f"{self.max_classes} classes can hold; refused"
            )
        return header, self._read_exact(nbytes, deadline, doing) if nbytes else b""

    def _read_exact(self, n: int, deadline: float, doing: str) -> bytes:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise SuspectError(f"the sandboxed {self.kind} worker took longer than the deadline {doing}; killed")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, min(n - len(buf), 1 << 20))
            if not chunk:
                raise SuspectError(self._death(doing))
            buf += chunk
        return bytes(buf)

    def _death(self, doing: str) -> str:
        code = self._proc.wait(timeout=10) if self._proc.poll() is None else self._proc.returncode
        why = {
            -signal.SIGXCPU: f"CPU time limit of {self.limits.cpu_seconds} s",
            -signal.SIGXFSZ: f"file size limit of {self.limits.file_mb} MB",
            -signal.SIGKILL: "killed (out of memory?)",
            -signal.SIGSEGV: f"crashed (segmentation fault; memory limit {self.limits.memory_mb} MB?)",
        }.get(code, f"exit code {code}")
        tail = self._stderr_tail()
        self.close()
        return f"the sandboxed {self.kind} worker died {doing} ({why}){tail}"

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(max(0, self._stderr.seek(0, 2) - 300))
            lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:200]}" if lines else ""

    # -- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker (kill its whole session) and remove its folder; safe to call twice."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait(timeout=10)
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._stderr.close()

    def describe(self) -> dict[str, Any]:
        return {"limits": asdict(self.limits), **self.containment}

    def __enter__(self) -> ContainedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


class ContainedSuspect(Suspect):
    """Base of the file adapters whose graph runs in a :class:`ContainedModel` (ONNX,
    TorchScript): a subclass checks the file, sets the shape, classes and ``outputs``, then
    calls :meth:`_contain`; answering, describing and closing are the same for both."""

    outputs: str = "logits"

    def _contain(self, path: str | os.PathLike, data: bytes, limits: SandboxLimits | None) -> None:
        self.worker = ContainedModel(self.name, data, limits, max_classes=self.num_classes or 100_000)
        self.identity = hashlib.sha256(data).hexdigest()
        self.location = str(path)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        """The batch as the graph takes it (a fixed-batch graph pads it); answers beyond len(x) are dropped."""
        return x

    def _answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(x)
        out = self.worker.run(self._pad(x))
        self.requests += 1
        self.queries_sent += n
        return logits_answer(out[:n], self.labels_only, self.outputs)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "containment": self.worker.describe()}

    def close(self) -> None:
        self.worker.close()
