"""A TorchScript file: a zip archive of TorchScript code, pickled structure and raw tensors.

``torch.jit.load`` runs the archive's TorchScript code and unpickles its structure, so a file
is inspected first, with nothing executed, and refused unless it is a TorchScript archive:

* a zip (a bare pickle, the classic ``torch.save`` payload, is refused on its first bytes);
* with a ``code/`` folder (a ``torch.save`` checkpoint zip has none: loading it would unpickle);
* every member enumerated and in TorchScript's layout: one top-level folder, no duplicate names
  or case variants of one (torch looks names up regardless of case), no bytes before the
  archive, nothing encrypted, no member of a name torch or the check would not expect;
* every member intact (zip CRC), uncompressed total under the size limit (no zip bomb), code
  and pickles under their own limits and in proportion to the file, before any is parsed;
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
import re
import zipfile
import zlib
from pathlib import Path

from .._io import MAX_FILE_BYTES, check_readable
from ..errors import ParameterError, SuspectError
from .base import OUTPUTS, register_suspect
from .onnx_file import CARD_KEY, _first_line, card_shape
from .pickle_check import PickleBudget, check_pickle
from .sandbox import ContainedSuspect, SandboxLimits
from .torchscript_code import check_torchscript_code

# Bounds on the static check itself, so a small hostile file cannot make it slow or large:
# parsing costs up to ~700 bytes of memory per byte of code, so code is read one member at a
# time, each counted in tokens before it is parsed. Real archives are far below every bound
# (a traced MobileNetV2: 102 KB of code in 178 members, none over 1,000 tokens; 345 KB of pickles).
MAX_CODE_MEMBER_BYTES = 1024**2
MAX_CODE_BYTES = 8 * 1024**2
MAX_PICKLE_BYTES = 16 * 1024**2
# code and pickles together may unpack to at most this many times the file's size (and 1 MB)
MAX_EXPANSION = 64

# Every member a TorchScript archive holds, below its one top-level folder. Names are matched
# exactly (torch looks members up regardless of case and takes the first of two same names, so
# duplicates and case variants are refused rather than guessed at).
_FIXED_MEMBERS = {
    "data.pkl",
    "constants.pkl",
    "traced_inputs.pkl",
    "version",
    "byteorder",
    ".data/version",
    ".data/serialization_id",
}
_MEMBER = re.compile(
    r"(data|constants|traced_inputs)/\d+"  # raw tensor bytes
    r"|code/\w+(/\w+)*\.py(\.debug_pkl)?"  # TorchScript code and its pickled debug info
    r"|extra/[\w.-]+",  # extra files, read only by modelprint (the card)
    re.ASCII,
)
_PREFIX = re.compile(r"[\w.-]+", re.ASCII)


def _checked_members(z: zipfile.ZipFile, p: Path) -> dict[str, zipfile.ZipInfo]:
    """Every member, by its name below the archive's folder; refused unless the layout is exactly
    TorchScript's and every reader would find the same bytes under each name."""
    infos = z.infolist()
    if not infos:
        raise SuspectError(f"{p} is an empty archive; refused")
    if min(i.header_offset for i in infos) != 0:
        # bytes before the archive: zipfile shifts every offset to skip them, torch's reader does not
        raise SuspectError(f"{p} has data before its first member; refused")
    seen: dict[str, str] = {}
    prefixes = set()
    for info in infos:
        name = info.filename
        folded = name.casefold()
        if folded in seen:
            raise SuspectError(
                f"{p} holds two members named {_shown(seen[folded])} and {_shown(name)} (torch would read one "
                "and the check another); refused"
            )
        seen[folded] = name
        if info.flag_bits & 0x1:
            raise SuspectError(f"{p}:{_shown(name)} is encrypted; refused")
        prefix, sep, _ = name.partition("/")
        if not sep or not _PREFIX.fullmatch(prefix):
            raise SuspectError(f"{p}:{_shown(name)} is not inside the archive's one top-level folder; refused")
        prefixes.add(prefix)
    if len(prefixes) != 1:
        raise SuspectError(f"{p} has more than one top-level folder ({len(prefixes)}); refused")
    members = {}
    for info in infos:
        rest = info.filename.partition("/")[2]
        if rest not in _FIXED_MEMBERS and not _MEMBER.fullmatch(rest):
            raise SuspectError(f"{p}:{_shown(info.filename)} is not part of a TorchScript archive; refused")
        members[rest] = info
    return members


def _shown(name: str) -> str:
    return repr(name[:120])


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
            if sum(i.file_size for i in infos) > MAX_FILE_BYTES:
                raise SuspectError(f"{p} unpacks to more than {MAX_FILE_BYTES} bytes; refused")
            if not any(i.filename.partition("/")[2].startswith("code/") for i in infos):
                raise SuspectError(
                    f"{p} is a torch.save checkpoint (pickled Python objects), not TorchScript: refused without "
                    "loading it; export the model with `modelprint export` or torch.jit.save"
                )
            members = _checked_members(z, p)
            bad = z.testzip()
            if bad is not None:
                raise SuspectError(f"{p} is corrupt: member {_shown(bad)} fails its checksum")
            _check_budget(members, p)
            # the texts are bounded by _check_budget; only the parse trees are costly, and those
            # check_torchscript_code builds one member at a time
            code = {name: _code_text(z, info, p) for name, info in members.items() if name.endswith(".py")}
            check_torchscript_code(code, str(p))
            budget = PickleBudget()
            for name, info in members.items():
                if name.endswith((".pkl", ".debug_pkl")):
                    check_pickle(z.read(info), f"{p}:{name}", budget=budget)
                elif name == f"extra/{CARD_KEY}":
                    card = z.read(info).decode("utf-8", "replace")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise SuspectError(f"{p} is not a readable TorchScript archive: {_first_line(e)}") from None
    return card


def _check_budget(members: dict[str, zipfile.ZipInfo], p: Path) -> None:
    """Code and pickles bounded, absolutely and in proportion to the file, before any is read."""
    code = [i for n, i in members.items() if n.endswith(".py")]
    pickles = [i for n, i in members.items() if n.endswith((".pkl", ".debug_pkl"))]
    for info in code:
        if info.file_size > MAX_CODE_MEMBER_BYTES:
            raise SuspectError(
                f"{p}:{_shown(info.filename)} holds {info.file_size} bytes of code, over the limit of "
                f"{MAX_CODE_MEMBER_BYTES} per member; refused"
            )
    code_bytes, pickle_bytes = sum(i.file_size for i in code), sum(i.file_size for i in pickles)
    if code_bytes > MAX_CODE_BYTES:
        raise SuspectError(f"{p} holds {code_bytes} bytes of code, over the limit of {MAX_CODE_BYTES}; refused")
    if pickle_bytes > MAX_PICKLE_BYTES:
        raise SuspectError(f"{p} holds {pickle_bytes} bytes of pickles, over the limit of {MAX_PICKLE_BYTES}; refused")
    allowed = max(1024**2, MAX_EXPANSION * p.stat().st_size)
    if code_bytes + pickle_bytes > allowed:
        raise SuspectError(
            f"{p} unpacks to {code_bytes + pickle_bytes} bytes of code and pickles from {p.stat().st_size} bytes "
            f"(over {MAX_EXPANSION} times the file's size); refused"
        )


def _code_text(z: zipfile.ZipFile, info: zipfile.ZipInfo, p: Path) -> str:
    try:
        return z.read(info).decode("utf-8")
    except UnicodeDecodeError:
        raise SuspectError(f"{p}:{_shown(info.filename)} is not text; refused") from None


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
