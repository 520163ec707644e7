"""``fingerprint calibrate`` and ``reference build``: fit a fingerprint's null on independent
models, and train those models once per source."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .._io import check_output_path
from ..calibrate import null_description, parse_arch
from ..errors import ParameterError
from ..fingerprints import Fingerprint
from ..models import load_model
from ..progress import console
from ..reference import (
    DEFAULT_SIZE,
    REFERENCE_FILE,
    ReferencePlan,
    build_reference_set,
    read_reference_set,
)
from .common import (
    REFERENCE_MODELS,
    AsJson,
    Device,
    OwnerData,
    ReferenceArchs,
    ReferenceEpochs,
    ReferenceSet,
    Screen,
    SplitSeed,
    TrainBackend,
    TrainWorkers,
    fingerprint_app,
    print_null,
    print_screening,
    reference_app,
    result,
)

Negatives = Annotated[
    list[Path], typer.Option("--negatives", help="Independent model files or folders of them (several after one flag).")
]
Positives = Annotated[list[Path], typer.Option("--positives", help="The owner's derived copies (pruned, fine-tuned).")]
ZooNegatives = Annotated[Path, typer.Option("--zoo", help="A zoo folder: its negative models.")]
ReferenceCount = Annotated[
    str, typer.Option(REFERENCE_MODELS, metavar="N", help="Train N independent reference models on the owner's data.")
]
ReferenceData = Annotated[str, typer.Option("--data", help="The owner's data set (default: the fingerprint's).")]
ReferenceDir = Annotated[
    Path,
    typer.Option("--reference-dir", help=f"Where {REFERENCE_MODELS} puts its reference set (default: beside --out)."),
]


@fingerprint_app.command("calibrate")
def fingerprint_calibrate(
    fp_path: Annotated[Path, typer.Argument(metavar="FP", help="Fingerprint file.")],
    out: Annotated[Path, typer.Option("--out", help="Calibrated fingerprint to write (may be FP itself).")],
    negatives: Negatives = None,
    zoo: ZooNegatives = None,
    references: ReferenceSet = None,
    reference_count: ReferenceCount = None,
    positives: Positives = None,
    data: ReferenceData = None,
    split_seed: SplitSeed = 0,
    reference_arch: ReferenceArchs = None,
    epochs: ReferenceEpochs = None,
    reference_dir: ReferenceDir = None,
    screen: Screen = None,
    workers: TrainWorkers = None,
    backend: TrainBackend = "local",
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Fit the statistic's null on independent models and store it in the fingerprint."""
    check_output_path(out, "fingerprint")
    if reference_dir is not None:
        check_output_path(reference_dir, "reference set", folder=True)
    count = _reference_count(reference_count)
    if not (negatives or zoo or references or count):
        raise ParameterError(
            f"give independent models: --negatives MODEL..., --zoo DIR, --references DIR or {REFERENCE_MODELS} N"
        )
    if references is not None:
        read_reference_set(references)  # a folder of model files is --negatives' (the error says so)
    fp = Fingerprint.load(fp_path)
    if count:  # trained into a reference set, so the folder serves later fingerprints as --references
        references = reference_dir or out.parent / (out.name.split(".")[0] + "-reference")
        archs = [parse_arch(a) for a in reference_arch] if reference_arch else None
        plan = ReferencePlan(count, data=data, split_seed=split_seed, archs=archs, epochs=epochs)
        build_reference_set(fp, plan, references, workers=workers, backend=backend, device=device)
        console.print(f"reference set of {count} models in {references} (reuse it: --references {references})")
    independent = [*(negatives or []), *([references] if references is not None else [])]
    owner_copies = [load_model(p) for p in positives or []]
    calibrated = api.calibrate(fp, independent, positives=owner_copies, zoo=zoo, screen=screen)
    if screen is not None:
        print_screening(calibrated)
    digest = calibrated.save(out)
    print_null(calibrated)
    record = {"fingerprint": str(out), "sha256": digest, "null": null_description(calibrated)}
    result(as_json, record, f"sha256 {digest}  {out}")


def _reference_count(text: str | None) -> int:
    """How many reference models to train; a folder there is another flag's."""
    if text is None:
        return 0
    if not text.isdigit():
        raise ParameterError(
            f"{REFERENCE_MODELS} takes how many reference models to train (e.g. {REFERENCE_MODELS} 10), got "
            f"{text!r}; for models you have, give --references DIR (a reference set) or --negatives DIR "
            "(a folder of model files)"
        )
    return int(text)


@reference_app.command("build")
def reference_build(
    model: Annotated[Path, typer.Argument(help="The owner's source model (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the reference set.")],
    count: Annotated[int, typer.Option(REFERENCE_MODELS, metavar="N", help="How many to train.")] = DEFAULT_SIZE,
    data: OwnerData = None,
    split_seed: SplitSeed = 0,
    reference_arch: ReferenceArchs = None,
    epochs: ReferenceEpochs = None,
    positives: Annotated[
        bool, typer.Option("--positives/--no-positives", help="Also the owner's 4 derived copies (pruned, fine-tuned).")
    ] = True,
    students: Annotated[
        bool, typer.Option("--students/--no-students", help="Every third model a student distilled from another.")
    ] = True,
    workers: TrainWorkers = None,
    backend: TrainBackend = "local",
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Train independent reference models on the owner's data once; calibrate any fingerprint of
    this source with them (fingerprint calibrate / create --references DIR). They are built as a
    zoo: on parallel workers or Ray, and a stopped build resumes when run again."""
    check_output_path(out, "reference set", folder=True)
    archs = [parse_arch(a) for a in reference_arch] if reference_arch else None
    plan = ReferencePlan(count, data=data, split_seed=split_seed, archs=archs, epochs=epochs, students=students)
    settings = {"positives": positives, "workers": workers, "backend": backend, "device": device}
    try:
        record = build_reference_set(load_model(model), plan, out, **settings)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished reference models are kept; run the same command to resume\n")
        raise typer.Exit(130) from None
    n_models, n_positives = len(record["models"]), len(record["positives"])
    console.print(
        f"reference set of {n_models} independent models and {n_positives} derived copies of the source on "
        f"{record['dataset']} in {out}"
    )
    summary = {"reference_set": str(out / REFERENCE_FILE), "models": n_models, "positives": n_positives}
    result(as_json, {**summary, "dataset": record["dataset"]}, str(out / REFERENCE_FILE))
