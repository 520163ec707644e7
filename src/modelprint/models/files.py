"""The model wrapper and the model-file format (safetensors weights + JSON card)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from .._io import atomic_write, atomic_write_text, check_readable, nesting_depth
from ..errors import ModelFileError, ParameterError
from .architectures import ARCHITECTURES, create_arch
from .custom import import_path_of, is_import_path, is_trusted, trust_arch, untrusted_folder, untrusted_message

CARD_SCHEMA_VERSION = 1


@dataclass
class ModelCard:
    """Everything needed to rebuild a model and to know where it came from."""

    arch: str
    arch_args: dict[str, Any]
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    dataset: str = ""
    split: str = ""
    accuracy: float | None = None
    # Wall-clock seconds it took to make this model (training, or every attack step of a
    # derived one), on the threads noted in ``training`` / the zoo's build.json.
    train_seconds: float | None = None
    seed: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    # Oldest first: each step is {"parent_sha256": ..., "recipe": {"attack": name, ...}}.
    lineage: list[dict[str, Any]] = field(default_factory=list)
    weights_sha256: str = ""
    schema_version: int = CARD_SCHEMA_VERSION

    def to_json(self) -> str:
        d = asdict(self)
        d["input_shape"], d["mean"], d["std"] = list(self.input_shape), list(self.mean), list(self.std)
        d["classes"] = list(self.classes)
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "card") -> ModelCard:
        if not isinstance(d, dict):
            raise ModelFileError(f"{source}: expected a JSON object")
        version = d.get("schema_version")
        if version != CARD_SCHEMA_VERSION:
            raise ModelFileError(
                f"{source}: card schema_version {version!r}, this modelprint reads "
                f"{CARD_SCHEMA_VERSION}; re-save it with a matching version"
            )
        required = ("arch", "arch_args", "input_shape", "num_classes", "mean", "std")
        missing = [k for k in required if k not in d]
        if missing:
            raise ModelFileError(f"{source}: card lacks {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__}
        try:
            kw = {k: v for k, v in d.items() if k in known}
            kw["input_shape"] = tuple(int(v) for v in d["input_shape"])
            kw["mean"], kw["std"] = tuple(map(float, d["mean"])), tuple(map(float, d["std"]))
            kw["classes"] = tuple(map(str, d.get("classes", ())))
            card = cls(**kw)
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{source}: malformed card ({e})") from None
        if len(card.input_shape) != 3 or len(card.mean) != card.input_shape[0] or len(card.std) != card.input_shape[0]:
            raise ModelFileError(f"{source}: input_shape must be (C,H,W) with C means and stds")
        return card


def logits_of(out: Any) -> torch.Tensor:
    """The logits in what a network returns: a tensor as it is; from a tuple, list or named
    tuple (``(logits, features)``) its first item; from a dict (or a ``ModelOutput``) its
    ``"logits"`` entry, else its first tensor. Anything else is one error saying what came back."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        first = next((v for v in out.values() if isinstance(v, torch.Tensor)), None)
        if first is not None:
            return first
    raise ParameterError(
        f"the network returns {type(out).__name__}; modelprint needs logits (N, classes): a tensor, a tuple "
        "whose first item is the logits, or a dict with 'logits'"
    )


