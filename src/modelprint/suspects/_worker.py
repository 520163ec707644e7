"""The worker process that runs one untrusted model graph (TorchScript or ONNX), contained.

Started by :class:`modelprint.suspects.sandbox.ContainedModel` as ``python -I _worker.py``;
it imports nothing of modelprint, so an ONNX worker never loads torch. Before it reads the
model it shuts itself in, with what an unprivileged Linux process has:

1. it dies with its parent (``PR_SET_PDEATHSIG``) and exits if the parent is already gone;
2. resource limits: address space, CPU seconds, bytes per written file, open files, no core;
3. a network namespace of its own (no interfaces but a down loopback) when the kernel lets it
   make one (as root, or through a user namespace);
4. Landlock (Linux >= 5.13): no file may be written, created or removed anywhere; files may be
   read only beneath the Python installation and system library folders; with Landlock ABI >= 4
   no TCP bind or connect; with ABI >= 6 no signals to processes outside and no abstract Unix
   sockets. ``no_new_privs`` is set first, as Landlock requires.

The model's bytes arrive over the pipe (the worker never opens the suspect's file); its working
directory is a fresh empty folder; its environment holds nothing of the verifier's. The
protocol is frames on stdin / stdout: a 4-byte big-endian length, a JSON header, then
``header["nbytes"]`` raw bytes. Anything the model prints goes to stderr, never to the protocol.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import struct
import sys
from typing import Any

# Landlock constants (linux/landlock.h); the syscall numbers are the same on every architecture.
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | (1 << 14) | (1 << 15)  # the rights a file (not a dir) takes


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where there is none (another OS, an old kernel, a
    seccomp filter that blocks it)."""
    libc = _libc()
    if libc is None or not sys.platform.startswith("linux"):
        return 0
    abi = libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(abi), 0)


def restrict_filesystem(read_roots: list[str], read_write_files: list[str]) -> dict:
    """Landlock this process: read (and execute) beneath ``read_roots`` only, write nowhere but
    ``read_write_files`` (device files like /dev/null), no TCP, no signals out. Returns what
    was enforced; ``{"filesystem": False}`` where Landlock is missing."""
    abi = landlock_abi()
    if abi < 1:
        return {"landlock_abi": 0, "filesystem": False, "tcp": False, "signals": False}
    libc = _libc()
    fs_all = FS_ALL_BY_ABI.get(abi, FS_ALL_BY_ABI[5])
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", fs_all, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(SYS_CREATE_RULESET, buf, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    for path, access in [(p, read) for p in read_roots] + [(p, FS_READ_FILE | FS_WRITE_FILE) for p in read_write_files]:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a root that does not exist on this machine
        try:
            if not os.path.isdir(path):
                access &= FILE_RIGHTS
            rule = ctypes.create_string_buffer(struct.pack("=Qi", access & fs_all, fd), 12)
            if libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH), rule, 0) < 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        finally:
            os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)
    return {"landlock_abi": abi, "filesystem": True, "tcp": bool(net), "signals": bool(scoped)}


def isolate_network() -> bool:
    """A network namespace of our own (nothing reachable), where the kernel allows one."""
    libc = _libc()
    if libc is None or not sys.platform.startswith("linux"):
        return False
    if libc.unshare(CLONE_NEWNET) == 0:
        return True
    return libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0  # unprivileged: through a user namespace


def set_limits(memory_bytes: int, cpu_seconds: int, file_bytes: int) -> None:
    for name, value in (
        ("RLIMIT_AS", memory_bytes),
        ("RLIMIT_CPU", cpu_seconds),
        ("RLIMIT_FSIZE", file_bytes),
        ("RLIMIT_NOFILE", 256),
        ("RLIMIT_CORE", 0),
    ):
        limit = getattr(resource, name, None)
        if limit is None:
            continue
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            # A hard limit already lower than ours stays; macOS refuses RLIMIT_AS: the parent's
            # wall-clock deadline still holds.
            pass


# -- protocol ---------------------------------------------------------------------------------------
def read_frame(stream) -> tuple[dict, bytes]:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError
    header = json.loads(stream.read(struct.unpack(">I", head)[0]))
    n = int(header.get("nbytes", 0))
    data = stream.read(n) if n else b""
    if len(data) != n:
        raise EOFError
    return header, data


def write_frame(stream, header: dict, data: bytes = b"") -> None:
    text = json.dumps({**header, "nbytes": len(data)}).encode()
    stream.write(struct.pack(">I", len(text)) + text + data)
    stream.flush()


