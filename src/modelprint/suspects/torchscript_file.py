"""A TorchScript file: a zip archive of TorchScript code, pickled structure and raw tensors.

``torch.jit.load`` runs the archive's TorchScript code and unpickles its structure, so a file
is inspected first, with nothing executed, and refused unless it is a TorchScript archive:

* a zip (a bare pickle, the classic ``torch.save`` payload, is refused on its first bytes);
* with a ``code/`` folder (a ``torch.save`` checkpoint zip has none: loading it would unpickle);
* every member intact (zip CRC), uncompressed total under the size limit (no zip bomb);
* every pickle in it naming only the globals TorchScript writes, resolved symbolically
  through the stack and the memo (:mod:`~modelprint.suspects.pickle_check`);
* its code calling only standard tensor operators (:mod:`~modelprint.suspects.torchscript_code`).

It is then loaded and run in a contained worker process (:mod:`~modelprint.suspects.sandbox`),
never in the verifier's own; where the file-system sandbox cannot be enforced it is refused
unless ``containment="best-effort"``. ONNX is still the safer format to accept from strangers.

Example::

    TorchScriptSuspect("stolen.pt").predict(fp.x).labels
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

from .._io import MAX_FILE_BYTES, check_readable
from ..errors import ParameterError, SuspectError
from .base import OUTPUTS, register_suspect
from .onnx_file import CARD_KEY, _first_line, card_shape
from .pickle_check import check_pickle
from .sandbox import ContainedSuspect, SandboxLimits
from .torchscript_code import check_torchscript_code

MAX_CODE_BYTES = 64 * 1024**2


def inspect_torchscript(path: str | os.PathLike) -> str | None:
    """Refuse ``path`` unless it is an intact TorchScript archive whose pickles name only
    TorchScript's own globals and whose code calls only standard operators; executes nothing.
    Returns the embedded model card (JSON text) or None."""
    p = check_readable(path, "TorchScript file", SuspectError)
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q"):
        raise SuspectError(f"{p} is a pickle, not a TorchScript archive: refused without loading it")
    if not zipfile.is_zipfile(p):
        raise SuspectError(f"{p} is not a TorchScript archive (not a zip file; truncated or another format)")
    card = None
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
            code = [i for i in infos if "/code/" in i.filename and i.filename.endswith(".py")]
            if sum(i.file_size for i in code) > MAX_CODE_BYTES:
                raise SuspectError(f"{p} holds more than {MAX_CODE_BYTES} bytes of code; refused")
            sources = {}
            for info in code:
                try:
                    sources[info.filename] = z.read(info).decode("utf-8")
                except UnicodeDecodeError:
                    raise SuspectError(f"{p}:{info.filename} is not text; refused") from None
            check_torchscript_code(sources, str(p))
            for name in names:
                if name.endswith((".pkl", ".debug_pkl")):
                    check_pickle(z.read(name), f"{p}:{name}")
                elif name.endswith(f"/extra/{CARD_KEY}"):
                    card = z.read(name).decode("utf-8", "replace")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise SuspectError(f"{p} is not a readable TorchScript archive: {_first_line(e)}") from None
    return card


@register_suspect("torchscript")
class TorchScriptSuspect(ContainedSuspect):
    """A TorchScript module (N, C, H, W) in [0, 1] -> logits (N, classes), inspected, then run in
    a contained worker (``limits``: its memory, CPU time and deadlines); ``outputs="probabilities"``
    for a module that ends in a softmax.

    Example::

        suspect = TorchScriptSuspect("suspect.pt")
        verify(fp, suspect).verdict; suspect.close()  # stops the worker
    """

    suffixes = (".pt", ".pth", ".ts", ".torchscript", ".jit")

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        labels_only: bool = False,
        outputs: str = "logits",
        batch_size: int = 256,
        limits: SandboxLimits | None = None,
    ) -> None:
        super().__init__()
        if outputs not in OUTPUTS:
            raise ParameterError(f"outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
        self.outputs = outputs
        card = inspect_torchscript(path)
        self.input_shape, self.num_classes = card_shape(card, str(path))
        self.labels_only = labels_only
        self.max_batch = batch_size
        self._contain(path, Path(path).read_bytes(), limits)
