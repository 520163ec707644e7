"""``verify`` (a suspect against one fingerprint, or several combined) and ``serve`` (a model
as the kind of prediction API verify queries)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .._io import check_readable, sha256_file
from .._lazy import require
from ..combine import format_combined, verify_combined
from ..errors import ParameterError
from ..fingerprints import Fingerprint
from ..models import load_model
from ..parallel import check_device
from ..progress import console
from ..record import audit as audit_record
from ..record import recorded_verify, recorded_verify_combined
from ..suspects import open_suspect
from ..suspects import suspect_type as guess_type
from ..suspects.sandbox import SandboxLimits
from ..verify import format_verification
from ..verify import verify as verify_suspect
from .common import VERDICT_EXIT_CODES, app, print_json

FingerprintFiles = Annotated[
    list[Path],
    typer.Argument(metavar="FP...", help="Fingerprint file; several of one source give one combined verdict (Holm)."),
]
Suspect = Annotated[
    str,
    typer.Argument(
        help="Suspect: a model file (.safetensors), .onnx, TorchScript (.pt) or an http(s):// prediction API."
    ),
]
SuspectType = Annotated[
    str, typer.Option("--suspect-type", help="auto (from the suffix or URL), model, onnx, torchscript or http.")
]
Fpr = Annotated[float, typer.Option("--fpr", help="False-positive rate alpha: 'match' needs p < alpha.")]
MaxQueries = Annotated[
    int,
    typer.Option("--max-queries", help="Query budget, spent sequentially: batches until decided, at most this many."),
]
SequentialStep = Annotated[
    int, typer.Option("--sequential-step", help="With --max-queries: queries sent between two looks at the evidence.")
]
Commitment = Annotated[
    list[str],
    typer.Option("--commitment", help="Expected sha256 of FP (the owner's published one); repeat, in FP order."),
]
Threshold = Annotated[float, typer.Option("--threshold", help="Decide by statistic >= T instead of the p-value.")]
Token = Annotated[
    str,
    typer.Option("--token", envvar="MODELPRINT_TOKEN", help="Bearer token for an HTTP suspect (or $MODELPRINT_TOKEN)."),
]
Timeout = Annotated[float, typer.Option("--timeout", help="HTTP: seconds per request, in all.")]
CaFile = Annotated[
    Path, typer.Option("--ca-file", help="HTTPS: trust only the CA certificates in this PEM file (a private CA).")
]
Retries = Annotated[int, typer.Option("--retries", help="HTTP: further tries after a timeout, 429 or 5xx.")]
HttpBatch = Annotated[int, typer.Option("--batch-size", help="HTTP: most queries per request.")]
Outputs = Annotated[
    str,
    typer.Option("--outputs", help="ONNX / TorchScript: what the graph returns, logits or probabilities (softmax)."),
]
SandboxMemory = Annotated[
    int, typer.Option("--sandbox-memory-mb", help="ONNX / TorchScript: address space of the contained worker, in MB.")
]
SandboxTimeout = Annotated[
    float,
    typer.Option(
        "--sandbox-timeout", help="ONNX / TorchScript: seconds the worker may take to load or answer a batch."
    ),
]
Containment = Annotated[
    str,
    typer.Option(
        "--containment",
        help="ONNX / TorchScript: 'required' refuses to run a file where the file-system sandbox (Landlock) is "
        "missing; 'best-effort' runs it with limits and deadlines only.",
    ),
]
SuspectDevice = Annotated[str, typer.Option("--device", help="Model files: cpu or cuda, where the suspect runs.")]
Record = Annotated[
    Path,
    typer.Option(
        "--record",
        help="Write every query's hash and the suspect's answer, chained by hash, to this file: "
        "`modelprint audit RECORD FP...` reproduces the verdict from it without the suspect.",
    ),
]


@app.command()
def verify(
    fp_paths: FingerprintFiles,
    suspect: Suspect,
    suspect_type: SuspectType = "auto",
    fpr: Fpr = 1e-3,
    max_queries: MaxQueries = None,
    batch: SequentialStep = 10,
    commitment: Commitment = None,
    threshold: Threshold = None,
    token: Token = None,
    timeout: Timeout = 10.0,
    retries: Retries = 3,
    batch_size: HttpBatch = None,
    ca_file: CaFile = None,
    outputs: Outputs = "logits",
    sandbox_memory_mb: SandboxMemory = 4096,
    sandbox_timeout: SandboxTimeout = 120.0,
    containment: Containment = "required",
    device: SuspectDevice = "cpu",
    record: Record = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON on stdout.")] = False,
) -> None:
    """Query a suspect with a fingerprint: statistic, p-value under the calibrated null, verdict.
    With several fingerprints of one source: each verified, one verdict by Holm's procedure."""
    if batch < 1:  # checked before any file is read, in the flag's own name
        raise ParameterError(f"--sequential-step must be at least 1, got {batch}")
    fps, digests = _committed_fingerprints(fp_paths, commitment)
    if len(fps) > 1 and threshold is not None:
        raise ParameterError("--threshold applies to one fingerprint: a combined verdict is decided by p-values")
    kind = guess_type(suspect) if suspect_type == "auto" else suspect_type
    http = {"token": token, "timeout": timeout, "retries": retries, "batch_size": batch_size}
    http |= {"max_queries": max_queries, "ca_file": None if ca_file is None else str(ca_file)}
    limits = SandboxLimits(
        memory_mb=sandbox_memory_mb, load_timeout=sandbox_timeout, call_timeout=sandbox_timeout, containment=containment
    )
    adapter = open_suspect(suspect, kind, **_adapter_options(kind, http, limits, outputs, device))
    if len(fps) > 1:
        _verify_combined(fps, digests, adapter, commitment, record, fpr=fpr, max_queries=max_queries, as_json=as_json)
    settings = {"fpr": fpr, "max_queries": max_queries, "batch": batch, "threshold": threshold}
    if record is not None:
        given = commitment[0] if commitment else None
        verdict = recorded_verify(fps[0], adapter, record, fingerprint_sha256=digests[0], commitment=given, **settings)
    else:
        verdict = verify_suspect(fps[0], adapter, **settings)
    if verdict.warning:
        console.print(f"[yellow]warning:[/] {verdict.warning}")
    if as_json:
        print_json({**verdict.to_dict(), "fingerprint_sha256": digests[0]})
    else:
        sys.stdout.write(format_verification(verdict) + "\n")
    raise typer.Exit(VERDICT_EXIT_CODES[verdict.verdict])


