"""Small file helpers: hashing, atomic writes, size limits on user files."""

from __future__ import annotations

import errno
import hashlib
import html
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .errors import ModelprintError, OutputPathError

# Anything bigger than this is refused before it is read: no model or fingerprint
# this tool makes comes close, and a hostile file should not exhaust memory.
MAX_FILE_BYTES = 4 * 1024**3


def nesting_depth(value: object, limit: int) -> int:
    """How deep lists and tables nest in parsed JSON ``value``, counted without recursion and
    without looking past ``limit`` (a return above ``limit`` means "too deep")."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def html_with_code(text: str) -> str:
    """HTML-escaped ``text`` with Markdown's `code` spans as <code> (no literal backticks)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


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


_IN_PLACE_FLAGS = {
    "append": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    "update": os.O_RDWR | os.O_CREAT,
}


def open_in_place(path: str | os.PathLike, how: str) -> TextIO:
    """Open a file modelprint writes in place (a lock, an append-only manifest) as text, ``how``
    "append" or "update" (read and write), creating it if needed. A symbolic link, a hard link
    to another name, a FIFO or anything but a regular file is refused: a folder someone else
    prepared must not make the tool truncate or write a file outside it."""
    p = Path(path)
    flags = _IN_PLACE_FLAGS[how] | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(p, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OutputPathError(
                f"{p} is a symbolic link; modelprint does not write through links: remove it"
            ) from None
        raise OutputPathError(f"cannot write {p}: {e.strerror or e}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = "a hard link to another file" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise OutputPathError(f"{p} is {kind}; modelprint does not write through it: remove it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+" if how == "update" else "a", encoding="utf-8")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, _write)
