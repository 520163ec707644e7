"""Your trained weights into a modelprint model file: an architecture (registered name or
import path) plus its state dict, read without unpickling code.

Example::

    model = import_model("mynets:TinyNet", "net.pt", input_shape=(1, 28, 28))
    save_model(model, "owner")    # owner.safetensors + owner.json; load_model rebuilds it
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .._io import check_readable
from ..errors import ModelFileError, ParameterError
from .architectures import create_arch
from .custom import is_import_path
from .files import ModelprintModel, wrap_model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from ``.safetensors``, or from a ``torch.save`` file (``.pt``/``.pth``/``.bin``)
    loaded with ``weights_only=True``, so no pickled code runs. A checkpoint dict holding
    ``state_dict`` (or ``model``) is unwrapped."""
    p = check_readable(path, "weights file", ModelFileError)
    try:
        if p.suffix == ".safetensors":
            state: Any = load_file(p)
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{p}: not a readable state dict ({first})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{p}: expected a state dict (names -> tensors), e.g. torch.save(net.state_dict(), ...)")
    # DataParallel / DistributedDataParallel prefix every name
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def import_model(
    arch: str,
    weights: str | os.PathLike,
    *,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    arch_args: dict[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    classes: Sequence[str] = (),
    dataset: str = "",
) -> ModelprintModel:
    """The architecture ``arch`` built with ``arch_args`` and loaded with ``weights``;
    ``num_classes`` is read from the network when not given (mean / std as in
    :func:`~modelprint.models.wrap_model`)."""
    if not is_import_path(arch) and not num_classes:
        raise ParameterError(f"architecture {arch!r} needs num_classes")
    state = read_state_dict(weights)
    shape = tuple(int(d) for d in input_shape)
    args = {k: v for k, v in (arch_args or {}).items() if k not in ("num_classes", "input_shape")}
    num_classes = num_classes or (arch_args or {}).get("num_classes")
    net = create_arch(arch, num_classes=num_classes or 0, input_shape=shape, **args)  # type: ignore[arg-type]
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        parts += (
            [f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the net has {tuple(own[wrong[0]].shape)}"] if wrong else []
        )
        raise ModelFileError(f"{Path(weights)} does not fit {arch} {arch_args or {}}: " + "; ".join(parts))
    net.load_state_dict(state)
    return wrap_model(
        net.eval(),
        input_shape=shape,
        num_classes=num_classes,
        arch=arch,
        arch_args=args,  # type: ignore[arg-type]
        mean=mean,
        std=std,
        classes=classes,
        dataset=dataset,
    )
