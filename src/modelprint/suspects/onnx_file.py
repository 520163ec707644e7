"""An ONNX file run with onnxruntime: the suspect as it is usually shipped, no torch involved.

The graph must take one float input (N, C, H, W) in [0, 1] and return logits (N, classes),
as ``modelprint export --format onnx`` writes it. Before anything runs, the file is checked
(:func:`check_onnx`): size limit, a parseable model, onnx's checker, one 4-d input and a 2-d
output, no tensor anywhere that keeps its data in a side file (initializers, sparse tensors,
``Constant`` and every other node attribute, subgraphs, functions: an external-data path makes
the runtime read a file of the verifier's), only the standard operator set (a custom domain
needs a native library), and no tensor or shape declaring more than ``MAX_TENSOR_ELEMENTS``
elements. It then runs in a contained worker process (:mod:`~modelprint.suspects.sandbox`)
whose memory, CPU time and file access are limited, so a graph that allocates without bound
at run time is stopped there. A corrupt or truncated file is one clear error.

Example::

    OnnxSuspect("stolen.onnx").predict(fp.x).labels
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from .._io import check_readable
from .._lazy import require
from ..errors import ParameterError, SuspectError
from .base import OUTPUTS, register_suspect
from .sandbox import ContainedSuspect, SandboxLimits

STANDARD_DOMAINS = {"", "ai.onnx"}
CARD_KEY = "modelprint.card"  # as in modelprint.export
MAX_TENSOR_ELEMENTS = 1 << 28  # 1 GiB of float32: far above any model a verifier queries


def card_shape(text: str | None, where: str) -> tuple[tuple[int, int, int] | None, int | None]:
    """Input shape and class count from an embedded model card (JSON), or (None, None)."""
    if not text:
        return None, None
    try:
        card = json.loads(text)
        shape = tuple(int(v) for v in card["input_shape"])
        classes = int(card["num_classes"])
    except (ValueError, TypeError, KeyError, RecursionError):
        raise SuspectError(f"{where}: the embedded model card is not readable") from None
    if len(shape) != 3 or min(shape) < 1 or max(shape) > 65536 or not 1 <= classes <= 100_000:
        raise SuspectError(f"{where}: the embedded model card has input_shape {shape}, classes {classes}")
    return shape, classes  # type: ignore[return-value]


def check_onnx(proto: Any, where: str) -> None:
    """Refuse a model that reads side files, uses a custom operator domain or declares a
    tensor over ``MAX_TENSOR_ELEMENTS`` elements, anywhere in it (subgraphs and functions too)."""
    import onnx

    domains = {o.domain for o in proto.opset_import} - STANDARD_DOMAINS
    if domains:
        raise SuspectError(f"{where} uses custom operator sets ({', '.join(sorted(domains))}); refused")
    if len(proto.functions):
        raise SuspectError(f"{where} defines its own functions; refused: export a plain graph")

    def tensor(t: Any, what: str) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            raise SuspectError(f"{where}: {what} keeps its data in side files (external data); refused")
        elements(list(t.dims), what)

    def elements(dims: list[int], what: str) -> None:
        if any(d < 0 for d in dims) or math.prod(dims) > MAX_TENSOR_ELEMENTS:
            raise SuspectError(f"{where}: {what} declares shape {dims[:8]}, over {MAX_TENSOR_ELEMENTS} elements")

    def sparse(t: Any, what: str) -> None:
        tensor(t.values, what)
        tensor(t.indices, what)
        elements(list(t.dims), what)

    def graph(g: Any, depth: int = 0) -> None:
        if depth > 32:
            raise SuspectError(f"{where}: subgraphs nested over 32 deep; refused")
        for t in g.initializer:
            tensor(t, f"initializer {t.name!r}")
        for t in g.sparse_initializer:
            sparse(t, "a sparse initializer")
        for v in [*g.input, *g.output, *g.value_info]:
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
                elements([d.dim_value for d in v.type.tensor_type.shape.dim if d.HasField("dim_value")], v.name)
        for node in g.node:
            if node.domain not in STANDARD_DOMAINS:
                raise SuspectError(f"{where}: node {node.op_type} is in the custom domain {node.domain!r}; refused")
            what = f"node {node.name or node.op_type}"
            for a in node.attribute:
                if a.HasField("t"):
                    tensor(a.t, what)
                for t in a.tensors:
                    tensor(t, what)
                if a.HasField("sparse_tensor"):
                    sparse(a.sparse_tensor, what)
                for t in a.sparse_tensors:
                    sparse(t, what)
                if a.HasField("g"):
                    graph(a.g, depth + 1)
                for sub in a.graphs:
                    graph(sub, depth + 1)

    graph(proto.graph)


@register_suspect("onnx")
class OnnxSuspect(ContainedSuspect):
    """An ONNX graph (N, C, H, W) in [0, 1] -> logits (N, classes), checked, then run on
    onnxruntime's CPU provider in a contained worker (``limits``); ``outputs="probabilities"``
    for a graph that ends in a softmax (else it would be applied twice).

    Example::

        suspect = OnnxSuspect("suspect.onnx")
        verify(fp, suspect).verdict; suspect.close()  # stops the worker
    """

    suffixes = (".onnx",)

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        labels_only: bool = False,
        outputs: str = "logits",
        limits: SandboxLimits | None = None,
    ) -> None:
        super().__init__()
        if outputs not in OUTPUTS:
            raise ParameterError(f"outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
        self.outputs = outputs
        require("onnx", "an ONNX suspect", "onnx")
        require("onnxruntime", "an ONNX suspect", "onnx")
        import onnx
        from google.protobuf.message import DecodeError

        p = check_readable(path, "ONNX file", SuspectError)
        data = p.read_bytes()
        try:
            proto = onnx.load_model_from_string(data)
        except (DecodeError, ValueError, RuntimeError, RecursionError) as e:
            raise SuspectError(f"{p} is not a readable ONNX model (corrupt or truncated?): {_first_line(e)}") from None
        check_onnx(proto, str(p))
        try:
            onnx.checker.check_model(proto)
        except Exception as e:  # onnx raises ValidationError and several others
            raise SuspectError(f"{p} is not a valid ONNX model: {_first_line(e)}") from None
        meta = {m.key: m.value for m in proto.metadata_props}
        shape, classes = card_shape(meta.get(CARD_KEY), str(p))
        inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
        dims = _dims(inputs[0]) if len(inputs) == 1 else []
        if len(inputs) != 1 or len(dims) != 4 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            got = ", ".join(f"{i.name} {_dims(i)}" for i in inputs)
            raise SuspectError(f"{p}: expected one float input (N, C, H, W), the graph takes {got}")
        out_dims = _dims(proto.graph.output[0]) if proto.graph.output else []
        if len(out_dims) != 2:
            raise SuspectError(f"{p}: expected logits (N, classes) as the first output")
        graph_shape = tuple(dims[1:])
        if shape is None and None not in graph_shape:
            shape = graph_shape  # type: ignore[assignment]
        classes = classes or out_dims[1]
        self.input_shape, self.num_classes = shape, classes
        # A graph exported with a fixed batch is fed that many at a time.
        self._fixed_batch = isinstance(dims[0], int) and dims[0] > 0
        self.max_batch = dims[0] if self._fixed_batch else 256
        self.labels_only = labels_only
        self._contain(p, data, limits)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        if self._fixed_batch and len(x) < self.max_batch:  # the last chunk, padded to the graph's batch
            return np.concatenate([x, np.zeros((self.max_batch - len(x), *x.shape[1:]), np.float32)])
        return x


def _dims(value_info: Any) -> list[int | None]:
    """A graph input's or output's shape, None for symbolic dimensions."""
    t = value_info.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else []


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
