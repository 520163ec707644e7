"""An ONNX file run with onnxruntime: the suspect as it is usually shipped, no torch involved.

The graph must take one float input (N, C, H, W) in [0, 1] and return logits (N, classes),
as ``modelprint export --format onnx`` writes it. Before anything runs, the file is checked:
size limit, a parseable model, onnx's checker, one 4-d input and a 2-d output, no weights in
side files (an external-data path could make the runtime read any file on this machine) and
only the standard operator sets (a custom domain needs a native library). A corrupt or
truncated file is one clear error.

Example::

    OnnxSuspect("stolen.onnx").predict(fp.x).labels
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .._io import check_readable, sha256_file
from ..errors import ParameterError, SuspectError
from .base import OUTPUTS, Suspect, logits_answer, register_suspect

STANDARD_DOMAINS = {"", "ai.onnx"}
CARD_KEY = "modelprint.card"  # as in modelprint.export


def card_shape(text: str | None, where: str) -> tuple[tuple[int, int, int] | None, int | None]:
    """Input shape and class count from an embedded model card (JSON), or (None, None)."""
    if not text:
        return None, None
    try:
        card = json.loads(text)
        shape = tuple(int(v) for v in card["input_shape"])
        classes = int(card["num_classes"])
    except (ValueError, TypeError, KeyError):
        raise SuspectError(f"{where}: the embedded model card is not readable") from None
    if len(shape) != 3 or min(shape) < 1 or classes < 1:
        raise SuspectError(f"{where}: the embedded model card has input_shape {shape}, classes {classes}")
    return shape, classes  # type: ignore[return-value]


@register_suspect("onnx")
class OnnxSuspect(Suspect):
    """An ONNX graph (N, C, H, W) in [0, 1] -> logits (N, classes), run on onnxruntime's CPU provider;
    ``outputs="probabilities"`` for a graph that ends in a softmax (else it would be applied twice)."""

    suffixes = (".onnx",)

    def __init__(
        self, path: str | os.PathLike, *, labels_only: bool = False, outputs: str = "logits", threads: int = 1
    ) -> None:
        super().__init__()
        if outputs not in OUTPUTS:
            raise ParameterError(f"outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
        self.outputs = outputs
        import onnx
        import onnxruntime as ort
        from google.protobuf.message import DecodeError

        p = check_readable(path, "ONNX file", SuspectError)
        data = p.read_bytes()
        try:
            proto = onnx.load_model_from_string(data)
        except (DecodeError, ValueError, RuntimeError) as e:
            raise SuspectError(f"{p} is not a readable ONNX model (corrupt or truncated?): {_first_line(e)}") from None
        domains = {o.domain for o in proto.opset_import} - STANDARD_DOMAINS
        if domains:
            raise SuspectError(f"{p} uses custom operator sets ({', '.join(sorted(domains))}); refused")
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            raise SuspectError(f"{p} keeps weights in side files (external data); refused: export one file")
        try:
            onnx.checker.check_model(proto)
        except Exception as e:  # onnx raises ValidationError and several others
            raise SuspectError(f"{p} is not a valid ONNX model: {_first_line(e)}") from None
        meta = {m.key: m.value for m in proto.metadata_props}
        shape, classes = card_shape(meta.get(CARD_KEY), str(p))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise SuspectError(f"onnxruntime cannot run {p}: {_first_line(e)}") from None
        inputs, graph_outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
            got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            raise SuspectError(f"{p}: expected one float input (N, C, H, W), the graph takes {got}")
        if not graph_outputs or len(graph_outputs[0].shape) != 2:
            raise SuspectError(f"{p}: expected logits (N, classes) as the first output")
        self.input_name = inputs[0].name
        dims = inputs[0].shape
        graph_shape = tuple(d if isinstance(d, int) else None for d in dims[1:])
        if shape is None and None not in graph_shape:
            shape = graph_shape  # type: ignore[assignment]
        out_k = graph_outputs[0].shape[1]
        classes = classes or (out_k if isinstance(out_k, int) else None)
        self.input_shape, self.num_classes = shape, classes
        # A graph exported with a fixed batch is fed that many at a time.
        self.max_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 256
        self._fixed_batch = isinstance(dims[0], int) and dims[0] > 0
        self.labels_only = labels_only
        self.identity = sha256_file(p)
        self.location = str(p)

    def _answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(x)
        if self._fixed_batch and n < self.max_batch:  # pad the last chunk to the graph's batch
            x = np.concatenate([x, np.zeros((self.max_batch - n, *x.shape[1:]), np.float32)])
        try:
            out: Any = self.session.run(None, {self.input_name: x})[0]
        except Exception as e:  # a shape the graph rejects, an operator failing at run time
            raise SuspectError(f"onnxruntime failed on the queries: {_first_line(e)}") from None
        self.requests += 1
        self.queries_sent += n
        return logits_answer(np.asarray(out)[:n], self.labels_only, self.outputs)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