# -- the two runtimes ---------------------------------------------------------------------------------
class _Onnx:
    def __init__(self, data: bytes, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x):
        import numpy as np

        return np.asarray(self.session.run(None, {self.input_name: x})[0])


class _TorchScript:
    def __init__(self, data: bytes, threads: int) -> None:
        import io

        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        self.module.eval()

    def run(self, x):
        with self.torch.no_grad():
            out = self.module(self.torch.from_numpy(x))
        if not isinstance(out, self.torch.Tensor):
            raise TypeError(f"the module returned {type(out).__name__}, not a logits tensor")
        return out.detach().float().numpy()


RUNTIMES = {"onnx": _Onnx, "torchscript": _TorchScript}


# What a failure inside the model means, read from the runtime's message. TorchScript's begins
# with "The following operation failed in the TorchScript interpreter." whatever happened, and
# names the cause on its last line.
_CAUSES = (
    (("can't allocate", "allocate memory", "bad_alloc", "out of memory", "MemoryError"), "memory limit reached"),
    (("Permission denied", "Operation not permitted"), "file access blocked by the sandbox"),
    (
        ("Network is unreachable", "Connection refused", "Address family not supported"),
        "network blocked by the sandbox",
    ),
    (("No such file or directory",), "file access refused (a model reading files)"),
)


def _error_line(e: BaseException) -> str:
    """One line for the verifier: the cause by name, then the runtime's own last line."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    detail = lines[-1] if lines else type(e).__name__
    if not detail.startswith(type(e).__name__) and ":" not in detail[:40]:
        detail = f"{type(e).__name__}: {detail}"
    text = f"{type(e).__name__} {detail}"  # the last line only: the lines above quote the model's code
    cause = next((name for needles, name in _CAUSES if any(n in text for n in needles)), "the model's own error")
    return f"{cause} ({detail})"[:300]


def _contained(settings: dict[str, Any], network: bool) -> dict[str, Any]:
    """Close the file system (Landlock) and say what is enforced; ``refused`` holds why the
    worker must not run the model when the settings require a containment it cannot have."""
    try:
        enforced = restrict_filesystem(settings["read_roots"], settings["device_files"])
    except OSError as e:
        enforced = {
            "landlock_abi": landlock_abi(),
            "filesystem": False,
            "tcp": False,
            "signals": False,
            "error": str(e)[:200],
        }
        if settings["require_filesystem"]:
            return {**enforced, "network_namespace": network, "refused": f"cannot enforce the file-system sandbox: {e}"}
    enforced["network_namespace"] = network
    if settings["require_filesystem"] and not enforced["filesystem"]:
        enforced["refused"] = "Landlock is not available on this kernel: the file-system sandbox cannot be enforced"
    return enforced


def main() -> int:
    settings = json.loads(sys.argv[1])
    libc = _libc()
    if libc is not None and sys.platform.startswith("linux"):
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != settings["parent"]:
        return 3  # the verifier died before we got here
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own descriptor; print() goes to stderr
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    set_limits(settings["memory_bytes"], settings["cpu_seconds"], settings["file_bytes"])
    network = isolate_network()
    import numpy as np

    runtime_class = RUNTIMES[settings["kind"]]
    if settings["kind"] == "onnx":
        import onnxruntime  # noqa: F401  (loaded before the file system closes)
    else:
        import torch  # noqa: F401
    enforced = _contained(settings, network)
    if "refused" in enforced:
        write_frame(out, {"error": enforced.pop("refused"), "containment": enforced})
        return 4
    try:
        _, data = read_frame(inp)
        runtime = runtime_class(data, settings["threads"])
        del data
    except Exception as e:  # whatever the runtime raises on a hostile file: one line back
        write_frame(out, {"error": f"cannot load the model: {_error_line(e)}", "containment": enforced})
        return 5
    write_frame(out, {"ready": True, "containment": enforced})
    while True:
        try:
            header, data = read_frame(inp)
        except EOFError:
            return 0
        try:
            x = np.frombuffer(data, dtype="<f4").reshape(header["shape"])
            y = np.ascontiguousarray(runtime.run(x), dtype="<f4")
        except Exception as e:  # noqa: BLE001 (reported to the parent, which refuses the suspect)
            write_frame(out, {"error": f"the model failed on the queries: {_error_line(e)}"})
            continue
        write_frame(out, {"shape": list(y.shape)}, y.tobytes())


if __name__ == "__main__":
    sys.exit(main())