class ModelprintModel(nn.Module):
    """A classifier on [0, 1] inputs: ``net((x - mean) / std)``, with its card attached."""

    def __init__(self, net: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.net = net
        c = card.input_shape[0]
        self.register_buffer("mean", torch.tensor(card.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(card.std, dtype=torch.float32).view(1, c, 1, 1))
        self.card = card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.net((x - self.mean) / self.std))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted labels (N,) for inputs (N, C, H, W) in [0, 1], in eval mode."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [self(x[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)

    def derive(self, recipe: dict[str, Any]) -> ModelprintModel:
        """A deep copy whose card records this model as parent and ``recipe`` as the step."""
        child = copy.deepcopy(self)
        child.card = copy.deepcopy(self.card)
        child.card.lineage.append({"parent_sha256": weights_digest(self), "recipe": recipe})
        child.card.weights_sha256 = ""
        child.card.accuracy = None
        child.card.train_seconds = None
        return child


def create_model(
    arch: str,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    seed: int = 0,
    **arch_args: Any,
) -> ModelprintModel:
    """A freshly initialised model; ``seed`` fixes the initial weights."""
    c = input_shape[0]
    card = ModelCard(
        arch=arch,
        arch_args=dict(arch_args),
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        mean=tuple(mean or (0.5,) * c),
        std=tuple(std or (0.25,) * c),
        seed=seed,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_arch(arch, num_classes=num_classes, input_shape=input_shape, **arch_args)
    return ModelprintModel(net, card)


def wrap_model(
    net: nn.Module,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int | None = None,
    arch: str | Callable[..., nn.Module] | None = None,
    arch_args: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    classes: Sequence[str] = (),
    dataset: str = "",
) -> ModelprintModel:
    """Your own ``nn.Module`` as a modelprint model (its weights are shared, not copied).

    ``net`` is given ``(x - mean) / std`` of images ``x`` (N, *input_shape) in [0, 1] and returns
    logits (N, num_classes); mean 0 and std 1 (the default) hand it the images as they are.
    ``arch`` says how to rebuild it from a file: an import path ``MODULE:ATTRIBUTE`` or the class
    or function itself, called with ``arch_args``; by default the net's own class. Naming it
    here trusts it (:func:`~modelprint.models.custom.trust_arch`). ``num_classes`` is read from
    one forward pass when not given.

    Example::

        model = wrap_model(MyNet(), input_shape=(1, 28, 28))
        save_model(model, "owner")       # owner.safetensors + owner.json, arch "mynets:MyNet"
    """
    if isinstance(net, ModelprintModel):
        return net
    if not isinstance(net, nn.Module):
        raise ParameterError(f"expected an nn.Module, got {type(net).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ParameterError(f"input_shape is (C, H, W) of positive sizes, got {input_shape!r}")
    path = arch if isinstance(arch, str) else import_path_of(arch if arch is not None else type(net))
    if is_import_path(path):  # a registered name is not code to trust
        trust_arch(path)
    args = dict(arch_args or {})
    # the card's own fields, which every build passes to a factory that takes them
    num_classes = num_classes or args.pop("num_classes", None)
    args.pop("input_shape", None)
    c = shape[0]
    card = ModelCard(
        arch=path,
        arch_args=args,
        input_shape=shape,  # type: ignore[arg-type]
        num_classes=num_classes or 0,
        mean=tuple(float(v) for v in (mean if mean is not None else (0.0,) * c)),
        std=tuple(float(v) for v in (std if std is not None else (1.0,) * c)),
        classes=tuple(map(str, classes)),
        dataset=dataset,
    )
    if len(card.mean) != c or len(card.std) != c:
        raise ParameterError(f"mean and std need {c} values each (one per input channel)")
    model = ModelprintModel(net, card)
    if not num_classes:
        model.card.num_classes = _classes_of(model, shape)
    return model


def _classes_of(model: ModelprintModel, shape: tuple[int, ...]) -> int:
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.full((1, *shape), 0.5, device=device))
    except Exception as e:  # the user's forward: any failure means the shape is wrong
        raise ParameterError(f"the network fails on a {'x'.join(map(str, shape))} input: {e}") from None
    finally:
        model.train(was_training)
    if out.ndim != 2:
        raise ParameterError(
            f"the network returns shape {tuple(out.shape)} for one input; expected (1, classes) logits"
        )
    return int(out.shape[1])


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{p} is a folder; give a model file (NAME.safetensors with NAME.json beside it)")
    if p.suffix.lower() in (".onnx", ".pt", ".pth", ".ts", ".bin"):
        raise ModelFileError(
            f"{p} is not a modelprint model file (NAME.safetensors + NAME.json): a fingerprint is made from "
            "weights; import them with `modelprint model import --arch MODULE:ATTR --weights FILE ...` "
            "(an exported graph can still be verified as a suspect)"
        )
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


# One metadata key only: safetensors writes metadata in hash-map order, so two keys would make
# the bytes, and with them the sha256, differ from save to save.
_WEIGHTS_METADATA = {"format": "pt"}


def _state(model: ModelprintModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def weights_digest(model: ModelprintModel) -> str:
    """The sha256 the model's weights file has (or would have once saved)."""
    if model.card.weights_sha256:
        return model.card.weights_sha256
    return hashlib.sha256(save(_state(model), metadata=_WEIGHTS_METADATA)).hexdigest()


@dataclass(frozen=True)
class ModelBytes:
    """A model file in memory: the safetensors ``weights`` and the ``card`` JSON, byte for byte
    what :func:`save_model` writes. This is what travels between processes and machines (a
    process pool, Ray's object store), so no worker needs a path on the driver's disk."""

    weights: bytes
    card: str

    @property
    def nbytes(self) -> int:
        return len(self.weights) + len(self.card.encode())


def model_to_bytes(model: ModelprintModel) -> ModelBytes:
    """Serialise ``model``; its card records the weights' sha256."""
    weights = save(_state(model), metadata=_WEIGHTS_METADATA)
    model.card.weights_sha256 = hashlib.sha256(weights).hexdigest()
    return ModelBytes(weights, model.card.to_json())


def write_model_bytes(data: ModelBytes, path: str | os.PathLike) -> Path:
    """Write weights then card, each atomically; returns the weights' path."""
    weights_path, card_path = _paths(path)
    atomic_write(weights_path, lambda tmp: Path(tmp).write_bytes(data.weights))
    atomic_write_text(card_path, data.card)
    return weights_path


def save_model(model: ModelprintModel, path: str | os.PathLike) -> Path:
    """Write weights then card, each atomically; the card records the weights' sha256."""
    return write_model_bytes(model_to_bytes(model), path)


def read_model_bytes(path: str | os.PathLike) -> ModelBytes:
    """The two files of a model as bytes (size-limited, not yet checked: :func:`model_from_bytes` checks)."""
    weights_path, card_path = _paths(path)
    check_readable(weights_path, "model weights", ModelFileError)
    check_readable(card_path, "model card (the .json beside the weights)", ModelFileError)
    try:
        card = card_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{card_path} is not valid JSON ({e})") from None
    return ModelBytes(weights_path.read_bytes(), card)


def load_model(path: str | os.PathLike, device: str = "cpu") -> ModelprintModel:
    """Load a model file, checking the card against the weights; errors say what is wrong."""
    weights_path, card_path = _paths(path)
    data = read_model_bytes(path)
    # a card is the suspect's: the architecture it names is never imported from the suspect's folder
    with untrusted_folder(weights_path.parent):  # the card lies beside the weights
        return model_from_bytes(data, device, names=(str(weights_path), str(card_path)))


def _build(card: ModelCard, card_name: str) -> ModelprintModel:
    try:
        net = create_arch(card.arch, num_classes=card.num_classes, input_shape=card.input_shape, **card.arch_args)
        return ModelprintModel(net, card)
    except Exception as e:  # an argument the architecture does not take, a size it cannot build
        raise ModelFileError(f"{card_name}: cannot build {card.arch} with {card.arch_args} ({e})") from None


def _header_shapes(weights: bytes, name: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, read without loading any tensor."""
    try:
        size = int.from_bytes(weights[:8], "little")
        if len(weights) < 8 or size > len(weights) - 8:
            raise ValueError("header longer than the file")
        header = json.loads(weights[8 : 8 + size])
        return {k: tuple(int(d) for d in v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise ModelFileError(f"{name} is not a readable safetensors file ({e})") from None


# A card (architecture, shapes, lineage of a zoo model) is a few KB and a few levels deep.
MAX_CARD_CHARS = 1 << 20
MAX_CARD_DEPTH = 32


def _check_fits_card(card: ModelCard, shapes: dict[str, tuple[int, ...]], names: tuple[str, str]) -> None:
    """Refuse weights whose tensors (``shapes``, read from the file's header) are not the ones
    the card's architecture has. It is built on the meta device: a card asking for width 2048
    costs nothing until its shapes are known to match the file (so memory follows the file)."""
    weights_name, card_name = names
    with torch.device("meta"):
        skeleton = _build(card, card_name)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = [k for k in expected if k in shapes and shapes[k] != expected[k]]
    parts = [f"missing {len(missing)} tensors (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(extra)} unexpected tensors (e.g. {extra[0]})"] if extra else []
    parts += [f"wrong shape for {wrong[0]}: {shapes[wrong[0]]} vs {expected[wrong[0]]}"] if wrong else []
    if parts:
        raise ModelFileError(f"{weights_name} does not fit its card ({card.arch} {card.arch_args}): {'; '.join(parts)}")


def model_from_bytes(
    data: ModelBytes, device: str = "cpu", *, names: tuple[str, str] = ("model weights", "model card")
) -> ModelprintModel:
    """The model in ``data``, checked as :func:`load_model` checks a file (``names`` for messages)."""
    weights_name, card_name = names
    if len(data.card) > MAX_CARD_CHARS:
        raise ModelFileError(
            f"{card_name} holds {len(data.card)} characters; a model card is a few KB (limit {MAX_CARD_CHARS})"
        )
    try:
        card_dict = json.loads(data.card)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ModelFileError(f"{card_name} is not valid JSON ({str(e)[:120]})") from None
    if nesting_depth(card_dict, MAX_CARD_DEPTH) > MAX_CARD_DEPTH:
        raise ModelFileError(f"{card_name} nests lists and tables deeper than {MAX_CARD_DEPTH} levels; refused")
    card = ModelCard.from_dict(card_dict, card_name)
    if is_import_path(card.arch):
        if not is_trusted(card.arch):
            raise ModelFileError(f"{card_name}: {untrusted_message(card.arch)}")
    elif card.arch not in ARCHITECTURES:
        raise ModelFileError(
            f"{card_name}: unknown architecture {card.arch!r}; known: {', '.join(ARCHITECTURES.names())} "
            "or your own as MODULE:ATTRIBUTE"
        )
    digest = hashlib.sha256(data.weights).hexdigest()
    if card.weights_sha256 and digest != card.weights_sha256:
        raise ModelFileError(
            f"{weights_name}: sha256 {digest[:12]}… differs from the card's "
            f"{card.weights_sha256[:12]}…; the weights were changed or belong to another card"
        )
    _check_fits_card(card, _header_shapes(data.weights, weights_name), names)
    try:
        state = load(data.weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{weights_name} is not a readable safetensors file ({e})") from None
    model = _build(card, card_name)
    model.load_state_dict(state)
    model.card.weights_sha256 = digest
    return model.to(device).eval()
