"""Hostile suspects, servers and specs through the real command line: what each costs the verifier.

Each probe runs ``modelprint`` in a fresh process (as a verifier would) against something
built here to attack it, and records the exit code, the one error line, the wall time and the
process's peak memory (``wait4``'s ``ru_maxrss``), plus what the attack was after (a file's
bytes, queries sent). The script stops with an error if any probe gets what it was after.

    python benchmarks/bench_hostile.py [--out benchmarks/results_hostile.json]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("MODELPRINT_QUIET", "1")

import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from modelprint.data import load_splits  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.models import save_model  # noqa: E402
from modelprint.train import TrainConfig, train_new  # noqa: E402

CLI = [sys.executable, "-m", "modelprint"]


def _hwm_mb(pid: int) -> float:
    """Peak resident memory of a running process since its exec (VmHWM), in MB; 0 once gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmHWM:")), 0.0)
    except OSError:
        return 0.0


def run(args: list[str], cwd: Path) -> dict:
    """One command in a fresh process: exit code, last stderr line, seconds, and the peak resident
    memory of the verifier process (VmHWM, polled every 20 ms: it only grows, so the last
    reading before exit is its peak but for the final 20 ms)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([*CLI, *args], cwd=cwd, stdout=out, stderr=err, text=True)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _hwm_mb(proc.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        lines = [ln for ln in err.read().strip().splitlines() if ln.strip()]
        return {"exit": proc.returncode, "stderr": lines[-1][:240] if lines else "", "stdout": out.read()[:200],
                "seconds": round(seconds, 2), "verifier_peak_mb": round(peak)}  # fmt: skip


# One answer of a few KB on the wire that decodes, twice, to a gigabyte: built once.
BOMB = gzip.compress(gzip.compress(b'{"labels": [1]}' + b" " * (1 << 30), 9), 9)


class _Handler(BaseHTTPRequestHandler):
    mode = ""
    posts = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"input_shape": [1, 8, 8], "num_classes": 10, "labels_only": False, "max_batch": 5}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        type(self).posts += 1
        n = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["shape"][0]
        if self.mode == "slow-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(600):
                self.wfile.write(f"X-Slow-{i}: 1\r\n".encode())
                self.wfile.flush()
                time.sleep(1)
        elif self.mode == "gzip-bomb":
            data = BOMB
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip, gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.mode == "unterminated":  # 48 MB of one string that never closes, full of escaped quotes
            body = b'{"labels": ["' + b'\\"' * (24 << 20)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.mode == "alternate" and type(self).posts % 2 == 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = json.dumps({"labels": [1] * n, "probabilities": [[0.1] * 10] * n}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


def fake_server(mode: str) -> tuple[str, type, ThreadingHTTPServer]:
    handler = type("H", (_Handler,), {"mode": mode, "posts": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", handler, server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_hostile.json")))
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        splits = load_splits("digits")
        model = train_new("cnn", splits.owner, TrainConfig(epochs=3), seed=0, test=splits.test, width=8)
        save_model(model, root / "owner")
        fp = create_method("c", steps=20).generate(model, n=20, seed=0, progress=False)
        fp.save(root / "fp.fp.safetensors")
        fpf = str(root / "fp.fp.safetensors")

        # 1. TorchScript that overwrites a file of the verifier's.
        victim = root / "victim.sh"
        victim.write_text("#!/bin/sh\necho the verifier's script\n")
        before = victim.read_bytes()

        class Overwrite(torch.nn.Module):
            def __init__(self, path: str):
                super().__init__()
                self.path = path

            def forward(self, x):
                t = torch.from_file(self.path, shared=True, size=16, dtype=torch.uint8)
                t.fill_(65)
                return x.flatten(1)[:, :10] + t[:10].float() * 0.0

        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(Overwrite(str(victim))), buf)
        (root / "evil.pt").write_bytes(buf.getvalue())
        results["torchscript from_file"] = {**run(["verify", fpf, "evil.pt"], root),
                                            "victim_unchanged": victim.read_bytes() == before}  # fmt: skip

        # 2. ONNX whose Constant reads ./secret.bin (relative: no '..').
        (root / "secret.bin").write_bytes(bytes(40))
        value = TensorProto(name="c", dims=[10], data_type=TensorProto.FLOAT, data_location=TensorProto.EXTERNAL)
        for k, v in (("location", "secret.bin"), ("offset", "0"), ("length", "40")):
            value.external_data.add(key=k, value=v)
        graph = helper.make_graph(
            [helper.make_node("Constant", [], ["c"], value=value), helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Slice", ["f", "s", "e", "a"], ["g"]), helper.make_node("Add", ["g", "c"], ["y"])],
            "leak", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
            [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 10), ("a", 1))],
        )  # fmt: skip
        model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        (root / "leak.onnx").write_bytes(model_proto.SerializeToString())
        results["onnx Constant external data"] = run(["verify", fpf, "leak.onnx"], root)

        # 3. A 1 KB ONNX graph that allocates 4.9 GB at run time.
        graph = helper.make_graph(
            [helper.make_node("ConstantOfShape", ["n"], ["big"], value=helper.make_tensor("v", 1, [1], [1.0])),
             helper.make_node("ReduceSum", ["big"], ["t"], keepdims=1), helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Slice", ["f", "s", "e", "a"], ["g"]), helper.make_node("Add", ["g", "t"], ["y"])],
            "alloc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
            [helper.make_tensor("n", TensorProto.INT64, [1], [1_220_000_000])]
            + [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 10), ("a", 1))],
        )  # fmt: skip
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        (root / "alloc.onnx").write_bytes(proto.SerializeToString())
        results["onnx allocating 4.9 GB"] = {**run(["verify", fpf, "alloc.onnx"], root),
                                             "file_bytes": (root / "alloc.onnx").stat().st_size}  # fmt: skip

        # 4. HTTP: slow headers, a double-gzip bomb, a budget against an API that fails every other request.
        url, _, srv = fake_server("slow-headers")
        results["http slow headers, --timeout 3"] = run(["verify", fpf, url, "--timeout", "3"], root)
        srv.shutdown()
        url, _, srv = fake_server("gzip-bomb")
        results["http gzip,gzip bomb"] = {**run(["verify", fpf, url], root), "answer_bytes": len(BOMB)}
        srv.shutdown()
        url, handler, srv = fake_server("alternate")
        r = run(["verify", fpf, url, "--max-queries", "20", "--sequential-step", "5", "--batch-size", "5"], root)
        results["http 503 every other request, --max-queries 20"] = {**r, "queries_received": handler.posts * 5}
        srv.shutdown()

        # 5. A 28 KB spec that expands multiplicatively.
        seeds = ", ".join(f"{{seed = {i}}}" for i in range(600))
        rates = ", ".join(f"{{r = {i / 2000:.4f}}}" for i in range(1, 1201))
        (root / "big.toml").write_text(
            f'[[models]]\nname = "s"\narch = "cnn"\nrole = "positive"\ncategory = "source"\nvariants = [{seeds}]\n'
            f'[[models]]\nfrom = "s"\ncategory = "prune"\nsteps = [{{attack = "prune", rate = "$r"}}]\n'
            f"variants = [{rates}]\n"
        )
        results["spec of 720,600 models"] = {**run(["zoo", "build", "big.toml", "--out", "z"], root),
                                             "spec_bytes": (root / "big.toml").stat().st_size,
                                             "folder_created": (root / "z").exists()}  # fmt: skip

        # 6. serve against 63 idle and 20 slow connections: /health latency, and whether they are dropped.
        port = _free_port()
        server = subprocess.Popen([*CLI, "serve", "owner.safetensors", "--port", str(port), "--read-timeout", "2",
                                   "--no-access-log"], cwd=root, stderr=subprocess.DEVNULL)  # fmt: skip
        import httpx

        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(83)]
        for s in socks[63:]:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        t0 = time.perf_counter()
        status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code
        latency = time.perf_counter() - t0
        time.sleep(3)
        dropped = 0
        for s in socks:
            s.settimeout(1)
            try:
                dropped += s.recv(1) == b""
            except (TimeoutError, ConnectionResetError):
                dropped += 0
            s.close()
        server.terminate()
        server.wait()
        results["serve with 63 idle + 20 slow connections"] = {
            "health_status": status, "health_seconds": round(latency, 3), "dropped_after_read_timeout": dropped,
            "connections": len(socks)}  # fmt: skip

        round_four(root, fpf, model, splits, results)

    failures = []
    for name, r in results.items():
        for key in ("marker_created", "victim_changed"):
            if r.get(key):
                failures.append(f"{name}: {key}")
    if not results["torchscript from_file"]["victim_unchanged"]:
        failures.append("the victim file changed")
    if results["http 503 every other request, --max-queries 20"]["queries_received"] > 20:
        failures.append("the budget was exceeded")
    for name, r in results.items():
        if "exit" in r and name != "http 503 every other request, --max-queries 20" and r["exit"] != 2:
            failures.append(f"{name}: exit {r['exit']}")
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    if failures:
        sys.exit("hostile input got through: " + "; ".join(failures))


def _card(root: Path, name: str, **changes: object) -> str:
    """A copy of the owner's model file whose card says what a hostile suspect wants it to."""
    folder = root / name
    folder.mkdir(exist_ok=True)
    (folder / "suspect.safetensors").write_bytes((root / "owner.safetensors").read_bytes())
    card = json.loads((root / "owner.json").read_text())
    card.update(changes)
    (folder / "suspect.json").write_text(json.dumps(card))
    return str(folder / "suspect.safetensors")


