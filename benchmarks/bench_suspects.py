"""Verification time per suspect through each adapter, and a check that all agree.

One model, exported to ONNX and TorchScript and served by two `modelprint serve` processes on
loopback (scores; labels only). A characteristic-example fingerprint (100 queries) is verified
through every adapter: time to open the suspect (load, session, /v1/info) and time to verify,
median of ``--repeats`` runs, one adapter at a time, as ratios to the in-process model. The evidence must be
identical through every adapter, or the script stops.

    python benchmarks/bench_suspects.py [--model M.safetensors] [--repeats 25] \
        [--out benchmarks/results_suspects.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MODELPRINT_QUIET", "1")

from bench_serve import default_model, free_port, start_server  # noqa: E402

from modelprint.export import export_model  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.models import load_model  # noqa: E402
from modelprint.suspects import TorchSuspect, open_suspect  # noqa: E402
from modelprint.verify import verify  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file (default: a CNN trained on digits here)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_suspects.json")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = Path(args.model) if args.model else default_model(root)
        model = load_model(path).eval()
        fp = create_method("c").generate(model, n=args.n, seed=0, progress=False)
        onnx_path = export_model(model, root / "m.onnx", "onnx")
        ts_path = export_model(model, root / "m.pt", "torchscript")
        ports = free_port(), free_port()
        servers = [start_server(path, ports[0]), start_server(path, ports[1], "--labels-only")]
        try:
            openers = {
                "in-process": lambda: TorchSuspect(model),
                "model file": lambda: open_suspect(path),
                "onnx": lambda: open_suspect(onnx_path),
                "torchscript": lambda: open_suspect(ts_path),
                "http (scores)": lambda: open_suspect(f"http://127.0.0.1:{ports[0]}"),
                "http (labels only)": lambda: open_suspect(f"http://127.0.0.1:{ports[1]}"),
            }
            rows, reference = {}, None
            # One adapter at a time, a pause between them: a server's torch threads spin for a while after
            # answering, and interleaving would charge that to whichever adapter ran next on these 2 cores.
            # The in-process model is measured first and again last, to show the drift.
            for name in [*openers, "in-process"]:
                time.sleep(1.0)
                t_open, suspect = timed(openers[name], args.repeats)
                verify(fp, suspect)  # warm-up: first forward, connection
                t_verify, result = timed(lambda s=suspect: verify(fp, s), args.repeats)
                reference = reference or result
                if result.evidence != reference.evidence or result.verdict != reference.verdict:
                    raise SystemExit(f"{name}: evidence differs from the in-process model's")
                key = name if name not in rows else "in-process (again, last)"
                rows[key] = {"open_s": t_open, "verify_s": t_verify, "queries": result.queries}
        finally:
            for s in servers:
                s.terminate()
                s.wait(timeout=30)
    base = rows["in-process"]["verify_s"]
    for row in rows.values():
        row["verify_ratio"] = round(row["verify_s"] / base, 2)
        row["open_s"], row["verify_s"] = round(row["open_s"], 4), round(row["verify_s"], 4)
    out = {
        "model": str(path) if args.model else "cnn width 16 trained on digits 8x8 here",
        "arch": model.card.arch,
        "input_shape": list(model.card.input_shape),
        "queries": args.n,
        "repeats": args.repeats,
        "same_evidence_everywhere": True,
        "adapters": rows,
    }
    print(json.dumps(out, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
