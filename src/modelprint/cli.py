"""The ``modelprint`` command line: a thin layer over the Python API.

Exit codes: 0 success (``verify``: match), 1 ``verify``: no-match, 2 bad input (one line on
stderr), 3 ``verify``: inconclusive, 70 internal error (a bug: the traceback is printed).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperOption

from ._io import atomic_write_text, check_output_path, printable, sha256_file
from ._lazy import require
from ._version import __version__
from .attacks import ATTACKS, create_attack
from .bench import run_bench
from .bench.nullcheck import null_check_tables, plot_null_check, run_null_check
from .bench.report import leaderboard, write_report
from .calibrate import calibrate, null_description, parse_arch, train_reference
from .combine import format_combined, verify_combined
from .data import load_splits
from .demo import run_demo
from .errors import ModelprintError, ParameterError
from .evaluate import evaluate as _evaluate
from .evaluate import print_group_table, print_table, rates_by_group
from .export import export_model
from .fingerprints import METHODS, Fingerprint, ablation_variants, create_method, method_of
from .fingerprints import gan as gan_tools
from .models import ARCHITECTURES, create_model, import_model, is_import_path, load_model, save_model
from .models import trust_arch as trust_arch_paths
from .models.attachments import attachment_hosts, attachment_names
from .models.sanity import chance_problem
from .progress import configure_logging, console, progress_bar
from .reference import DEFAULT_SIZE as DEFAULT_REFERENCE_SIZE
from .reference import build_reference_set, reference_models, reference_positives
from .stealth import StealthConfig, detection_rates
from .suspects import open_suspect
from .suspects import suspect_type as guess_type
from .suspects.sandbox import SandboxLimits
from .train import TrainConfig, accuracy, train_new, training_settings
from .tune import tune_method
from .verify import format_verification
from .verify import verify as _verify
from .zoo import ZooError, ZooManifest, source_row
from .zoo.build import build_zoo, verify_zoo
from .zoo.spec import builtin_specs

# What `verify` exits with, so that scripts tell verdicts apart without parsing the output.
VERDICT_EXIT_CODES = {"match": 0, "no-match": 1, "inconclusive": 3}
INTERNAL_ERROR = 70  # EX_SOFTWARE: not 1, which is a verdict

app = typer.Typer(
    help="Prove who owns a trained neural network.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
fingerprint_app = typer.Typer(help="Create and inspect fingerprints.", no_args_is_help=True)
app.add_typer(fingerprint_app, name="fingerprint")
zoo_app = typer.Typer(help="Build, list and check zoos of suspect models.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
gan_app = typer.Typer(help="Train the GAN that NaturalFinger draws its queries from.", no_args_is_help=True)
app.add_typer(gan_app, name="gan")
reference_app = typer.Typer(
    help="Reference sets: independent models trained once, reused to calibrate every fingerprint.",
    no_args_is_help=True,
)
app.add_typer(reference_app, name="reference")
model_app = typer.Typer(
    help="Bring your own model: import an nn.Module's weights as a model file.", no_args_is_help=True
)
app.add_typer(model_app, name="model")


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"modelprint {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    trust_arch: list[str] = typer.Option(
        None,
        "--trust-arch",
        metavar="MODULE:ATTR",
        help=(
            "Import this exact architecture path when a model card names it (your code or a library's factory; "
            "repeat), from installed packages and PYTHONPATH, never the working folder. Also MODELPRINT_TRUST_ARCH."
        ),
    ),  # fmt: skip
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, warnings and results only."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail in the log (debug lines)."),
) -> None:
    """Prove who owns a trained neural network."""
    trust_arch_paths(*(trust_arch or []))
    if quiet:
        os.environ["MODELPRINT_QUIET"] = "1"
    configure_logging(-1 if quiet else min(verbose, 1))


def _device(device: str) -> str:
    """``device`` checked before any work: cpu, or a CUDA device this machine has."""
    import torch

    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise ParameterError(f"--device {device!r}: this machine offers cpu only" if device.startswith("cuda")
                             else f"--device must be cpu or cuda[:N], got {device!r}")  # fmt: skip
    return device


def _seed(seed: int | None, what: str = "seed") -> int:
    """The seed given, or one drawn now (printed, and recorded in what is written)."""
    if seed is not None:
        return seed
    drawn = random.SystemRandom().randrange(2**31)
    console.print(f"{what} {drawn} (drawn; pass --seed {drawn} to repeat this run)")
    return drawn


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``K=V`` pairs; V is read as JSON where it parses (numbers, true/false, null), else a string."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"expected K=V, got {item!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def _check_fpr(fpr: float) -> None:
    if not 0 < fpr < 1:  # also false for NaN
        raise ParameterError(f"--fpr must be a rate in (0, 1), got {fpr}")


def _out(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def json_option() -> Any:
    return typer.Option(False, "--json", help="Print the result as JSON on stdout (messages stay on stderr).")


def _result(as_json: bool, record: dict[str, Any], line: str | list[str] | None = None) -> None:
    """A command's result: ``record`` as JSON with --json, else ``line`` (or lines; if any) on
    stdout, control characters in each escaped."""
    if as_json:
        _out(record)
    elif line is not None:
        for text in [line] if isinstance(line, str) else line:
            sys.stdout.write(printable(text) + "\n")


@app.command()
def demo(
    out: Path = typer.Option(Path("modelprint-demo"), "--out", help="Folder for models, fingerprints, results."),
    fast: bool = typer.Option(False, "--fast", help="Fewer epochs and models (a smoke run, not the study)."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of every random choice (default 0, so a rerun repeats the study)."
    ),
) -> None:
    """Train a source and independent models on digits, fingerprint, prune, evaluate."""
    check_output_path(out, "demo", folder=True)

    run_demo(out, fast=fast, seed=seed)


@app.command()
def train(
    data: str = typer.Option(
        "digits", "--data", help="digits[:16|:32], fashion-mnist[:32], mnist:PATH, cifar10:PATH, folder:PATH, npz:PATH"
    ),
    arch: str = typer.Option(..., "--arch", help="Architecture name (modelprint list)."),
    arch_arg: list[str] = typer.Option(None, "--arch-arg", help="K=V architecture argument (repeat)."),
    split: str = typer.Option("owner", "--split", help="owner | attacker | all"),
    epochs: int = typer.Option(30, "--epochs", help="Scaled by the architecture's epoch_factor (vit-tiny: 2x)."),
    lr: float = typer.Option(None, "--lr", help="Default: the architecture's own (0.05 for SGD families)."),
    optimizer: str = typer.Option(None, "--optimizer", help="sgd | adam (default: the architecture's own)"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine | step | constant"),
    augment: str = typer.Option("crop", "--augment", help="none | crop | flip | crop+flip"),
    batch_size: int = typer.Option(64, "--batch-size"),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the owner/attacker/test cut."),
    train_subset: int = typer.Option(0, "--train-subset", help="Keep N class-balanced images of the split (0: all)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the initial weights and batches (default: drawn)."),
    device: str = typer.Option("cpu", "--device"),
    out: Path = typer.Option(..., "--out", help="Model file to write (.safetensors + .json)."),
    as_json: bool = json_option(),
) -> None:
    """Train a model and write a model file (--arch: a registered name or your own MODULE:ATTR)."""
    check_output_path(out, "model")
    if is_import_path(arch):
        trust_arch_paths(arch)

    if split not in ("owner", "attacker", "all"):
        raise ParameterError(f"--split must be owner, attacker or all, got {split!r}")
    splits = load_splits(data, split_seed=split_seed, train_subset=train_subset)
    general = {"epochs": epochs, "lr": 0.05, "schedule": schedule, "augment": augment, "batch_size": batch_size}
    given = {k: v for k, v in (("lr", lr), ("optimizer", optimizer)) if v is not None}
    cfg = TrainConfig(**training_settings(arch, general, given))
    model = train_new(
        arch, splits.get(split), cfg, seed=_seed(seed), test=splits.test, device=device, **parse_params(arch_arg)
    )
    if train_subset:
        model.card.training["train_subset"] = train_subset
    path = save_model(model, out)
    console.print(f"wrote {path} (test accuracy {model.card.accuracy:.4f}, sha256 {model.card.weights_sha256[:16]}…)")
    _result(as_json, {"model": str(path), "sha256": model.card.weights_sha256, "accuracy": model.card.accuracy,
                      "seed": model.card.seed, "arch": model.card.arch})  # fmt: skip


@model_app.command("import")
def model_import(
    arch: str = typer.Option(
        ..., "--arch", metavar="MODULE:ATTR", help="Your architecture (e.g. mynets:make_net) or a registered name."
    ),
    arch_arg: list[str] = typer.Option(
        None, "--arch-arg", metavar="K=V", help="Argument of the architecture (repeat)."
    ),
    weights: list[Path] = typer.Option(
        ...,
        "--weights",
        help="State dicts: .safetensors, or .pt/.pth (read with weights_only); several after one flag.",
    ),
    input_shape: str = typer.Option(..., "--input-shape", metavar="C,H,W", help="Input image shape, e.g. 3,32,32."),
    num_classes: int = typer.Option(None, "--num-classes", help="Default: read from the network's output."),
    mean: str = typer.Option(
        None, "--mean", metavar="M[,M,M]", help="Per-channel mean the net was trained with (default 0)."
    ),
    std: str = typer.Option(
        None, "--std", metavar="S[,S,S]", help="Per-channel std (default 1: the net sees [0, 1] images)."
    ),
    data: str = typer.Option(
        None, "--data", help="The owner's data set, recorded in the card (and test accuracy measured)."
    ),
    out: Path = typer.Option(
        None, "--out", help="Model file to write (one --weights); default: NAME.safetensors beside each weights file."
    ),
    accept_low_accuracy: bool = typer.Option(
        False, "--accept-low-accuracy", help="Write a model that answers --data at about chance (refused otherwise)."
    ),
    as_json: bool = json_option(),
) -> None:
    """Turn your nn.Module's trained weights into model files every command reads."""
    if out is not None and len(weights) > 1:
        raise ParameterError("--out names one model file: with several --weights, each is written beside its weights")
    targets = [out] if out is not None else [w.with_suffix("") for w in weights]
    for target in targets:
        check_output_path(target, "model")
    if is_import_path(arch):
        trust_arch_paths(arch)
    shape = _shape(input_shape)
    splits = load_splits(data) if data else None
    if splits is not None and tuple(splits.test.input_shape) != shape:
        raise ParameterError(
            f"{data} gives {'x'.join(map(str, splits.test.input_shape))} images, the model takes {input_shape}"
        )
    if mean is None and std is None:
        console.print(
            "warning: no --mean/--std: the network is given [0, 1] images as they are; if it was trained on "
            "normalised inputs, give the mean and std it was trained with",
            markup=False,
        )
    records = []
    for source, target in zip(weights, targets):
        model = import_model(
            arch, source, input_shape=shape, num_classes=num_classes, arch_args=parse_params(arch_arg),
            mean=_floats(mean, shape[0], "--mean"), std=_floats(std, shape[0], "--std"), dataset=data or "",
        )  # fmt: skip
        if splits is not None:
            model.card.classes = splits.test.classes
            model.card.accuracy = accuracy(model, splits.test)
            problem = chance_problem(model.card.accuracy, model.card.num_classes)
            if problem and not accept_low_accuracy:
                raise ParameterError(f"{source}: {problem}; give --mean/--std (or --accept-low-accuracy if it is real)")
        path = save_model(model, target)
        acc = f", test accuracy {model.card.accuracy:.4f}" if model.card.accuracy is not None else ""
        console.print(f"wrote {path} ({model.card.arch}, {'x'.join(map(str, shape))} -> {model.card.num_classes} "
                      f"classes{acc}, sha256 {model.card.weights_sha256[:16]}…)", markup=False)  # fmt: skip
        records.append({"model": str(path), "sha256": model.card.weights_sha256, "accuracy": model.card.accuracy,
                        "arch": model.card.arch, "num_classes": model.card.num_classes})  # fmt: skip
    _result(as_json, {"models": records})


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ParameterError(f"--input-shape must be C,H,W, e.g. 3,32,32; got {text!r}")
    return shape  # type: ignore[return-value]