def _adapter_options(kind: str, http: dict[str, Any], limits: SandboxLimits, outputs: str, device: str) -> dict:
    """The options of ``kind``'s adapter; an option given for another kind is an error, not ignored."""
    if outputs != "logits" and kind not in ("onnx", "torchscript"):
        raise ParameterError("--outputs applies to ONNX and TorchScript suspects only")
    if device != "cpu" and kind != "model":
        raise ParameterError("--device applies to model-file suspects; exported graphs and APIs run where they are")
    if kind == "http":
        return http
    if kind in ("onnx", "torchscript"):
        return {"outputs": outputs, "limits": limits}
    return {"device": check_device(device)} if kind == "model" else {}


def _committed_fingerprints(paths: list[Path], commitment: list[str] | None) -> tuple[list[Fingerprint], list[str]]:
    """The fingerprints and their sha256s, each checked against its --commitment when given."""
    if commitment and len(commitment) != len(paths):
        raise ParameterError(f"give one --commitment per fingerprint ({len(paths)}), got {len(commitment)}")
    fps, digests = [], []
    for i, path in enumerate(paths):
        fps.append(Fingerprint.load(path))
        digests.append(sha256_file(path))
        if commitment and commitment[i].strip().lower() != digests[-1]:
            raise ParameterError(
                f"{path} has sha256 {digests[-1]}, not the commitment {commitment[i]}: not the committed file"
            )
    return fps, digests


def _verify_combined(
    fps: list[Fingerprint],
    digests: list[str],
    adapter: Any,
    commitment: list[str] | None,
    record: Path | None,
    *,
    fpr: float,
    max_queries: int | None,
    as_json: bool,
) -> None:
    if record is not None:
        settings = {"fpr": fpr, "max_queries": max_queries, "commitments": commitment}
        combined = recorded_verify_combined(fps, adapter, record, fingerprint_sha256s=digests, **settings)
    else:
        combined = verify_combined(fps, adapter, fpr=fpr, max_queries=max_queries)
    for family in combined.families:
        if family.warning:
            console.print(f"[yellow]warning:[/] {family.method}: {family.warning}")
    if as_json:
        out = combined.to_dict()
        for family, digest in zip(out["families"], digests):
            family["fingerprint_sha256"] = digest
        print_json(out)
    else:
        sys.stdout.write(format_combined(combined) + "\n")
    raise typer.Exit(VERDICT_EXIT_CODES[combined.verdict])


