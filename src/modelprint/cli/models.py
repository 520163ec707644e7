"""Commands that make model files: ``train``, ``model import``, ``attack``, ``export`` and the
GAN a generative method draws its queries from (``gan train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._io import check_output_path, sha256_file
from ..attacks import ATTACKS, create_attack
from ..data import DatasetSplits, load_splits
from ..errors import ParameterError
from ..export import export_model
from ..fingerprints import gan as gan_tools
from ..models import import_model, is_import_path, load_model, save_model
from ..models import trust_arch as trust_arch_paths
from ..models.sanity import chance_problem
from ..progress import console, progress_bar
from ..train import TrainConfig, accuracy, train_new, training_settings
from .common import (
    AsJson,
    Device,
    SplitSeed,
    TrainSubset,
    app,
    gan_app,
    model_app,
    parse_floats,
    parse_params,
    parse_shape,
    result,
    seed_or_drawn,
)

ModelOut = Annotated[Path, typer.Option("--out", help="Model file to write (.safetensors + .json).")]
DATA_SPECS = "digits[:16|:32], fashion-mnist[:32], mnist:PATH, cifar10:PATH, folder:PATH, npz:PATH"

ImportArch = Annotated[
    str,
    typer.Option(
        "--arch", metavar="MODULE:ATTR", help="Your architecture (e.g. mynets:make_net) or a registered name."
    ),
]
WeightsFiles = Annotated[
    list[Path],
    typer.Option(
        "--weights", help="State dicts: .safetensors, or .pt/.pth (read with weights_only); several after one flag."
    ),
]
InputShape = Annotated[str, typer.Option("--input-shape", metavar="C,H,W", help="Input shape, e.g. 3,32,32.")]
ArchArgs = Annotated[list[str], typer.Option("--arch-arg", metavar="K=V", help="Architecture argument (repeat).")]
NumClasses = Annotated[int, typer.Option("--num-classes", help="Default: read from the network's output.")]
Mean = Annotated[
    str, typer.Option("--mean", metavar="M[,M,M]", help="Per-channel mean the net was trained with (default 0).")
]
Std = Annotated[
    str, typer.Option("--std", metavar="S[,S,S]", help="Per-channel std (default 1: the net sees [0, 1] images).")
]
ImportData = Annotated[
    str, typer.Option("--data", help="The owner's data set, recorded in the card (and test accuracy measured).")
]
ImportOut = Annotated[
    Path,
    typer.Option(
        "--out", help="Model file to write (one --weights); default: NAME.safetensors beside each weights file."
    ),
]
AcceptLowAccuracy = Annotated[
    bool,
    typer.Option(
        "--accept-low-accuracy", help="Write a model that answers --data at about chance (refused otherwise)."
    ),
]
AttackData = Annotated[str, typer.Option("--data", help="Data set, for attacks that train (and the test accuracy).")]
AttackSplit = Annotated[str, typer.Option("--split", help="Split the attack trains on (default: tune or attacker).")]
GanOut = Annotated[Path, typer.Option("--out", help="GAN file (.safetensors; card .json and samples .png beside it).")]
Conditional = Annotated[
    bool,
    typer.Option("--conditional/--unconditional", help="Class-conditional (conditional batch norm, projection D)."),
]


@app.command()
def train(
    arch: Annotated[str, typer.Option("--arch", help="Architecture name (modelprint list) or your MODULE:ATTR.")],
    out: ModelOut,
    data: Annotated[str, typer.Option("--data", help=DATA_SPECS)] = "digits",
    arch_arg: Annotated[list[str], typer.Option("--arch-arg", help="K=V architecture argument (repeat).")] = None,
    split: Annotated[str, typer.Option("--split", help="owner | attacker | all")] = "owner",
    epochs: Annotated[int, typer.Option("--epochs", help="Scaled by the architecture's epoch_factor.")] = 30,
    lr: Annotated[float, typer.Option("--lr", help="Default: the architecture's own (0.05 for SGD).")] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="sgd | adam (default: the architecture's)")] = None,
    schedule: Annotated[str, typer.Option("--schedule", help="cosine | step | constant")] = "cosine",
    augment: Annotated[str, typer.Option("--augment", help="none | crop | flip | crop+flip")] = "crop",
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    split_seed: SplitSeed = 0,
    train_subset: TrainSubset = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the weights and batches (default: drawn).")] = None,
    device: Device = "cpu",
    as_json: AsJson = False,
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
        arch,
        splits.get(split),
        cfg,
        seed=seed_or_drawn(seed),
        test=splits.test,
        device=device,
        **parse_params(arch_arg),
    )
    if train_subset:
        model.card.training["train_subset"] = train_subset
    path = save_model(model, out)
    console.print(f"wrote {path} (test accuracy {model.card.accuracy:.4f}, sha256 {model.card.weights_sha256[:16]}…)")
    card = model.card
    record = {"model": str(path), "sha256": card.weights_sha256, "accuracy": card.accuracy}
    result(as_json, {**record, "seed": card.seed, "arch": card.arch})


@model_app.command("import")
def model_import(
    arch: ImportArch,
    weights: WeightsFiles,
    input_shape: InputShape,
    arch_arg: ArchArgs = None,
    num_classes: NumClasses = None,
    mean: Mean = None,
    std: Std = None,
    data: ImportData = None,
    out: ImportOut = None,
    accept_low_accuracy: AcceptLowAccuracy = False,
    as_json: AsJson = False,
) -> None:
    """Turn your nn.Module's trained weights into model files every command reads."""
    if out is not None and len(weights) > 1:
        raise ParameterError("--out names one model file: with several --weights, each is written beside its weights")
    targets = [out] if out is not None else [w.with_suffix("") for w in weights]
    for target in targets:
        check_output_path(target, "model")
    if is_import_path(arch):
        trust_arch_paths(arch)
    shape = parse_shape(input_shape)
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
    settings = {
        "input_shape": shape,
        "num_classes": num_classes,
        "arch_args": parse_params(arch_arg),
        "mean": parse_floats(mean, shape[0], "--mean"),
        "std": parse_floats(std, shape[0], "--std"),
        "dataset": data or "",
    }
    records = [
        _import_one(arch, source, target, settings, splits, accept_low_accuracy)
        for source, target in zip(weights, targets)
    ]
    result(as_json, {"models": records})