def _floats(text: str | None, channels: int, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ParameterError(f"{flag} takes 1 or {channels} comma-separated numbers, got {text!r}")
    return values


@gan_app.command("train")
def gan_train(
    data: str = typer.Option("digits", "--data", help="The owner's data set, as for `modelprint train`."),
    split: str = typer.Option("owner", "--split", help="owner (the default: the GAN sees only the owner's data) | all"),
    split_seed: int = typer.Option(0, "--split-seed"),
    train_subset: int = typer.Option(0, "--train-subset", help="Keep N class-balanced images of the split (0: all)."),
    steps: int = typer.Option(3000, "--steps", help="Generator and discriminator updates."),
    width: int = typer.Option(64, "--width", help="Channels at the lowest resolution."),
    z_dim: int = typer.Option(64, "--z-dim"),
    batch_size: int = typer.Option(64, "--batch-size"),
    conditional: bool = typer.Option(
        True, "--conditional/--unconditional", help="Class-conditional (conditional batch norm, projection D)."
    ),
    seed: int = typer.Option(None, "--seed", help="Default: drawn, and recorded in the GAN's card."),
    device: str = typer.Option("cpu", "--device"),
    out: Path = typer.Option(..., "--out", help="GAN file (.safetensors; card .json and samples .png beside it)."),
    as_json: bool = json_option(),
) -> None:
    """Train a SAGAN on the owner's data; an interrupted run resumes from its checkpoint."""
    check_output_path(out, "GAN")

    if split not in ("owner", "all"):
        raise ParameterError(f"--split must be owner or all (the attacker's half is not the owner's), got {split!r}")
    config = gan_tools.GANConfig(z_dim=z_dim, width=width, steps=steps, batch_size=batch_size, conditional=conditional)
    images = load_splits(data, split_seed=split_seed, train_subset=train_subset).get(split)
    weights, _ = gan_tools.gan_paths(out)
    ckpt = gan_tools.checkpoint_path(weights)
    if ckpt.is_file():
        console.print(f"resuming from {ckpt}")
    gan = gan_tools.train_gan(images, config, seed=_seed(seed), device=device, checkpoint=ckpt)
    gan.card.update(split_seed=split_seed, train_subset=train_subset)
    path = gan_tools.save_gan(gan, weights)
    ckpt.unlink(missing_ok=True)
    last = gan.card["history"][-1] if gan.card["history"] else {}
    console.print(
        f"wrote {path}, {path.with_suffix('.json').name} and {path.with_suffix('.png').name} "
        f"({gan.card['train_seconds']:.0f} s; last losses D {last.get('d_loss')}, G {last.get('g_loss')})"
    )
    _result(as_json, {"gan": str(path), "seconds": gan.card["train_seconds"], "seed": gan.card.get("seed"),
                      "last": last})  # fmt: skip


@fingerprint_app.command("create")
def fingerprint_create(
    model: Path = typer.Argument(..., help="Source model (.safetensors)."),
    method: str = typer.Option(
        ..., "--method", help="A registered method (modelprint list): c, ltrc, naturalfinger, metav, frequency, ..."
    ),
    param: list[str] = typer.Option(None, "--param", help="K=V method parameter (repeat)."),
    n: int = typer.Option(100, "--n", help="Number of queries."),
    seed: int = typer.Option(
        None, "--seed", "--key", help="Seed of the queries; for frequency, the owner's key (default: drawn, recorded)."
    ),
    tune: bool = typer.Option(False, "--tune", help="Choose the method's settings on the owner's reference models."),
    fpr: float = typer.Option(1e-2, "--fpr", help="--tune: the false-positive rate to maximise the TPR at."),
    data: str = typer.Option(
        None, "--data", help="The owner's data set (default: the model card's), e.g. folder:PATH."
    ),
    tune_negatives: int = typer.Option(6, "--tune-negatives", help="--tune: reference negatives to train."),
    epochs: int = typer.Option(None, "--epochs", help="--tune: epochs per reference negative (default: the source's)."),
    device: str = typer.Option("cpu", "--device"),
    host: str = typer.Option(None, "--host", help="frequency: the layer to mark (modelprint list --hosts ARCH)."),
    mark: list[str] = typer.Option(
        None, "--mark", help="frequency: K=V injection setting (k, cutoff, aux_class, beta, overwrites, epochs, lr)."
    ),
    marked_out: Path = typer.Option(None, "--marked-out", help="frequency: where the marked model goes."),
    references: Path = typer.Option(
        None, "--references", help="Calibrate at once on this reference set (modelprint reference build)."
    ),
    out: Path = typer.Option(..., "--out", help="Fingerprint file (.fp.safetensors)."),
    as_json: bool = json_option(),
) -> None:
    """Generate a fingerprint from a model; prints its sha256 commitment.

    For the white-box ``frequency`` method, an unmarked model is marked first (the seed is the
    owner's key): the marked model is written to --marked-out and the fingerprint reads it."""
    check_output_path(out, "fingerprint")
    _check_fpr(fpr)
    source = load_model(model)
    seed = _seed(seed, "key" if method == "frequency" else "seed")
    params = parse_params(param)
    record = None
    maker = create_method(method, **params)
    if maker.needs_preparation(source):
        settings = {**({"host": host} if host is not None else {}), **parse_params(mark)}
        source = _prepare(maker, source, settings, seed, data, marked_out or _marked_path(out))
    if tune:
        params, record = tune_method(
            source, method, params=params, n=n, seed=seed, fpr=fpr, data=data, negatives=tune_negatives,
            epochs=epochs, device=device,
        )  # fmt: skip
        console.print(f"tuned {method}: " + ", ".join(f"{k}={v}" for k, v in record["chosen"].items()))
        maker = create_method(method, **params)
    owner_data = load_splits(data).owner if data else None
    fp = maker.generate(source, owner_data, n=n, seed=seed, device=device)
    if record is not None:
        fp.meta["tuning"] = record
    if references is not None:
        fp = calibrate(fp, reference_models(references, fp), reference_positives(references, fp),
                       origin=f"the reference set {references.name}")  # fmt: skip
    digest = fp.save(out)
    hit = fp.meta.get("target_hit_rate")
    console.print(
        f"wrote {out}: {maker.summary(fp)}" + (f", {hit:.0%} reached their target" if hit is not None else "")
    )
    if references is not None:
        _print_null(fp)
    else:
        console.print(
            "calibrate it before publishing the commitment: modelprint fingerprint calibrate FP --references DIR "
            "(or --reference N); until then verify can only say inconclusive"
        )
    record = {"fingerprint": str(out), "sha256": digest, "method": maker.name, "queries": len(fp), "seed": seed,
              "calibrated": "null" in fp.meta, "holds": maker.summary(fp)}  # fmt: skip
    _result(as_json, record, f"sha256 {digest}  {out}")


def _marked_path(out: Path) -> Path:
    return out.with_name(out.name.split(".")[0] + ".marked.safetensors")


def _prepare(maker: Any, source: Any, settings: dict[str, Any], key: int, data: str | None, target: Path) -> Any:
    """Prepare ``source`` for a method that changes it first (a white-box mark trained in on the
    owner's split, with ``key``) and write the prepared model to ``target``."""
    splits = load_splits(data or source.card.dataset)
    prepared = maker.prepare(source, splits.owner, key=key, test=splits.test, **settings)
    path = save_model(prepared, target)
    console.print(
        f"prepared {source.card.arch} for {maker.name} with key {key}: {path} (test accuracy "
        f"{prepared.card.accuracy:.4f}, before {accuracy(source, splits.test):.4f})"
    )
    return prepared


@fingerprint_app.command("show")
def fingerprint_show(
    fp_path: Path = typer.Argument(..., metavar="FP", help="Fingerprint file."),
    verbose: bool = typer.Option(False, "--verbose", help="Every metadata field, the null's numbers included."),
    as_json: bool = typer.Option(False, "--json", help="Every field as JSON."),
) -> None:
    """The commitment in full, then what the fingerprint holds and how it is calibrated."""

    fp = Fingerprint.load(fp_path)
    digest = sha256_file(fp_path)
    info = {**fp.meta, "queries": len(fp), "input_shape": list(fp.input_shape), "sha256": digest}
    info["holds"] = method_of(fp).summary(fp)
    if as_json:
        _out(info)
        return
    sys.stdout.write(f"{digest}  {fp_path}\n")  # the line to publish, as `fingerprint commit` prints it
    m = fp.meta
    params = ", ".join(f"{k}={v}" for k, v in (m.get("params") or {}).items())
    shape = "x".join(map(str, fp.input_shape))
    lines = [
        f"method   {m.get('method')} ({params})" if params else f"method   {m.get('method')}",
        f"holds    {info['holds']}",
        f"inputs   {shape} -> {m.get('num_classes')} classes, seed {m.get('seed')}",
        f"source   sha256 {m.get('source_sha256')}, {m.get('source_arch')} {m.get('source_arch_args') or ''}".rstrip(),
        f"data     {m.get('dataset') or '(not recorded)'}",
        f"made     {m.get('created')} by modelprint {m.get('modelprint_version')}"
        + (f" in {m['generation_seconds']:.1f} s" if m.get("generation_seconds") is not None else ""),
    ]
    for line in lines:
        sys.stdout.write(printable(line) + "\n")
    if "null" in m:
        _print_null(fp, stream=True)
    else:
        sys.stdout.write(
            "null     not calibrated: verify can only say inconclusive (modelprint fingerprint calibrate)\n"
        )
    if verbose:
        for k, v in sorted(info.items()):
            text = json.dumps(v) if isinstance(v, (dict, list)) else str(v)
            sys.stdout.write(printable(f"{k}: {text}") + "\n")


@fingerprint_app.command("calibrate")
def fingerprint_calibrate(
    fp_path: Path = typer.Argument(..., metavar="FP", help="Fingerprint file."),
    negatives: list[Path] = typer.Option(
        None, "--negatives", help="Independent model files or folders of them (several after one flag)."
    ),
    zoo: Path = typer.Option(None, "--zoo", help="A zoo folder: its negative models."),
    reference: str = typer.Option(
        None, "--reference", metavar="N", help="Train N independent reference models on the owner's data."
    ),
    positives: list[Path] = typer.Option(None, "--positives", help="The owner's derived copies (pruned, fine-tuned)."),
    data: str = typer.Option(None, "--data", help="Data set for --reference (default: the fingerprint's)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Split seed for --reference."),
    reference_arch: list[str] = typer.Option(
        None, "--reference-arch", help="NAME or NAME:K=V,... (repeat; default: the source's, cnn, resnet18, vgg11)."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per reference model (default: the source's)."),
    reference_dir: Path = typer.Option(None, "--reference-dir", help="Where to keep the reference models."),
    references: Path = typer.Option(None, "--references", help="A reference set (modelprint reference build)."),
    device: str = typer.Option("cpu", "--device"),
    out: Path = typer.Option(..., "--out", help="Calibrated fingerprint to write (may be FP itself)."),
    as_json: bool = json_option(),
) -> None:
    """Fit the statistic's null on independent models and store it in the fingerprint."""
    check_output_path(out, "fingerprint")
    if reference_dir is not None:
        check_output_path(reference_dir, "reference models", folder=True)

    reference_count = _reference_count(reference)
    fp = Fingerprint.load(fp_path)
    models, origin = [], []
    if negatives:
        files = _model_files(negatives, "--negatives")
        models += [load_model(p) for p in files]
        origin.append(f"{len(files)} files")
    if zoo is not None:
        manifest = ZooManifest.read(zoo)
        rows = [r for r in manifest.rows if r["role"] == "negative" and r["status"] == "done"]
        models += [load_model(manifest.path(r)) for r in rows]
        origin.append(f"{len(rows)} zoo negatives of {zoo.name}")
    if reference_count:
        folder = reference_dir or out.parent / (out.name.split(".")[0] + "-reference")
        archs = [parse_arch(a) for a in reference_arch] if reference_arch else None
        models += train_reference(
            fp.meta,
            reference_count,
            data=data,
            split_seed=split_seed,
            archs=archs,
            epochs=epochs,
            out_dir=folder,
            device=device,
            prepare=lambda model, s: method_of(fp).reference_model(fp, model, s),
        )
        origin.append(f"{reference_count} reference models in {folder}")
    owner_copies = [load_model(p) for p in positives or []]
    if references is not None:
        models += reference_models(references, fp)
        owner_copies += reference_positives(references, fp)
        origin.append(f"the reference set {references.name}")
    if not models:
        raise ParameterError(
            "give independent models: --negatives MODEL..., --zoo DIR, --references DIR or --reference N"
        )
    calibrated = calibrate(fp, models, owner_copies, origin=", ".join(origin))
    digest = calibrated.save(out)
    _print_null(calibrated)
    record = {"fingerprint": str(out), "sha256": digest, "null": null_description(calibrated)}
    _result(as_json, record, f"sha256 {digest}  {out}")


def _reference_count(text: str | None) -> int:
    """``--reference N``: how many models to train; a folder there is the other flag's."""
    if text is None:
        return 0
    if not text.isdigit():
        raise ParameterError(
            f"--reference takes how many reference models to train (e.g. --reference 10), got {text!r}; "
            "for models you have, give --references DIR (a reference set) or --negatives DIR (a folder of model files)"
        )
    return int(text)


def _model_files(paths: list[Path], flag: str) -> list[Path]:
    """Model files, a folder standing for the ``*.safetensors`` in it (as ``--reference`` leaves them)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.safetensors"))
            if not found:
                raise ParameterError(f"{flag}: the folder {path} holds no model files (*.safetensors)")
            files += found
        else:
            files.append(path)
    return files


def _print_null(calibrated: Fingerprint, stream: bool = False) -> None:
    """Where the independent models sit and what a match needs at FPR 1e-2 and 1e-3 (or why
    nothing can); on stdout with ``stream`` (a command's result), else on stderr."""
    d = null_description(calibrated)
    ref = d["reference_statistics"]
    reachable = [a for a in (1e-2, 1e-3) if d[f"needed_at_{a:g}"] is not None]
    say = (lambda text: sys.stdout.write(printable(text) + "\n")) if stream else console.print
    say(
        f"null ({d['family']}) from {d['n_models']} independent models: statistic "
        f"{ref['min']:.2f}-{ref['max']:.2f} (mean {ref['mean']:.2f})"
        + ("; a match needs " if reachable else "")
        + ", ".join(f"{d[f'needed_at_{a:g}']:.2f} at FPR {a:g}" for a in reachable)
        + (f"; the smallest p it can give is {d['smallest_p']:.2g}" if d.get("smallest_p") is not None else "")
    )
    for a in (1e-2, 1e-3):
        if a not in reachable:
            say(f"warning: {unreachable(d, a)}")


@reference_app.command("build")
def reference_build(
    model: Path = typer.Argument(..., help="The owner's source model (.safetensors)."),
    n: int = typer.Option(DEFAULT_REFERENCE_SIZE, "--n", help="How many reference models to train."),
    data: str = typer.Option(None, "--data", help="The owner's data set (default: the model card's)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Split seed of the owner's data."),
    reference_arch: list[str] = typer.Option(
        None, "--reference-arch", help="NAME or NAME:K=V,... (repeat; default: the source's, cnn, resnet18, vgg11)."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per reference model (default: the source's)."),
    positives: bool = typer.Option(
        True, "--positives/--no-positives", help="Also make the owner's 4 derived copies (pruned, fine-tuned)."
    ),
    students: bool = typer.Option(
        True, "--students/--no-students", help="Every third model a student distilled from an independent one."
    ),
    device: str = typer.Option("cpu", "--device"),
    out: Path = typer.Option(..., "--out", help="Folder for the reference set."),
    as_json: bool = json_option(),
) -> None:
    """Train independent reference models on the owner's data once; calibrate any fingerprint of
    this source with them (fingerprint calibrate / create --references DIR)."""
    check_output_path(out, "reference set", folder=True)
    archs = [parse_arch(a) for a in reference_arch] if reference_arch else None
    record = build_reference_set(
        load_model(model), n, out, data=data, split_seed=split_seed, archs=archs, epochs=epochs,
        positives=positives, students=students, device=device,
    )  # fmt: skip
    console.print(
        f"reference set of {len(record['models'])} independent models and {len(record['positives'])} derived "
        f"copies of the source on {record['dataset']} in {out}"
    )
    _result(as_json, {"reference_set": str(out / "reference.json"), "models": len(record["models"]),
                      "positives": len(record["positives"]), "dataset": record["dataset"]},
            str(out / "reference.json"))  # fmt: skip


# Independent models whose statistic averages this much sit where copies do.
SEPARATION_LIMIT = 0.9


def unreachable(description: dict[str, Any], fpr: float) -> str:
    """The plain sentence for an FPR the calibrated null cannot reach, with what would reach it."""
    models = description["n_models"]
    more = description.get(f"references_at_{fpr:g}")
    agreement = description["reference_statistics"]["mean"]
    if agreement >= SEPARATION_LIMIT:  # more references cannot help: the queries do not tell models apart
        fix = (
            f"the independent models score {agreement:.2f} on average, as a copy would: this method's queries do "
            "not separate models here, so use another method (`modelprint bench` on a zoo of yours shows which do)"
        )
    elif more:
        fix = f"about {more} reference models scoring like these would reach it (calibrate with --reference {more})"
    else:
        fix = "no number of reference models scoring like these would: they spread too widely for this FPR"
    return (
        f"nothing can be called a match at FPR {fpr:g} with {models} reference models: "
        f"even a perfect score is not rare enough; {fix}"
    )


@fingerprint_app.command("commit")
def fingerprint_commit(
    fp_path: Path = typer.Argument(..., metavar="FP", help="Fingerprint file."), as_json: bool = json_option()
) -> None:
    """Print the fingerprint's commitment (its sha256) in `sha256sum` format, after checking it loads."""

    Fingerprint.load(fp_path)
    digest = sha256_file(fp_path)
    _result(as_json, {"fingerprint": str(fp_path), "sha256": digest}, f"{digest}  {fp_path}")


@app.command()
def export(
    model: Path = typer.Argument(..., help="Model file (.safetensors)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (runs with onnxruntime) or torchscript."),
    out: Path = typer.Option(..., "--out", help="File to write (.onnx or .pt)."),
    as_json: bool = json_option(),
) -> None:
    """Export a model to ONNX or TorchScript (inputs in [0, 1], N x C x H x W; logits out; dynamic batch)."""
    check_output_path(out, "export")

    path = export_model(load_model(model), out, fmt)
    console.print(f"wrote {path} ({fmt}, {path.stat().st_size / 1e6:.2f} MB)")
    _result(as_json, {"export": str(path), "format": fmt, "bytes": path.stat().st_size, "sha256": sha256_file(path)})


@app.command()
def attack(
    name: str = typer.Argument(..., help="Attack name (modelprint list)."),
    model: Path = typer.Argument(..., help="Model to modify."),
    param: list[str] = typer.Option(None, "--param", help="K=V attack parameter (repeat; JSON values)."),
    data: str = typer.Option(None, "--data", help="Data set, for attacks that train (and the test accuracy)."),
    split: str = typer.Option(None, "--split", help="Split the attack trains on (default: tune or attacker)."),
    split_seed: int = typer.Option(0, "--split-seed"),
    seed: int = typer.Option(None, "--seed", help="Seed of the attack's random choices (default: drawn, recorded)."),
    device: str = typer.Option("cpu", "--device"),
    out: Path = typer.Option(..., "--out", help="Model file to write (.safetensors + .json)."),
    as_json: bool = json_option(),
) -> None:
    """Apply a model modification or extraction and write the derived model with its lineage."""
    check_output_path(out, "model")

    attack_obj = create_attack(name, **parse_params(param))
    victim = load_model(model)
    splits = load_splits(data, split_seed=split_seed) if data else None
    dataset = splits.get(split or ATTACKS.get(name).default_split) if splits else None
    seed = _seed(seed)
    # an attack that trains runs for minutes in one step: a live bar on a terminal, heartbeat lines in a log
    with progress_bar(1, f"attack {attack_obj.step_id()}", enabled=attack_obj.needs_data) as bar:
        child = attack_obj.apply(victim, dataset, seed=seed, device=device, test=splits.test if splits else None)
        bar.update(1)
    path = save_model(child, out)
    acc = f", test accuracy {child.card.accuracy:.4f}" if child.card.accuracy is not None else ""
    console.print(f"wrote {path} ({attack_obj.step_id()} of {victim.card.weights_sha256[:12]}…{acc})", markup=False)
    record = {"model": str(path), "sha256": child.card.weights_sha256, "step": attack_obj.step_id(), "seed": seed,
              "parent_sha256": victim.card.weights_sha256, "accuracy": child.card.accuracy}  # fmt: skip
    _result(as_json, record)


@app.command()
def verify(
    fp_paths: list[Path] = typer.Argument(
        ..., metavar="FP...", help="Fingerprint file; several of one source give one combined verdict (Holm)."
    ),
    suspect: str = typer.Argument(
        ..., help="Suspect: a model file (.safetensors), .onnx, TorchScript (.pt) or an http(s):// prediction API."
    ),
    suspect_type: str = typer.Option(
        "auto", "--suspect-type", help="auto (from the suffix or URL), model, onnx, torchscript or http."
    ),
    fpr: float = typer.Option(1e-3, "--fpr", help="False-positive rate alpha: 'match' needs p < alpha."),
    max_queries: int = typer.Option(
        None, "--max-queries", help="Query budget, spent sequentially: batches until decided, at most this many."
    ),
    batch: int = typer.Option(
        10, "--sequential-step", help="With --max-queries: queries sent between two looks at the evidence."
    ),
    commitment: list[str] = typer.Option(
        None, "--commitment", help="Expected sha256 of FP (the owner's published one); repeat, in FP order."
    ),
    threshold: float = typer.Option(None, "--threshold", help="Decide by statistic >= T instead of the p-value."),
    token: str = typer.Option(
        None, "--token", envvar="MODELPRINT_TOKEN", help="Bearer token for an HTTP suspect (or $MODELPRINT_TOKEN)."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="HTTP: seconds per request, in all."),
    retries: int = typer.Option(3, "--retries", help="HTTP: further tries after a timeout, 429 or 5xx."),
    batch_size: int = typer.Option(None, "--batch-size", help="HTTP: most queries per request."),
    outputs: str = typer.Option(
        "logits", "--outputs", help="ONNX / TorchScript: what the graph returns, logits or probabilities (softmax)."
    ),
    sandbox_memory_mb: int = typer.Option(
        4096, "--sandbox-memory-mb", help="ONNX / TorchScript: address space of the contained worker, in MB."
    ),
    sandbox_timeout: float = typer.Option(
        120.0, "--sandbox-timeout", help="ONNX / TorchScript: seconds the worker may take to load or answer a batch."
    ),
    containment: str = typer.Option(
        "required",
        "--containment",
        help="ONNX / TorchScript: 'required' refuses to run a file where the file-system sandbox (Landlock) is "
        "missing; 'best-effort' runs it with limits and deadlines only.",
    ),
    device: str = typer.Option("cpu", "--device", help="Model files: cpu or cuda, where the suspect runs."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON on stdout."),
) -> None:
    """Query a suspect with a fingerprint: statistic, p-value under the calibrated null, verdict.
    With several fingerprints of one source: each verified, one verdict by Holm's procedure."""

    if batch < 1:  # checked before any file is read, in the flag's own name
        raise ParameterError(f"--sequential-step must be at least 1, got {batch}")
    fps, digests = _committed_fingerprints(fp_paths, commitment)
    if len(fps) > 1 and threshold is not None:
        raise ParameterError("--threshold applies to one fingerprint: a combined verdict is decided by p-values")
    kind = guess_type(suspect) if suspect_type == "auto" else suspect_type
    http = {
        "token": token,
        "timeout": timeout,
        "retries": retries,
        "batch_size": batch_size,
        "max_queries": max_queries,
    }
    limits = SandboxLimits(memory_mb=sandbox_memory_mb, load_timeout=sandbox_timeout, call_timeout=sandbox_timeout,
                           containment=containment)  # fmt: skip
    adapter = open_suspect(suspect, kind, **_adapter_options(kind, http, limits, outputs, device))
    if len(fps) > 1:
        _verify_combined_cli(fps, digests, adapter, fpr=fpr, max_queries=max_queries, as_json=as_json)
    fp, digest = fps[0], digests[0]
    result = _verify(fp, adapter, fpr=fpr, max_queries=max_queries, batch=batch, threshold=threshold)
    if result.warning:
        console.print(f"[yellow]warning:[/] {result.warning}")
    if as_json:
        _out({**result.to_dict(), "fingerprint_sha256": digest})
    else:
        sys.stdout.write(format_verification(result) + "\n")
    raise typer.Exit(VERDICT_EXIT_CODES[result.verdict])


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
    return {"device": _device(device)} if kind == "model" else {}


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


def _verify_combined_cli(
    fps: list[Fingerprint], digests: list[str], adapter: Any, *, fpr: float, max_queries: int | None, as_json: bool
) -> None:
    combined = verify_combined(fps, adapter, fpr=fpr, max_queries=max_queries)
    for fam in combined.families:
        if fam.warning:
            console.print(f"[yellow]warning:[/] {fam.method}: {fam.warning}")
    if as_json:
        out = combined.to_dict()
        for fam, digest in zip(out["families"], digests):
            fam["fingerprint_sha256"] = digest
        _out(out)
    else:
        sys.stdout.write(format_combined(combined) + "\n")
    raise typer.Exit(VERDICT_EXIT_CODES[combined.verdict])


@app.command()
def serve(
    model: Path = typer.Argument(..., help="Model file (.safetensors) to answer for."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port"),
    labels_only: bool = typer.Option(False, "--labels-only", help="Answer top-1 labels only, like many paid APIs."),
    token: str = typer.Option(
        None, "--token", envvar="MODELPRINT_SERVE_TOKEN", help="Require this bearer token ($MODELPRINT_SERVE_TOKEN)."
    ),
    max_batch: int = typer.Option(256, "--max-batch", help="Most images per request."),
    max_request_mb: float = typer.Option(16.0, "--max-request-mb", help="Largest request body, in MB."),
    disclose_sha256: bool = typer.Option(False, "--disclose-sha256", help="Tell clients the weights' sha256."),
    max_concurrent: int = typer.Option(
        32, "--max-concurrent", help="Predictions in flight at once; more get 503 with Retry-After."
    ),
    read_timeout: float = typer.Option(
        10.0, "--read-timeout", help="Seconds a client has to send a whole request; slower or idle ones are dropped."
    ),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request to stderr."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda: where the model answers."),
) -> None:
    """Serve a model as an HTTP prediction API (OpenAPI at /openapi.json, docs at /docs)."""
    for name in ("fastapi", "uvicorn"):
        require(name, "modelprint serve", "serve")
    from .serve import serve as _serve

    if max_batch < 1 or max_concurrent < 1 or not 0 < port < 65536:
        raise ParameterError("--max-batch and --max-concurrent must be positive and --port in 1..65535")
    if not (math.isfinite(max_request_mb) and 0 < max_request_mb <= 4096):
        raise ParameterError(f"--max-request-mb must be a number of MB in (0, 4096], got {max_request_mb}")
    if not (math.isfinite(read_timeout) and 0 < read_timeout <= 3600):
        raise ParameterError(f"--read-timeout must be a number of seconds in (0, 3600], got {read_timeout}")
    m = load_model(model)
    mode = "labels only" if labels_only else "labels and probabilities"
    auth = ", bearer token required" if token else ""
    console.print(
        f"serving {model} ({m.card.arch}, {'x'.join(map(str, m.card.input_shape))} -> {m.card.num_classes} classes; "
        f"{mode}{auth}) at http://{host}:{port}/v1/predict  (docs: /docs, Ctrl-C stops)",
        markup=False,
    )
    _serve(
        m,
        host=host,
        port=port,
        labels_only=labels_only,
        token=token,
        max_batch=max_batch,
        max_request_bytes=int(max_request_mb * 1024**2),
        disclose_sha256=disclose_sha256,
        max_concurrent=max_concurrent,
        read_timeout=read_timeout,
        access_log=access_log,
        device=_device(device),
    )


@app.command()
def evaluate(
    model: Path = typer.Argument(None, help="Source model (or --zoo)."),
    zoo: Path = typer.Option(None, "--zoo", help="Zoo folder: its source, positives and negatives."),
    methods: str = typer.Option("c,rc,rcgm,ltrc", "--methods", help="Comma-separated method names."),
    positives: list[Path] = typer.Option(None, "--positives", help="Derived models (should match)."),
    negatives: list[Path] = typer.Option(None, "--negatives", help="Independent models (should not)."),
    prune_rates: str = typer.Option(
        None,
        "--prune-rates",
        help="Pruned copies of the source added as positives (default 0.3,0.5,0.7; none with --zoo).",
    ),
    prune_criterion: str = typer.Option("magnitude", "--prune-criterion", help="magnitude | random"),
    prune_repeats: int = typer.Option(5, "--prune-repeats", help="Copies per rate (random pruning)."),
    param: list[str] = typer.Option(None, "--param", help="METHOD.K=V method parameter (repeat)."),
    n: int = typer.Option(100, "--n"),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the fingerprints and pruned copies (default 0: reruns repeat)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The paper's protocol: robustness, transferability, uniqueness, AUC, F1 per method."""

    names = [m.strip() for m in methods.split(",") if m.strip()]
    method_params = _method_params(param)
    if (model is None) == (zoo is None):
        raise ParameterError("give either a source MODEL with --negatives, or --zoo DIR")
    if zoo is not None:
        manifest = ZooManifest.read(zoo)
        src = source_row(manifest)
        model = manifest.path(src)
        pos_rows = [r for r in manifest.rows if r["role"] == "positive" and r is not src]
        neg_rows = [r for r in manifest.rows if r["role"] == "negative"]
        positives, negatives = [manifest.path(r) for r in pos_rows], [manifest.path(r) for r in neg_rows]
        prune_rates = "" if prune_rates is None else prune_rates
    if not negatives:
        raise ParameterError("evaluate needs negatives: --negatives MODEL... or --zoo DIR")
    prune_rates = "0.3,0.5,0.7" if prune_rates is None else prune_rates
    try:
        rates = [float(r) for r in prune_rates.split(",") if r.strip()]
    except ValueError:
        raise ParameterError(f"--prune-rates must be comma-separated numbers, got {prune_rates!r}") from None
    results = _evaluate(
        load_model(model),
        names,
        [load_model(p) for p in positives or []],
        [load_model(p) for p in negatives],
        prune_rates=rates,
        prune_repeats=prune_repeats,
        prune_criterion=prune_criterion,
        n=n,
        seed=seed,
        method_params=method_params,
    )
    by_category = None
    if zoo is not None:
        by_category = rates_by_group(results, [r["category"] for r in pos_rows], [r["category"] for r in neg_rows])
    if as_json:
        _out({k: v.to_dict() | ({"by_category": by_category[k]} if by_category else {}) for k, v in results.items()})
        return
    print_table(results)
    if by_category:
        print_group_table(by_category, f"mean matching rate by zoo category ({zoo})")


def _method_params(items: list[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        method, sep, rest = item.partition(".")
        if not sep or "=" in method:
            raise ParameterError(f"--param here is METHOD.K=V, got {item!r}")
        # method names keep their hyphens (weight-cosine, sac-m); setting names take underscores
        out.setdefault(method, {}).update(parse_params([rest]))
    return out


@app.command()
def bench(
    zoo: Path = typer.Argument(..., help="Zoo folder (modelprint zoo build)."),
    methods: str = typer.Option("c,rc,rcgm,ltrc", "--methods", help="Comma-separated method names."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json, report.md, report.html, plots/."),
    param: list[str] = typer.Option(None, "--param", help="METHOD.K=V method parameter (repeat)."),
    n: int = typer.Option(100, "--n", help="Queries per fingerprint."),
    budgets: str = typer.Option("10,20,50,100", "--budgets", help="Query budgets for the sweep (plus the full set)."),
    fpr: float = typer.Option(0.01, "--fpr", help="False-positive rate for the TPR-at-FPR metric."),
    ablation: bool = typer.Option(
        False, "--ablation", help="Also run every combination of each method's tricks (naturalfinger: AL, IT, DL)."
    ),
    stealth: bool = typer.Option(
        False, "--stealth", help="Also measure each method's detection rate (detectors trained on the zoo's data)."
    ),
    combine: str = typer.Option(
        None, "--combine", help="Also the combined verdict (Holm) over these methods, e.g. c,ltrc,sac-m."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every fingerprint and of the negatives' split (recorded)."),
    workers: int = typer.Option(0, "--workers", help="Worker processes for querying (0 = in process, fastest on CPU)."),
    backend: str = typer.Option("local", "--backend", help="local | ray"),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = json_option(),
) -> None:
    """Benchmark methods on every suspect of a zoo; writes results.json and the report."""
    check_output_path(out, "benchmark", folder=True)
    _check_fpr(fpr)

    try:
        budget_list = tuple(int(b) for b in budgets.split(",") if b.strip())
    except ValueError:
        raise ParameterError(f"--budgets must be comma-separated integers, got {budgets!r}") from None
    names = [m.strip() for m in methods.split(",") if m.strip()]
    variants: dict[str, Any] = {}
    if ablation:
        for m in list(names):
            extra = {k: v for k, v in ablation_variants(m).items() if k != m}
            variants.update(extra)
            names += list(extra)
        if not variants:
            raise ParameterError("--ablation: none of --methods has tricks to remove (naturalfinger has)")
    run_bench(
        zoo,
        names,
        out,
        n=n,
        seed=seed,
        method_params=_method_params(param),
        budgets=budget_list,
        fpr=fpr,
        variants=variants,
        stealth=stealth,
        workers=workers,
        backend=backend,
        device=device,
        combine=[m.strip() for m in combine.split(",") if m.strip()] if combine else None,
    )
    md, html_path = write_report(out)
    results = json.loads((out / "results.json").read_text())
    if not as_json:  # the leaderboard where the user is looking, then where the rest is
        title, header, rows = leaderboard(results)
        table = Table(title=title, title_justify="left")
        for column in header:
            table.add_column(column)
        for row in rows:
            table.add_row(*map(escape, row))
        Console().print(table)
    console.print(f"report: {html_path} (and {md.name})")
    aruc = {m: r["metrics"]["aruc"] for m, r in results["methods"].items()}
    _result(as_json, {"report": str(html_path), "results": str(out / "results.json"), "aruc": aruc}, str(html_path))


@app.command("null-check")
def null_check(
    null_zoo: Path = typer.Argument(..., help="A zoo of independent models only (e.g. zoo build null-fmnist)."),
    bench_dir: Path = typer.Option(..., "--bench", help="A finished bench folder: its fingerprints and positives."),
    out: Path = typer.Option(..., "--out", help="Folder for null_check.json, null_check.md and the plots."),
    sizes: str = typer.Option("5,10,20,40", "--sizes", help="Calibration sizes N (comma-separated)."),
    repeats: int = typer.Option(20, "--repeats", help="Random calibration draws per size."),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration draws (default 0: reruns repeat)."),
    draws: str = typer.Option(
        "references",
        "--draws",
        help="references: calibration sets shaped like modelprint's reference sets (a third of the source's "
        "architecture, all on the owner's half); uniform: any N null models.",
    ),  # fmt: skip
    as_json: bool = json_option(),
) -> None:
    """Check each method's null on independent models it was not calibrated on: observed vs nominal FPR."""
    check_output_path(out, "null check", folder=True)
    try:
        size_list = tuple(int(s) for s in sizes.split(",") if s.strip())
    except ValueError:
        raise ParameterError(f"--sizes must be comma-separated integers, got {sizes!r}") from None
    record = run_null_check(null_zoo, bench_dir, out, sizes=size_list, repeats=repeats, seed=seed, draws=draws)
    atomic_write_text(out / "null_check.md", "# Null check\n\n" + null_check_tables(record))
    plots = plot_null_check(record, out)
    console.print(f"wrote {out / 'null_check.md'}, {', '.join(p.name for p in plots)}")
    _result(as_json, record, str(out / "null_check.json"))


@app.command()
def stealth(
    inputs: list[Path] = typer.Argument(..., metavar="FP_OR_BENCH...", help="Fingerprint files or bench folders."),
    model: Path = typer.Option(..., "--model", help="The model the attacker holds (FGSM examples are made on it)."),
    data: str = typer.Option(None, "--data", help="The attacker's data set (default: the model card's)."),
    split_seed: int = typer.Option(0, "--split-seed"),
    clean: int = typer.Option(5000, "--clean", help="Clean images from the attacker's split."),
    seeds: int = typer.Option(3, "--seeds", help="Detectors trained with seeds 0..N-1; the rate is their mean."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Detection rate of fingerprint queries under a detector trained on clean vs noise/FGSM images."""

    files: dict[str, Path] = {}
    for p in inputs:
        found = sorted((p / "fingerprints").glob("*.fp.safetensors")) if p.is_dir() else [p]
        if p.is_dir() and not found:
            raise ParameterError(f"{p} has no fingerprints/*.fp.safetensors (a `modelprint bench` folder has)")
        files.update({f.name.removesuffix(".fp.safetensors"): f for f in found})
    holder = load_model(model)
    splits = load_splits(data or holder.card.dataset, split_seed=split_seed)
    queries = {name: Fingerprint.load(f).x for name, f in files.items()}
    config = StealthConfig(clean=clean, seeds=tuple(range(seeds)))
    result = detection_rates(queries, splits.attacker, holder=holder, test=splits.test, config=config)
    if as_json:
        _out(result)
        return
    for name, r in result["methods"].items():
        sys.stdout.write(f"{name}\t{r['mean']:.3f}\t(per seed {', '.join(f'{v:.3f}' for v in r['per_seed'])})\n")
    alarm = result["false_alarm"]
    console.print(f"false alarms on clean test images: {alarm['mean']:.3f}" if alarm else "no test images")


@app.command()
def report(
    root: Path = typer.Argument(..., metavar="DIR", help="Benchmark folder with results.json."),
    as_json: bool = json_option(),
) -> None:
    """Regenerate report.md, report.html, the CSV tables and the plots from results.json."""

    md, html_path = write_report(root)
    _result(as_json, {"report": str(html_path), "markdown": str(md)}, [str(html_path), str(md)])


@zoo_app.command("build")
def zoo_build(
    spec: str = typer.Argument(..., help=f"Spec file (.toml) or a built-in name: {', '.join(builtin_specs())}."),
    out: Path = typer.Option(..., "--out", help="Zoo folder (created; an unfinished build there is resumed)."),
    workers: int = typer.Option(None, "--workers", help="Parallel models (default: CPU count; 0 = in process)."),
    backend: str = typer.Option("local", "--backend", help="local (process pool) | ray"),
    data: str = typer.Option(None, "--data", help="Override the spec's data set, e.g. cifar10:/data/cifar-10."),
    threads: int = typer.Option(
        1, "--threads", help="CPU threads per model (1 keeps files identical across --workers)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, or cuda (with Ray: each task asks for GPUs)."),
    gpus_per_task: float = typer.Option(
        1.0, "--gpus-per-task", help="With --device cuda and Ray: GPUs per model (0.25 packs 4 small models a GPU)."
    ),
    as_json: bool = json_option(),
) -> None:
    """Build every model of a zoo spec; killed builds resume where they stopped."""

    if not 0 < gpus_per_task <= 64:
        raise ParameterError(f"--gpus-per-task must be in (0, 64], got {gpus_per_task}")
    try:
        build_zoo(
            spec,
            out,
            workers=workers,
            backend=backend,
            device=device,
            data=data,
            threads=threads,
            gpus_per_task=gpus_per_task,
        )
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished models are kept; run the same command to resume\n")
        raise typer.Exit(130) from None
    rows = ZooManifest.read(out).rows
    done = sum(r["status"] == "done" for r in rows)
    _result(as_json, {"manifest": str(out / "manifest.jsonl"), "models": len(rows), "done": done},
            str(out / "manifest.jsonl"))  # fmt: skip


@zoo_app.command("ls")
def zoo_ls(zoo: Path = typer.Argument(..., help="Zoo folder."), as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a zoo's manifest as a table (or JSON lines)."""

    manifest = ZooManifest.read(zoo)
    if as_json:
        for row in manifest.rows:
            sys.stdout.write(json.dumps(row, sort_keys=True) + "\n")
        return
    table = Table(title=f"{zoo} ({len(manifest.rows)} models)")
    for col in ("id", "role", "category", "arch", "accuracy", "status"):
        table.add_column(col, justify="right" if col == "accuracy" else "left", overflow="fold")
    for r in manifest.rows:
        acc = "" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        table.add_row(escape(r["id"]), r["role"], r["category"], r["arch"], acc, r["status"])

    out = Console(width=max(120, Console().width))
    out.print(table)
    counts = Counter((r["role"], r["category"]) for r in manifest.rows)
    out.print(", ".join(f"{role} {cat}: {n}" for (role, cat), n in sorted(counts.items())))


@zoo_app.command("verify")
def zoo_verify(zoo: Path = typer.Argument(..., help="Zoo folder."), as_json: bool = json_option()) -> None:
    """Check every model file of a zoo against the manifest's sha256."""

    bad = verify_zoo(zoo)
    total = len(ZooManifest.read(zoo).rows)
    if as_json:
        _out({"models": total, "failed": [{"file": row["file"], "why": why} for row, why in bad]})
    else:
        for row, why in bad:
            sys.stdout.write(f"FAIL {row['file']}: {why}\n")
    if bad:
        raise ZooError(f"{len(bad)} of {total} model files fail verification (first: {bad[0][0]['file']})")
    if not as_json:
        sys.stdout.write(f"ok: {total} model files match the manifest\n")


@app.command("list")
def list_registered(
    hosts: str = typer.Option(
        None, "--hosts", help="Show every layer of this architecture that can host the white-box frequency module."
    ),  # fmt: skip
    input_shape: str = typer.Option("3,32,32", "--input-shape", help="C,H,W for --hosts."),
    k: int = typer.Option(8, "--k", help="Module size K for --hosts (the grid side must be a multiple of K)."),
    as_json: bool = json_option(),
) -> None:
    """List registered architectures, fingerprint methods, attacks and built-in zoo specs."""
    if hosts is None and as_json:
        _out({"architectures": ARCHITECTURES.names(), "methods": METHODS.names(), "attacks": ATTACKS.names(),
              "zoo_specs": builtin_specs()})  # fmt: skip
        return
    if hosts is None:
        for title, reg in (("architectures", ARCHITECTURES), ("methods", METHODS), ("attacks", ATTACKS)):
            sys.stdout.write(f"{title}: {', '.join(reg.names())}\n")
        sys.stdout.write(f"zoo specs: {', '.join(builtin_specs())}\n")
        sys.stdout.write("frequency-module hosts: modelprint list --hosts ARCH [--input-shape 3,32,32] [--k 8]\n")
        return
    shape = _shape(input_shape)
    net = create_model(hosts, num_classes=10, input_shape=shape).net  # type: ignore[arg-type]
    layers = {
        layer: channels
        for name in attachment_names()
        for layer, channels in attachment_hosts(name, net, shape, k=k).items()  # type: ignore[arg-type]
    }
    if as_json:
        _out({"hosts": {name: list(channels) for name, channels in layers.items()}})
        return
    if not layers:
        sys.stdout.write(f"{hosts} at {input_shape} has no layer that can host a K={k} module\n")
    for name, (c_in, c_out) in layers.items():
        sys.stdout.write(f"{name}\t{c_in} -> {c_out} channels\n")


# Options that take several values after one flag (`--positives A B C`), as the manual writes them.
_MULTI_VALUE = ("--positives", "--negatives", "--weights")


def _expand_multi_value(argv: list[str]) -> list[str]:
    out, current = [], None
    for arg in argv:
        if arg in _MULTI_VALUE:
            current = arg
            continue
        if current and not arg.startswith("-"):
            out += [current, arg]
            continue
        if current:
            current = None
        out.append(arg)
    return out


# What a value looks like in help, by the option's type (instead of typer's "<list[Path]>").
_METAVARS = {"int": "N", "float": "X", "Path": "PATH", "str": "TEXT", "integer": "N", "path": "PATH", "text": "TEXT"}


def _no_type(param: Any, ctx: Any) -> str | None:
    return param.metavar if isinstance(param, TyperOption) and not (param.is_flag or param.count) else None


def _readable_help(command: Any) -> Any:
    """Help without Python types: arguments by their name, options by a short placeholder."""
    TyperArgument.display_type_rich = _no_type  # type: ignore[method-assign]
    for param in command.params:
        if isinstance(param, TyperArgument):
            name = param.metavar or param.name.upper().removesuffix("_PATH").removesuffix("_PATHS")
            param.metavar = name
            usage = name if name.endswith("...") or param.nargs == 1 else name + "..."
            usage = usage if param.required else f"[{usage}]"
            param._usage_display_name = lambda shown=usage: shown  # type: ignore[attr-defined]
        elif isinstance(param, TyperOption):
            if param.is_flag or param.count:
                param.display_type_rich = lambda ctx, p=param: _no_type(p, ctx)  # type: ignore[method-assign]
            elif param.metavar is None:
                # typer >= 0.2x names the annotation; older releases only click's type name
                bare = param.bare_type() if hasattr(param, "bare_type") else getattr(param.type, "name", "")
                bare = bare.removeprefix("list[").removesuffix("]")
                param.metavar = _METAVARS.get(bare, _METAVARS.get(bare.lower(), "VALUE"))
    for sub in getattr(command, "commands", {}).values():
        _readable_help(sub)
    # click makes the help option when help is asked for: a flag, shown without a type
    make_help = command.get_help_option
    command.get_help_option = lambda ctx: _flag(make_help(ctx))  # type: ignore[method-assign]
    return command


def _flag(option: Any) -> Any:
    if option is not None:
        option.display_type_rich = lambda ctx: None
    return option


# Global options a user may type after the command too (`modelprint verify ... --trust-arch X`):
# the error messages that name them do not say where they go. Each takes a value or none.
_GLOBAL_OPTIONS = {"--trust-arch": True, "--quiet": False, "-q": False}


def _hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the global options moved before the command, wherever they were typed."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS and rest:  # after the command: bring it forward
            takes_value = _GLOBAL_OPTIONS[name] and "=" not in arg
            front += args[i : i + 1 + takes_value]
            i += 1 + takes_value
            continue
        rest.append(arg)
        i += 1
    return front + rest


def _click_errors() -> tuple[tuple[type[Exception], ...], tuple[type[BaseException], ...]]:
    """Usage errors and aborts of the parser typer uses: newer releases carry their own copy of
    click (and do not install click itself), older ones use click."""
    usage: list[type[Exception]] = []
    aborts: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import UsageError
        from typer.exceptions import Abort
    except ImportError:
        pass
    else:
        usage.append(UsageError)
        aborts.append(Abort)
    try:
        import click
    except ImportError:
        pass
    else:
        usage.append(click.UsageError)
        aborts.append(click.Abort)
    return tuple(usage), tuple(aborts)


_USAGE_ERRORS, _ABORTS = _click_errors()


def main(argv: list[str] | None = None) -> None:
    args = _hoist_global_options(_expand_multi_value(list(sys.argv[1:] if argv is None else argv)))
    try:
        command = _readable_help(typer.main.get_command(app))
        code = command.main(args=args, prog_name="modelprint", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except _USAGE_ERRORS as e:  # one line, as every other error (click draws a box of five)
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare command group: its help, as click shows it
            command.main(args=args, prog_name="modelprint")
        path = e.ctx.command_path if e.ctx is not None else "modelprint"
        sys.stderr.write(f"error: {printable(e.format_message())} (see `{path} -h`)\n")
        sys.exit(2)
    except _ABORTS:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except ModelprintError as e:
        sys.stderr.write(f"error: {printable(str(e))}\n")
        sys.exit(2)
    except Exception:  # a bug: say so, with the traceback, and never exit with a verdict's code
        traceback.print_exc()
        sys.stderr.write("internal error: this is a bug in modelprint; please report it with the traceback above\n")
        sys.exit(INTERNAL_ERROR)


if __name__ == "__main__":
    main()
