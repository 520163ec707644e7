"""Export a model file to the formats suspects are found in: ONNX (run with onnxruntime, no
torch needed) and TorchScript. The graph takes inputs in [0, 1] (N, C, H, W) and returns
logits (N, classes); the model's normalisation is inside it, as in the model file. The batch
dimension is dynamic. Files are written to a temporary name and renamed.

Example::

    export_model(load_model("owner.safetensors"), "owner.onnx", "onnx")
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .errors import ParameterError
from .models import ModelprintModel

FORMATS = ("onnx", "torchscript")


def export_model(model: ModelprintModel, path: str | os.PathLike, fmt: str) -> Path:
    """Write ``model`` as ONNX (opset chosen by torch's exporter) or TorchScript (traced); returns the path."""
    if fmt not in FORMATS:
        raise ParameterError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    model = model.eval()
    example = torch.zeros(2, *model.card.input_shape)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if fmt == "onnx":
            _export_onnx(model, example, tmp)
        else:
            with torch.no_grad():
                traced = torch.jit.trace(model, example)
            traced.save(tmp)
        os.replace(tmp, path)
    except ParameterError:
        raise
    except Exception as e:  # an operator the exporter cannot translate, for instance
        raise ParameterError(f"cannot export {model.card.arch} to {fmt}: {str(e).splitlines()[0][:300]}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _export_onnx(model: ModelprintModel, example: torch.Tensor, target: str) -> None:
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                target,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
