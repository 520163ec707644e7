"""``fingerprint create``, ``show`` and ``commit``: make a fingerprint from a source model,
read one back, print its commitment."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import api
from .._io import check_output_path, printable, sha256_file
from ..api import Tuning
from ..calibrate import separation_advice
from ..fingerprints import Fingerprint, create_method, method_of
from ..models import load_model
from ..progress import console
from ..reference import read_reference_set
from .common import (
    REFERENCE_MODELS,
    AsJson,
    Device,
    OwnerData,
    ReferenceEpochs,
    Screen,
    check_fpr,
    fingerprint_app,
    parse_params,
    print_json,
    print_null,
    print_screening,
    result,
    seed_or_drawn,
)

FingerprintFile = Annotated[Path, typer.Argument(metavar="FP", help="Fingerprint file.")]
Method = Annotated[
    str,
    typer.Option("--method", help="A registered method (modelprint list names them)."),
]
Seed = Annotated[
    int,
    typer.Option("--seed", "--key", help="Seed of the queries (a white-box mark's key); default: drawn, recorded."),
]
Tune = Annotated[bool, typer.Option("--tune", help="Choose the method's settings on the owner's reference models.")]
TuneFpr = Annotated[float, typer.Option("--fpr", help="--tune: the false-positive rate to maximise the TPR at.")]
TuneReferences = Annotated[
    int, typer.Option(REFERENCE_MODELS, metavar="N", help="--tune: independent reference models to train.")
]
Host = Annotated[str, typer.Option("--host", help="White-box mark: the layer to mark (modelprint list --hosts ARCH).")]
Mark = Annotated[list[str], typer.Option("--mark", help="White-box mark: K=V setting (k, cutoff, beta, epochs, ...).")]
MarkedOut = Annotated[Path, typer.Option("--marked-out", help="White-box mark: where the marked model goes.")]
CreateReferences = Annotated[
    Path, typer.Option("--references", metavar="DIR", help="Calibrate at once on this reference set.")
]
FingerprintOut = Annotated[Path, typer.Option("--out", help="Fingerprint file (.fp.safetensors).")]


@fingerprint_app.command("create")
def fingerprint_create(
    model: Annotated[Path, typer.Argument(help="Source model (.safetensors).")],
    method: Method,
    out: FingerprintOut,
    param: Annotated[list[str], typer.Option("--param", help="K=V method parameter (repeat).")] = None,
    n: Annotated[int, typer.Option("--n", help="Number of queries.")] = 100,
    seed: Seed = None,
    tune: Tune = False,
    fpr: TuneFpr = 1e-2,
    data: OwnerData = None,
    reference_count: TuneReferences = 6,
    epochs: ReferenceEpochs = None,
    device: Device = "cpu",
    host: Host = None,
    mark: Mark = None,
    marked_out: MarkedOut = None,
    references: CreateReferences = None,
    screen: Screen = None,
    as_json: AsJson = False,
) -> None:
    """Generate a fingerprint from a model; prints its sha256 commitment.

    For a method that marks the model first (a white-box mark), an unmarked model is marked (the
    seed is the owner's key): the marked model is written to --marked-out and the fingerprint reads it."""
    check_output_path(out, "fingerprint")
    check_fpr(fpr)
    if references is not None:
        read_reference_set(references)  # before any work: a folder of model files is calibrate --negatives'
    params = parse_params(param)
    maker = create_method(method, **params)
    seed = seed_or_drawn(seed, maker.seed_name)
    fp = api.fingerprint(
        load_model(model),
        data,
        method=method,
        n=n,
        seed=seed,
        device=device,
        progress=True,
        check_accuracy=False,
        tune=Tuning(fpr=fpr, references=reference_count, epochs=epochs) if tune else False,
        mark={**({"host": host} if host is not None else {}), **parse_params(mark)},
        marked_out=marked_out or _marked_path(out),
        references=references,
        screen=screen,
        **params,
    )
    if screen is not None:
        print_screening(fp)
    digest = fp.save(out)
    _report_created(fp, maker, out, calibrated=references is not None)
    record = {"fingerprint": str(out), "sha256": digest, "method": maker.name, "queries": len(fp), "seed": seed}
    record.update(calibrated="null" in fp.meta, holds=maker.summary(fp))
    result(as_json, record, f"sha256 {digest}  {out}")


def _report_created(fp: Fingerprint, maker: Any, out: Path, *, calibrated: bool) -> None:
    """What was written, how the queries did, and what to do next (calibrate, or another method
    when tuning saw independent models agree with the source like copies)."""
    hit = fp.meta.get("target_hit_rate")
    reached = f", {hit:.0%} reached their target" if hit is not None else ""
    console.print(f"wrote {out}: {maker.summary(fp)}{reached}")
    tuning = fp.meta.get("tuning")
    if tuning:
        chosen = [row for row in tuning["table"] if row["params"] == {k: tuning["chosen"][k] for k in row["params"]}]
        advice = separation_advice(chosen[0]["negative_mean"], maker.name) if chosen else None
        if advice:
            console.print(f"warning: on the tuning's reference models {advice}", markup=False)
    if calibrated:
        print_null(fp)
        return
    console.print(
        "calibrate it before publishing the commitment: modelprint fingerprint calibrate FP --references DIR "
        f"(or {REFERENCE_MODELS} N); until then verify can only say inconclusive"
    )


def _marked_path(out: Path) -> Path:
    return out.with_name(out.name.split(".")[0] + ".marked.safetensors")


@fingerprint_app.command("show")
def fingerprint_show(
    fp_path: FingerprintFile,
    verbose: Annotated[bool, typer.Option("--verbose", help="Every metadata field, the null's numbers too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Every field as JSON.")] = False,
) -> None:
    """The commitment in full, then what the fingerprint holds and how it is calibrated."""
    fp = Fingerprint.load(fp_path)
    digest = sha256_file(fp_path)
    info = {**fp.meta, "queries": len(fp), "input_shape": list(fp.input_shape), "sha256": digest}
    info["holds"] = method_of(fp).summary(fp)
    if as_json:
        print_json(info)
        return
    sys.stdout.write(f"{digest}  {fp_path}\n")  # the line to publish, as `fingerprint commit` prints it
    for line in _description(fp, info["holds"]):
        sys.stdout.write(printable(line) + "\n")
    if "null" in fp.meta:
        print_null(fp, stream=True)
    else:
        sys.stdout.write(
            "null     not calibrated: verify can only say inconclusive (modelprint fingerprint calibrate)\n"
        )
    if verbose:
        for k, v in sorted(info.items()):
            text = json.dumps(v) if isinstance(v, dict | list) else str(v)
            sys.stdout.write(printable(f"{k}: {text}") + "\n")


def _description(fp: Fingerprint, holds: str) -> list[str]:
    m = fp.meta
    params = ", ".join(f"{k}={v}" for k, v in (m.get("params") or {}).items())
    seconds = m.get("generation_seconds")
    source = f"sha256 {m.get('source_sha256')}, {m.get('source_arch')} {m.get('source_arch_args') or ''}"
    return [
        f"method   {m.get('method')} ({params})" if params else f"method   {m.get('method')}",
        f"holds    {holds}",
        f"inputs   {'x'.join(map(str, fp.input_shape))} -> {m.get('num_classes')} classes, seed {m.get('seed')}",
        f"source   {source}".rstrip(),
        f"data     {m.get('dataset') or '(not recorded)'}",
        f"made     {m.get('created')} by modelprint {m.get('modelprint_version')}"
        + (f" in {seconds:.1f} s" if seconds is not None else ""),
    ]


@fingerprint_app.command("commit")
def fingerprint_commit(fp_path: FingerprintFile, as_json: AsJson = False) -> None:
    """Print the fingerprint's commitment (its sha256) in `sha256sum` format, after checking it loads."""
    Fingerprint.load(fp_path)
    digest = sha256_file(fp_path)
    result(as_json, {"fingerprint": str(fp_path), "sha256": digest}, f"{digest}  {fp_path}")
