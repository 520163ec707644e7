"""Name -> class registries for architectures, fingerprint methods and attacks.

Adding a method is adding a file with ``@METHODS.register("name")`` on a class.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .errors import ParameterError, UnknownNameError

T = TypeVar("T")


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated list, stripped, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_settings(items: Iterable[str], what: str = "settings") -> dict[str, Any]:
    """Settings for a registered class from ``K=V`` items: V is read as JSON where it parses
    (numbers, true/false, null, lists), else kept as a string; hyphens in K become underscores.

    Example::

        parse_settings(["width=16", "mode=ftal"])  # {"width": 16, "mode": "ftal"}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"{what} are K=V, got {item!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def get(self, name: str) -> type[T]:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def create(self, name: str, **kwargs: Any) -> T:
        """Instantiate ``name`` with settings; unknown or invalid settings raise ParameterError."""
        cls = self.get(name)
        if dataclasses.is_dataclass(cls):
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(kwargs) - fields)
            if unknown:
                raise ParameterError(
                    f"{self.kind} {name!r} has no parameter {', '.join(unknown)}; "
                    f"its parameters: {', '.join(sorted(fields)) or 'none'}"
                )
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ParameterError(f"{self.kind} {name!r}: {e}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items
