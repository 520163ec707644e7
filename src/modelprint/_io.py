"""Small file helpers: hashing, atomic writes, size limits on user files."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import ModelprintError, OutputPathError

# Anything bigger than this is refused before it is read: no model or fingerprint
# this tool makes comes close, and a hostile file should not exhaust memory.
MAX_FILE_BYTES = 4 * 1024**3


def printable(text: str) -> str:
    """``text`` with control characters (escape sequences, newlines, NUL...) written as Python
    escapes, so a name or message from a hostile file or server cannot drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_readable(path: str | os.PathLike, what: str, error: type[ModelprintError]) -> Path:
    p = Path(path)
    if not p.exists():
        raise error(f"{what} not found: {p}")
    if not p.is_file():
        raise error(f"{what} is not a file: {p}")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise error(f"{what} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit: {p}")
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike, what: str = "output", *, folder: bool = False) -> Path:
    """Refuse, before any work, an output path that cannot be written: one under a regular file,
    a folder given where a file is wanted (or a file where a folder is, with ``folder``), a
    folder without write permission."""
    p = Path(path)
    if p.is_dir() and not folder:
        raise OutputPathError(f"the {what} path {p} is a folder; give a file name")
    if folder and p.exists() and not p.is_dir():
        raise OutputPathError(f"the {what} folder {p} is a file")
    parent = p if folder and p.is_dir() else p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"cannot write the {what} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write the {what} {p}: no write permission in {parent}")
    return p


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see half a file."""
    path = check_output_path(path, "file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputPathError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, _write)
