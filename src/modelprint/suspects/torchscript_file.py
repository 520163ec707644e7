"""A TorchScript file: a zip archive of TorchScript code, pickled structure and raw tensors.

``torch.jit.load`` runs the archive's TorchScript code and unpickles its structure, so a file
is inspected first, with nothing executed, and refused unless it is a TorchScript archive:

* a zip (a bare pickle, the classic ``torch.save`` payload, is refused on its first bytes);
* with a ``code/`` folder (a ``torch.save`` checkpoint zip has none: loading it would unpickle);
* every member intact (zip CRC), uncompressed total under the size limit (no zip bomb);
* every pickle in it naming only the globals TorchScript writes (``__torch__.*`` classes,
  ``torch._utils`` tensor rebuilders, ``torch.*Storage``, ``collections.OrderedDict``,
  ``torch.jit._pickle``), read with :mod:`pickletools`, which parses and never executes.

ONNX is still the safer format to accept from strangers: its runtime executes no code at all.

Example::

    TorchScriptSuspect("stolen.pt").predict(fp.x).labels
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
import zlib

import numpy as np
import torch

from .._io import MAX_FILE_BYTES, check_readable, sha256_file
from ..errors import ParameterError, SuspectError
from .base import OUTPUTS, Suspect, logits_answer, register_suspect
from .onnx_file import CARD_KEY, _first_line, card_shape

# Opcodes that name or call a Python object; each one's target must be on the allow list.
_NAMING_OPS = {"GLOBAL", "STACK_GLOBAL", "INST"}
_ALLOWED_MODULES = ("__torch__", "torch._utils", "torch.jit._pickle", "collections")
_ALLOWED_TORCH_NAMES = {f"{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short",
                                                  "Char", "Byte", "Bool", "ComplexFloat", "ComplexDouble")}  # fmt: skip


def inspect_torchscript(path: str | os.PathLike) -> None:
    """Refuse ``path`` unless it is an intact TorchScript archive whose pickles name only
    TorchScript's own globals; executes nothing."""
    p = check_readable(path, "TorchScript file", SuspectError)
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q"):
        raise SuspectError(f"{p} is a pickle, not a TorchScript archive: refused without loading it")
    if not zipfile.is_zipfile(p):
        raise SuspectError(f"{p} is not a TorchScript archive (not a zip file; truncated or another format)")
    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            if sum(i.file_size for i in infos) > MAX_FILE_BYTES:
                raise SuspectError(f"{p} unpacks to more than {MAX_FILE_BYTES} bytes; refused")
            if not any("/code/" in n for n in names):
                raise SuspectError(
                    f"{p} is a torch.save checkpoint (pickled Python objects), not TorchScript: refused without "
                    "loading it; export the model with `modelprint export` or torch.jit.save"
                )
            bad = z.testzip()
            if bad is not None:
                raise SuspectError(f"{p} is corrupt: member {bad} fails its checksum")
            for name in names:
                if name.endswith((".pkl", ".debug_pkl")):
                    _check_pickle(z.read(name), f"{p}:{name}")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise SuspectError(f"{p} is not a readable TorchScript archive: {_first_line(e)}") from None


def _check_pickle(data: bytes, where: str) -> None:
    try:
        ops = list(pickletools.genops(io.BytesIO(data)))
    except Exception as e:  # pickletools raises ValueError and others on malformed streams
        raise SuspectError(f"{where}: malformed pickle ({_first_line(e)}); refused") from None
    strings: list[str] = []
    for op, arg, _ in ops:
        if isinstance(arg, str):
            strings.append(arg)
        if op.name not in _NAMING_OPS:
            continue
        if op.name == "STACK_GLOBAL":  # module and name were pushed as the two strings before it
            module, name = (strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?")
        else:
            module, _, name = str(arg).partition(" ")
        allowed = module.startswith(_ALLOWED_MODULES[0]) or module in _ALLOWED_MODULES[1:]
        allowed = allowed or (module == "torch" and name in _ALLOWED_TORCH_NAMES)
        if not allowed:
            raise SuspectError(f"{where} names {module}.{name}, which TorchScript never writes; refused")


@register_suspect("torchscript")
class TorchScriptSuspect(Suspect):
    """A TorchScript module (N, C, H, W) in [0, 1] -> logits (N, classes), checked before loading;
    ``outputs="probabilities"`` for a module that ends in a softmax."""

    suffixes = (".pt", ".pth", ".ts", ".torchscript", ".jit")

    def __init__(
        self, path: str | os.PathLike, *, labels_only: bool = False, outputs: str = "logits", batch_size: int = 256
    ) -> None:
        super().__init__()
        if outputs not in OUTPUTS:
            raise ParameterError(f"outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
        self.outputs = outputs
        inspect_torchscript(path)
        extra = {CARD_KEY: ""}
        try:
            self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as e:  # torch raises RuntimeError and others on archives it cannot read
            raise SuspectError(f"torch cannot load {path} as TorchScript: {_first_line(e)}") from None
        self.module.eval()
        card = extra[CARD_KEY]
        self.input_shape, self.num_classes = card_shape(card.decode() if isinstance(card, bytes) else card, str(path))
        self.labels_only = labels_only
        self.max_batch = batch_size
        self.identity = sha256_file(path)
        self.location = str(path)

    @torch.no_grad()
    def _answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            out = self.module(torch.from_numpy(x))
        except Exception as e:  # the scripted code rejects the shape, for instance
            raise SuspectError(f"the TorchScript module failed on the queries: {_first_line(e)}") from None
        if not isinstance(out, torch.Tensor):
            raise SuspectError(f"the TorchScript module returned {type(out).__name__}, not a logits tensor")
        self.requests += 1
        self.queries_sent += len(x)
        return logits_answer(out.float().numpy(), self.labels_only, self.outputs)