def _import_one(
    arch: str, source: Path, target: Path, settings: dict, splits: DatasetSplits | None, low_ok: bool
) -> dict:
    """Import one weights file to ``target``, its accuracy on ``splits`` checked against chance."""
    model = import_model(arch, source, **settings)
    if splits is not None:
        model.card.classes = splits.test.classes
        model.card.accuracy = accuracy(model, splits.test)
        problem = chance_problem(model.card.accuracy, model.card.num_classes)
        if problem and not low_ok:
            raise ParameterError(f"{source}: {problem}; give --mean/--std (or --accept-low-accuracy if it is real)")
    path = save_model(model, target)
    card = model.card
    acc = f", test accuracy {card.accuracy:.4f}" if card.accuracy is not None else ""
    shape = "x".join(map(str, settings["input_shape"]))
    summary = f"{card.arch}, {shape} -> {card.num_classes} classes{acc}, sha256 {card.weights_sha256[:16]}…"
    console.print(f"wrote {path} ({summary})", markup=False)
    return {
        "model": str(path),
        "sha256": card.weights_sha256,
        "accuracy": card.accuracy,
        "arch": card.arch,
        "num_classes": card.num_classes,
    }


@app.command()
def attack(
    name: Annotated[str, typer.Argument(help="Attack name (modelprint list).")],
    model: Annotated[Path, typer.Argument(help="Model to modify.")],
    out: ModelOut,
    param: Annotated[list[str], typer.Option("--param", help="K=V attack parameter (repeat; JSON values).")] = None,
    data: AttackData = None,
    split: AttackSplit = None,
    split_seed: SplitSeed = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the attack's random choices (default: drawn).")] = None,
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Apply a model modification or extraction and write the derived model with its lineage."""
    check_output_path(out, "model")
    attack_obj = create_attack(name, **parse_params(param))
    victim = load_model(model)
    splits = load_splits(data, split_seed=split_seed) if data else None
    dataset = splits.get(split or ATTACKS.get(name).default_split) if splits else None
    seed = seed_or_drawn(seed)
    # an attack that trains runs for minutes in one step: a live bar on a terminal, heartbeat lines in a log
    with progress_bar(1, f"attack {attack_obj.step_id()}", enabled=attack_obj.needs_data) as bar:
        child = attack_obj.apply(victim, dataset, seed=seed, device=device, test=splits.test if splits else None)
        bar.update(1)
    path = save_model(child, out)
    acc = f", test accuracy {child.card.accuracy:.4f}" if child.card.accuracy is not None else ""
    console.print(f"wrote {path} ({attack_obj.step_id()} of {victim.card.weights_sha256[:12]}…{acc})", markup=False)
    record = {"model": str(path), "sha256": child.card.weights_sha256, "step": attack_obj.step_id(), "seed": seed}
    result(as_json, {**record, "parent_sha256": victim.card.weights_sha256, "accuracy": child.card.accuracy})


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Model file (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", help="File to write (.onnx or .pt).")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (runs with onnxruntime) or torchscript.")] = "onnx",
    as_json: AsJson = False,
) -> None:
    """Export a model to ONNX or TorchScript (inputs in [0, 1], N x C x H x W; logits out; dynamic batch)."""
    check_output_path(out, "export")
    path = export_model(load_model(model), out, fmt)
    console.print(f"wrote {path} ({fmt}, {path.stat().st_size / 1e6:.2f} MB)")
    result(as_json, {"export": str(path), "format": fmt, "bytes": path.stat().st_size, "sha256": sha256_file(path)})


@gan_app.command("train")
def gan_train(
    out: GanOut,
    data: Annotated[str, typer.Option("--data", help="The owner's data set, as for `modelprint train`.")] = "digits",
    split: Annotated[str, typer.Option("--split", help="owner (the GAN sees only the owner's data) | all")] = "owner",
    split_seed: SplitSeed = 0,
    train_subset: TrainSubset = 0,
    steps: Annotated[int, typer.Option("--steps", help="Generator and discriminator updates.")] = 3000,
    width: Annotated[int, typer.Option("--width", help="Channels at the lowest resolution.")] = 64,
    z_dim: Annotated[int, typer.Option("--z-dim")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    conditional: Conditional = True,
    seed: Annotated[int, typer.Option("--seed", help="Default: drawn, and recorded in the GAN's card.")] = None,
    device: Device = "cpu",
    as_json: AsJson = False,
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
    gan = gan_tools.train_gan(images, config, seed=seed_or_drawn(seed), device=device, checkpoint=ckpt)
    gan.card.update(split_seed=split_seed, train_subset=train_subset)
    path = gan_tools.save_gan(gan, weights)
    ckpt.unlink(missing_ok=True)
    last = gan.card["history"][-1] if gan.card["history"] else {}
    console.print(
        f"wrote {path}, {path.with_suffix('.json').name} and {path.with_suffix('.png').name} "
        f"({gan.card['train_seconds']:.0f} s; last losses D {last.get('d_loss')}, G {last.get('g_loss')})"
    )
    record = {"gan": str(path), "seconds": gan.card["train_seconds"], "seed": gan.card.get("seed"), "last": last}
    result(as_json, record)
