"""Load test of `modelprint serve` on loopback: concurrent clients, latency, throughput, errors.

The server runs as its own process (`python -m modelprint serve`, as a user would start it) on
127.0.0.1; client threads in this process send base64 batches of random [0, 1] images and
check every answer against the model's own labels computed here. Each level runs a fixed
number of requests per client (bounded, no time-based loop), after a warm-up request each.

    python benchmarks/bench_serve.py [--model M.safetensors] [--clients 1,4,16] [--requests 50] \
        [--batch 1,32] [--out benchmarks/results_serve.json]

Without --model a small CNN is trained on the bundled digits first (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.models import load_model, save_model  # noqa: E402
from modelprint.suspects.http_api import encode_inputs  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: Path, port: int, *extra: str) -> subprocess.Popen:
    """`modelprint serve` in its own process; returns once /health answers."""
    import httpx

    cmd = [sys.executable, "-m", "modelprint", "serve", str(model_path), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {proc.stderr.read().decode()[-500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("serve did not start within 120 s")


def default_model(root: Path) -> Path:
    from modelprint.data import load_splits
    from modelprint.train import TrainConfig, train_new

    splits = load_splits("digits")
    model = train_new("cnn", splits.owner, TrainConfig(epochs=5), seed=0, test=splits.test, width=16)
    return save_model(model, root / "digits-cnn")


def run_level(url: str, model, clients: int, requests: int, batch: int, seed: int) -> dict:
    import httpx

    shape = tuple(model.card.input_shape)
    latencies: list[float] = []
    wrong = failed = 0
    lock = threading.Lock()

    def client(i: int) -> None:
        nonlocal wrong, failed
        rng = np.random.default_rng(seed * 1000 + i)
        batches = [rng.random((batch, *shape), dtype=np.float32) for _ in range(requests + 1)]
        with torch.no_grad():
            expected = [model(torch.from_numpy(b)).argmax(1).tolist() for b in batches]
        with httpx.Client(timeout=60) as http:
            http.post(f"{url}/v1/predict", json=encode_inputs(batches[0]))  # warm-up: connection, first forward
            for b, want in zip(batches[1:], expected[1:]):
                t0 = time.perf_counter()
                try:
                    r = http.post(f"{url}/v1/predict", json=encode_inputs(b))
                    ok = r.status_code == 200
                    got = r.json()["labels"] if ok else None
                except (httpx.HTTPError, ValueError, KeyError):
                    ok, got = False, None
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    failed += not ok
                    wrong += ok and got != want

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    total = clients * requests
    return {
        "clients": clients,
        "batch": batch,
        "requests": total,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "mean_ms": round(float(statistics.fmean(lat)), 2),
        "requests_per_s": round(total / wall, 1),
        "images_per_s": round(total * batch / wall, 1),
        "failed": failed,
        "wrong": wrong,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file to serve (default: a CNN trained on digits here)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--requests", type=int, default=50, help="requests per client per level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_serve.json")))
    args = ap.parse_args()
    torch.set_num_threads(1)  # the client side's own forward passes should not steal the server's cores
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else default_model(Path(tmp))
        model = load_model(path).eval()
        port = free_port()
        proc = start_server(path, port, "--max-batch", "256")
        try:
            levels = []
            for batch in [int(b) for b in args.batch.split(",")]:
                for clients in [int(c) for c in args.clients.split(",")]:
                    row = run_level(f"http://127.0.0.1:{port}", model, clients, args.requests, batch, args.seed)
                    levels.append(row)
                    print(json.dumps(row))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    out = {
        "model": str(path) if args.model else "cnn width 16 trained on digits 8x8 here",
        "arch": model.card.arch,
        "input_shape": list(model.card.input_shape),
        "requests_per_client": args.requests,
        "cpu_count": os.cpu_count(),
        "levels": levels,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