def _torchscript_members(module: torch.nn.Module) -> list[tuple[str, bytes]]:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    with zipfile.ZipFile(buf) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _zip(path: Path, members: list[tuple[str, bytes]]) -> str:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path.name


class _Reader(torch.nn.Module):
    """Folds a file's first byte into every answer: what code hidden from the check would do."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        t = torch.from_file(self.path, shared=False, size=1, dtype=torch.uint8)
        return x.flatten(1)[:, :10] + t[0].float()


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


def round_four(root: Path, fpf: str, model: object, splits: object, results: dict[str, dict]) -> None:
    """The probes of the fourth round: cards that import code, archives that hide it by name, a
    fingerprint that frames an innocent, a lock that points outside, and small inputs that cost
    time or memory before any check."""
    marker = root / "marker"
    shadow = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nresnet18 = create_model = None\n"

    # 7. A suspect folder with a torchvision/ and a timm.py of its own, verified from that folder.
    for arch, files in (("torchvision.models:resnet18", ["torchvision/__init__.py", "torchvision/models.py"]),
                        ("timm:create_model", ["timm.py"])):  # fmt: skip
        suspect = _card(root, f"shadow-{arch.split('.')[0].split(':')[0]}", arch=arch, arch_args={})
        for relative in files:
            (Path(suspect).parent / relative).parent.mkdir(parents=True, exist_ok=True)
            (Path(suspect).parent / relative).write_text(shadow)
        r = run(["--trust-arch", arch, "verify", fpf, "suspect.safetensors"], Path(suspect).parent)
        results[f"card naming {arch}, a shadow module beside it (trusted)"] = {**r, "marker_created": marker.exists()}

    # 8. An attribute chain from a library to os.system.
    suspect = _card(root, "chain", arch="torchvision.models:_api.inspect.os.system",
                    arch_args={"command": f"touch {marker}"})  # fmt: skip
    results["card naming torchvision.models:_api.inspect.os.system"] = {
        **run(["verify", fpf, suspect], root), "marker_created": marker.exists()}  # fmt: skip

    # 9-10. TorchScript whose file-reading code hides under a name the check skipped, or twice.
    (root / "secret.txt").write_text("s")
    evil = _torchscript_members(_Reader(str(root / "secret.txt")))
    code = next(n for n, d in evil if n.endswith(".py") and b"class _Reader" in d)
    results["TorchScript code member renamed .PY"] = run(
        ["verify", fpf, _zip(root / "upper.pt", [(n[:-3] + ".PY" if n == code else n, d) for n, d in evil]),
         "--containment", "best-effort"], root)  # fmt: skip
    good = _torchscript_members(_Tiny())
    good_code = next(n for n, d in good if n.endswith(".py") and b"class _Tiny" in d)
    twin = [*good, (good_code, dict(evil)[code])]
    results["TorchScript with two members of one name"] = run(["verify", fpf, _zip(root / "twin.pt", twin)], root)

    # 11-12. Tiny archives that unpack to work for the check itself.
    pickle = b"\x80\x02" + b"N0" * 15_000_000 + b"N."
    name = _zip(root / "opcodes.pt", [(n, pickle if n.endswith("/data.pkl") else d) for n, d in good])
    results["TorchScript pickle of 30 million opcodes"] = {
        **run(["verify", fpf, name], root), "file_bytes": (root / name).stat().st_size}  # fmt: skip
    code_bomb = b"def forward(self, x):\n    return [" + b"x," * 3_000_000 + b"]\n"
    name = _zip(root / "code.pt", [(n, code_bomb if n == good_code else d) for n, d in good])
    results["TorchScript with 6 MB of code"] = {
        **run(["verify", fpf, name], root), "file_bytes": (root / name).stat().st_size}  # fmt: skip

    # 13. A calibrated fingerprint whose null's region holds a NaN, against an innocent model.
    from modelprint.calibrate import calibrate
    from modelprint.fingerprints import Fingerprint

    negatives = [train_new("cnn", splits.attacker, TrainConfig(epochs=2), seed=s, width=4) for s in (11, 12, 13, 14)]
    save_model(negatives[-1], root / "innocent")
    calibrated = calibrate(Fingerprint.load(fpf), negatives[:3])
    calibrated.meta["null"]["region"] = [[float("nan"), float("nan")], *calibrated.meta["null"]["region"]]
    calibrated.save(root / "framed.fp.safetensors")
    results["fingerprint with a NaN in its null's region"] = run(
        ["verify", "framed.fp.safetensors", "innocent.safetensors", "--fpr", "0.01"], root)  # fmt: skip

    # 14. A zoo folder whose lock is a link to a file of the verifier's.
    victim = root / "victim.txt"
    victim.write_text("the verifier's own file\n")
    (root / "zoo").mkdir()
    (root / "zoo" / ".modelprint.lock").symlink_to(victim)
    (root / "tiny.toml").write_text(
        'data = "digits:8"\n[[models]]\nname = "s"\narch = "cnn"\nrole = "positive"\ncategory = "source"\n'
    )
    r = run(["zoo", "build", "tiny.toml", "--out", "zoo"], root)
    results["zoo build, lock linked to a file outside"] = {
        **r, "victim_changed": victim.read_text() != "the verifier's own file\n"}  # fmt: skip

    # 15. An answer of 48 MB: one string that never closes.
    url, _, srv = fake_server("unterminated")
    results["http 48 MB unterminated string, --timeout 5 --retries 0"] = run(
        ["verify", fpf, url, "--timeout", "5", "--retries", "0"], root)  # fmt: skip
    srv.shutdown()

    # 16. Cards that ask for a huge network or a prime input size.
    for label, changes in (
        ("CNN card with depth 100,000", {"arch_args": {"width": 8, "depth": 100_000}}),
        ("ViT card with depth 100,000", {"arch": "vit-tiny", "arch_args": {"depth": 100_000}}),
        ("ViT card with a prime input side of 1,000,003", {"arch": "vit-tiny", "arch_args": {},
                                                            "input_shape": [1, 1_000_003, 1_000_003]}),
    ):  # fmt: skip
        results[label] = run(["verify", fpf, _card(root, f"card-{len(results)}", **changes)], root)

    # 17. A spec of 2,000 derivations listed children first.
    entries = [f'[[models]]\nname = "m{k}"\nfrom = "m{k - 1}"\ncategory = "noise"\n'
               f'steps = [{{ attack = "noise", sigma = 0.01 }}]\n' for k in range(2000, 0, -1)]  # fmt: skip
    source = '[[models]]\nname = "m0"\nrole = "positive"\ncategory = "source"\narch = "cnn"\n'
    (root / "chain.toml").write_text('data = "digits:8"\n' + "\n".join(entries) + source)
    results["spec of 2,000 derivations, children first"] = {
        **run(["zoo", "build", "chain.toml", "--out", "chain-zoo"], root),
        "spec_bytes": (root / "chain.toml").stat().st_size}  # fmt: skip

    # 18. serve against slow readers of multi-MB answers, then SIGTERM.
    results["serve with 4 slow readers, then SIGTERM"] = _serve_slow_readers(root)


def _serve_slow_readers(root: Path) -> dict:
    import httpx
    import numpy as np

    from modelprint.suspects.http_api import encode_inputs

    port = _free_port()
    server = subprocess.Popen([*CLI, "serve", "owner.safetensors", "--port", str(port), "--read-timeout", "2",
                               "--max-batch", "30000", "--max-concurrent", "2", "--no-access-log"],
                              cwd=root, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    batch = np.random.default_rng(0).random((30_000, 1, 8, 8), dtype=np.float32)
    body = json.dumps(encode_inputs(batch)).encode()
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    readers = []
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.connect(("127.0.0.1", port))
        s.sendall(head.encode() + body)
        readers.append(s)
    time.sleep(3)
    codes, t0 = [], time.perf_counter()
    for _ in range(4):
        codes.append(
            httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=encode_inputs(batch[:2]), timeout=30).status_code
        )
    predict_seconds = time.perf_counter() - t0
    time.sleep(3)
    cut = 0
    for s in readers:
        s.settimeout(2)
        try:
            while s.recv(1 << 20):
                pass
            cut += 1
        except ConnectionResetError:
            cut += 1
        except TimeoutError:
            pass
        s.close()
    server.send_signal(signal.SIGTERM)
    t0 = time.perf_counter()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
    return {"predict_status": codes, "four_predictions_seconds": round(predict_seconds, 2),
            "slow_readers_cut_off": cut, "slow_readers": len(readers),
            "sigterm_to_exit_seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
