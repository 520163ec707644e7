"""Read a pickle symbolically and refuse it unless every global it names is on an allow-list.

:mod:`pickletools` parses a pickle without executing it; this walks its opcodes over a model
of the stack and the memo, so a global's module and name are known whatever way they reach
``STACK_GLOBAL`` (pushed strings, strings fetched back from the memo, strings behind decoys).
A name that cannot be resolved to a literal string is refused, as are dotted names (an
attribute path such as ``namedtuple.__builtins__``), ``INST`` / ``OBJ`` and the extension
registry. Nothing is imported or executed.

Example::

    check_pickle(data, where="archive/data.pkl", allowed=TORCHSCRIPT_GLOBALS)
"""

from __future__ import annotations

import io
import pickletools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import SuspectError

_STRING_OPS = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_REFUSED_OPS = {"INST", "OBJ", "EXT1", "EXT2", "EXT4"}
_MARK = object()


class _Unknown:
    """A value the symbolic stack does not track (anything but a string literal)."""


_UNKNOWN = _Unknown()

STORAGE_TYPES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
                 "ComplexFloat", "ComplexDouble")  # fmt: skip
# Exactly what TorchScript archives name: torch's tensor rebuilders and storages, OrderedDict,
# and the list / type-tag helpers of torch.jit._pickle. ``__torch__`` classes are resolved by
# TorchScript's own type table, never by a Python import; ``__torch__.torch.classes`` are
# custom C++ classes whose ``__setstate__`` runs native code, and are refused.
TORCHSCRIPT_GLOBALS = frozenset(
    {("torch._utils", n) for n in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter")}
    | {("torch", f"{t}Storage") for t in STORAGE_TYPES}
    | {("collections", "OrderedDict")}
    | {
        ("torch.jit._pickle", n)
        for n in (
            "build_intlist",
            "build_doublelist",
            "build_boollist",
            "build_tensorlist",
            "build_genericlist",
            "restore_type_tag",
        )
    }  # fmt: skip
)


def torchscript_global(module: str, name: str) -> bool:
    """Whether a TorchScript archive may name ``module.name``."""
    if module == "__torch__.torch.classes" or module.startswith("__torch__.torch.classes."):
        return False
    return (module, name) in TORCHSCRIPT_GLOBALS or (
        (module == "__torch__" or module.startswith("__torch__.")) and name.isidentifier()
    )


@dataclass
class PickleBudget:
    """Work the check may do, shared by every pickle of one file: opcodes read in all, and the
    symbolic stack and memo of each (a real TorchScript archive needs well under 1 % of these)."""

    max_opcodes: int = 2_000_000
    max_stack: int = 1_000_000
    max_memo: int = 1_000_000
    opcodes: int = 0


def _opcodes(data: bytes, where: str, budget: PickleBudget) -> Iterator[tuple[Any, Any]]:
    """The pickle's opcodes one at a time (never all held), counted against the budget."""
    stream = pickletools.genops(io.BytesIO(data))
    while True:
        try:
            op, arg, _ = next(stream)
        except StopIteration:
            return
        except Exception as e:  # pickletools raises ValueError and others on malformed streams
            raise SuspectError(f"{where}: malformed pickle ({_line(e)}); refused") from None
        budget.opcodes += 1
        if budget.opcodes > budget.max_opcodes:
            raise SuspectError(f"{where}: more than {budget.max_opcodes} pickle opcodes in one file; refused")
        yield op, arg


def check_pickle(
    data: bytes,
    where: str,
    allowed: Callable[[str, str], bool] = torchscript_global,
    budget: PickleBudget | None = None,
) -> None:
    """Refuse ``data`` (a pickle) unless every global it names passes ``allowed(module, name)``;
    ``budget`` bounds the work (shared across the pickles of one file)."""
    budget = budget or PickleBudget()
    _SymbolicStack(where, allowed, budget).run(_opcodes(data, where, budget))


class _SymbolicStack:
    """The unpickler's stack and memo with values untracked except strings, so that the name
    a global is built from is known (or known to be computed) before anything could load it."""

    def __init__(self, where: str, allowed: Callable[[str, str], bool], budget: PickleBudget) -> None:
        self.where, self.allowed, self.budget = where, allowed, budget
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}

    def refuse(self, why: str) -> SuspectError:
        return SuspectError(f"{self.where}: malformed pickle ({why}); refused")

    def pop(self, n: int) -> list[object]:
        if n > len(self.stack):
            raise self.refuse("stack underflow")
        taken = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        return taken

    def pop_mark(self) -> None:
        while self.stack:
            if self.stack.pop() is _MARK:
                return
        raise self.refuse("no mark")

    def run(self, opcodes: Iterator[tuple[Any, Any]]) -> None:
        """Every opcode's effect on the stack and memo; the loop is one method, as it runs per opcode."""
        stack, memo, where, budget = self.stack, self.memo, self.where, self.budget
        for op, arg in opcodes:
            name = op.name
            if len(stack) > budget.max_stack or len(memo) > budget.max_memo:
                limit = max(budget.max_stack, budget.max_memo)
                raise SuspectError(f"{where}: the pickle's stack or memo grows past {limit} entries; refused")
            if name in _REFUSED_OPS:
                raise SuspectError(f"{where} uses the pickle opcode {name}, which TorchScript never writes; refused")
            if name in _STRING_OPS:
                stack.append(arg if isinstance(arg, str) else _UNKNOWN)
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                self.global_(name, arg)
            elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                if not stack:
                    raise self.refuse(f"{name.lower()} on an empty stack")
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if int(arg) not in memo:
                    raise self.refuse(f"memo key {arg} unset")
                stack.append(memo[int(arg)])
            elif name == "DUP":
                stack.append(stack[-1] if stack else _UNKNOWN)
            elif name == "MARK":
                stack.append(_MARK)
            else:  # every other opcode: its documented stack effect, with values untracked
                before = op.stack_before
                if pickletools.markobject in before:
                    self.pop_mark()
                    self.pop(before.index(pickletools.markobject))
                else:
                    self.pop(len(before))
                stack.extend(_UNKNOWN for _ in op.stack_after)

    def global_(self, name: str, arg: Any) -> None:
        """A global is allowed only by its literal module and name, never one computed at load time."""
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
        else:
            module, attr = self.pop(2)
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise SuspectError(f"{self.where} computes a global's name at load time; refused")
        if "." in attr or not self.allowed(module, attr):
            raise SuspectError(f"{self.where} names {_shown(module)}.{_shown(attr)}, which is not allowed; refused")
        self.stack.append(_UNKNOWN)


def _shown(value: object) -> str:
    return repr(value)[1:-1][:80] if isinstance(value, str) else "?"


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
