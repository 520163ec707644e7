"""Export a model file to the formats suspects are found in: ONNX (run with onnxruntime, no
torch needed) and TorchScript. The graph takes inputs in [0, 1] (N, C, H, W) and returns
logits (N, classes); the model's normalisation is inside it, as in the model file. The batch
dimension is dynamic. Each is one self-contained file (no side file of weights) holding the
model card, written to a temporary name and renamed.

Example::

    export_model(load_model("owner.safetensors"), "owner.onnx", "onnx")
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch

from ._io import atomic_write
from ._lazy import require
from .errors import ParameterError
from .models import ModelprintModel

FORMATS = ("onnx", "torchscript")


# Where the exported file carries the model card: ONNX metadata_props key / TorchScript extra file.
CARD_KEY = "modelprint.card"


def export_model(model: ModelprintModel, path: str | os.PathLike, fmt: str) -> Path:
    """Write ``model`` as one self-contained file, ONNX (opset chosen by torch's exporter) or
    TorchScript (traced), with its card embedded; returns the path."""
    if fmt not in FORMATS:
        raise ParameterError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    model = model.eval()
    example = torch.zeros(2, *model.card.input_shape)
    card = model.card.to_json()
    try:
        data = _onnx_bytes(model, example, card) if fmt == "onnx" else _torchscript_bytes(model, example, card)
    except Exception as e:  # an operator the exporter cannot translate, for instance
        raise ParameterError(f"cannot export {model.card.arch} to {fmt}: {str(e).splitlines()[0][:300]}") from None
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def _torchscript_bytes(model: ModelprintModel, example: torch.Tensor, card: str) -> bytes:
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
        _check_other_batch(model, traced, example)
    buf = io.BytesIO()
    torch.jit.save(traced, buf, _extra_files={CARD_KEY: card})
    return buf.getvalue()


def _check_other_batch(model: ModelprintModel, traced: torch.jit.ScriptModule, example: torch.Tensor) -> None:
    """A trace records Python numbers as constants: a forward that takes ``len(x)`` (or an int
    of a shape) gives a graph that only takes the example's batch size, and every verification
    of the file would fail. Run it on another batch size and compare with the model itself."""
    other = torch.rand(len(example) + 1, *example.shape[1:], generator=torch.Generator().manual_seed(0))
    try:
        same = torch.allclose(traced(other), model(other), rtol=1e-4, atol=1e-5, equal_nan=True)
    except RuntimeError:
        same = False
    if not same:
        raise ParameterError(
            f"the traced graph of {model.card.arch} only takes batches of {len(example)}: its forward turns the batch "
            "size into a number (len(x), int(x.shape[0])...); use x.shape[0] or x.size(0) as is, or export to ONNX"
        )


def _onnx_bytes(model: ModelprintModel, example: torch.Tensor, card: str) -> bytes:
    require("onnxscript", "ONNX export", "onnx")
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            # No file argument: the program stays in memory, so the weights are not split into a
            # side file named after a temporary path; the proto is written whole, atomically.
            program = torch.onnx.export(
                model,
                (example,),
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card
    return proto.SerializeToString()
