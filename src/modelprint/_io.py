"""Small file helpers: hashing, atomic writes, size limits on user files."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import ModelprintError

# Anything bigger than this is refused before it is read: no model or fingerprint
# this tool makes comes close, and a hostile file should not exhaust memory.
MAX_FILE_BYTES = 4 * 1024**3


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


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
