"""Errors a user can cause. The CLI prints their message as one line and exits 2."""

from collections.abc import Callable, Sequence


class ModelprintError(Exception):
    """Base class: the message says what went wrong and what to do.

    ``params`` lists the parameters the message names, each written in it between backticks as
    the Python API spells it (```max_queries```); the command line shows each as its option
    (``--max-queries``) through :meth:`naming`, so one message serves both.

    Example::

        raise ParameterError("`max_queries` must be at least 1, got 0", params=("max_queries",))
    """

    def __init__(self, message: str, *, params: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.params = tuple(params)

    def naming(self, spell: Callable[[str], str]) -> str:
        """The message with each parameter it names (```name```) spelled by ``spell``."""
        text = str(self)
        for name in self.params:
            text = text.replace(f"`{name}`", spell(name))
        return text


class UnknownNameError(ModelprintError, KeyError):
    """A registered name (architecture, method, attack) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(ModelprintError):
    """A missing, malformed or unsupported dataset."""


class ModelFileError(ModelprintError):
    """A model file or its card is missing, corrupt or inconsistent."""


class FingerprintFileError(ModelprintError):
    """A fingerprint artifact is missing, corrupt or does not fit the suspect."""


class ParameterError(ModelprintError, ValueError):
    """A parameter value outside its allowed range or of the wrong type."""


class SuspectError(ModelprintError):
    """A suspect that cannot be verified: wrong shapes, non-finite or missing outputs."""


class CalibrationError(ModelprintError):
    """Calibration models that cannot serve as a null (too few, derived from the source, ...)."""


class OutputPathError(ModelprintError):
    """An output path that cannot be written (under a regular file, no permission, a folder)."""