ServeToken = Annotated[
    str,
    typer.Option(
        "--token", envvar="MODELPRINT_SERVE_TOKEN", help="Require this bearer token ($MODELPRINT_SERVE_TOKEN)."
    ),
]
MaxConcurrent = Annotated[
    int, typer.Option("--max-concurrent", help="Predictions in flight at once; more get 503 with Retry-After.")
]
ReadTimeout = Annotated[
    float,
    typer.Option(
        "--read-timeout", help="Seconds a client has to send a whole request; slower or idle ones are dropped."
    ),
]


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="Model file (.safetensors) to answer for.")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    labels_only: Annotated[
        bool, typer.Option("--labels-only", help="Answer top-1 labels only, like many APIs.")
    ] = False,
    token: ServeToken = None,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most images per request.")] = 256,
    max_request_mb: Annotated[float, typer.Option("--max-request-mb", help="Largest request body, in MB.")] = 16.0,
    disclose_sha256: Annotated[
        bool, typer.Option("--disclose-sha256", help="Tell clients the weights' sha256.")
    ] = False,
    max_concurrent: MaxConcurrent = 32,
    read_timeout: ReadTimeout = 10.0,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request to stderr.")
    ] = True,
    tls_cert: Annotated[Path, typer.Option("--tls-cert", help="Serve https with this certificate (PEM).")] = None,
    tls_key: Annotated[Path, typer.Option("--tls-key", help="The certificate's private key (PEM).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda: where the model answers.")] = "cpu",
) -> None:
    """Serve a model as an HTTP prediction API (OpenAPI at /openapi.json, docs at /docs)."""
    for name in ("fastapi", "uvicorn"):
        require(name, "modelprint serve", "serve")
    from ..serve import serve as run_server

    _check_serve_limits(max_batch, max_concurrent, port, max_request_mb, read_timeout)
    tls = _tls_files(tls_cert, tls_key)
    m = load_model(model)
    mode = "labels only" if labels_only else "labels and probabilities"
    auth = ", bearer token required" if token else ""
    shape = "x".join(map(str, m.card.input_shape))
    console.print(
        f"serving {model} ({m.card.arch}, {shape} -> {m.card.num_classes} classes; {mode}{auth}) at "
        f"{'https' if tls else 'http'}://{host}:{port}/v1/predict  (docs: /docs, Ctrl-C stops)",
        markup=False,
    )
    limits = {"max_batch": max_batch, "max_request_bytes": int(max_request_mb * 1024**2)}
    limits.update(max_concurrent=max_concurrent, read_timeout=read_timeout)
    run_server(
        m,
        host=host,
        port=port,
        labels_only=labels_only,
        token=token,
        disclose_sha256=disclose_sha256,
        access_log=access_log,
        device=check_device(device),
        tls=tls,
        **limits,
    )


def _tls_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """The certificate and key to serve https with, both readable, or None for http."""
    if (cert is None) != (key is None):
        raise ParameterError("https needs both --tls-cert and --tls-key")
    if cert is None or key is None:
        return None
    cert_file = check_readable(cert, "--tls-cert", ParameterError)
    return str(cert_file), str(check_readable(key, "--tls-key", ParameterError))


def _check_serve_limits(
    max_batch: int, max_concurrent: int, port: int, max_request_mb: float, read_timeout: float
) -> None:
    if max_batch < 1 or max_concurrent < 1 or not 0 < port < 65536:
        raise ParameterError("--max-batch and --max-concurrent must be positive and --port in 1..65535")
    if not (math.isfinite(max_request_mb) and 0 < max_request_mb <= 4096):
        raise ParameterError(f"--max-request-mb must be a number of MB in (0, 4096], got {max_request_mb}")
    if not (math.isfinite(read_timeout) and 0 < read_timeout <= 3600):
        raise ParameterError(f"--read-timeout must be a number of seconds in (0, 3600], got {read_timeout}")


@app.command()
def audit(
    record: Annotated[Path, typer.Argument(help="A record written by `modelprint verify --record`.")],
    fp_paths: Annotated[
        list[Path], typer.Argument(metavar="FP...", help="The fingerprint file the record names (several, in order).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Reproduce a recorded verdict from the record and the fingerprint(s) alone, without the
    suspect: exit 0 reproduced, 1 what differs (one line each), 2 not a record."""
    result = audit_record(record, fp_paths)
    if as_json:
        print_json({"reproduced": result.reproduced, "differences": result.differences})
    elif result.reproduced:
        v = result.recomputed or {}
        if "families" in v:
            what = f"{len(v['families'])} fingerprints combined by {v['rule'].capitalize()}"
        else:
            what = "no p-value" if v.get("p_value") is None else f"p = {v['p_value']:.3g}"
        sys.stdout.write(f"reproduced: {v['verdict']}, {what} at FPR {v['fpr']:g} ({v['queries']} queries)\n")
    else:
        sys.stdout.write("differs:\n" + "".join(f"  {d}\n" for d in result.differences))
    raise typer.Exit(0 if result.reproduced else 1)
