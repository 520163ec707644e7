"""The entry point: the arguments as users type them (several values after one flag, global
options after the command), help without Python types, one line per error."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer
from typer.core import TyperArgument, TyperOption

from .._io import printable
from ..errors import ModelprintError
from .common import app, option_of

INTERNAL_ERROR = 70  # EX_SOFTWARE: not 1, which is a verdict


# Options that take several values after one flag (`--positives A B C`), as the manual writes them.
_MULTI_VALUE = ("--positives", "--negatives", "--weights")


def _expand_multi_value(argv: list[str]) -> list[str]:
    out, current = [], None
    for arg in argv:
        if arg in _MULTI_VALUE:
            current = arg
            continue
        if current and not arg.startswith("-"):
            out += [current, arg]
            continue
        if current:
            current = None
        out.append(arg)
    return out


# What a value looks like in help, by the option's type (instead of typer's "<list[Path]>").
_METAVARS = {"int": "N", "float": "X", "Path": "PATH", "str": "TEXT", "integer": "N", "path": "PATH", "text": "TEXT"}


def _no_type(param: Any, ctx: Any) -> str | None:
    return param.metavar if isinstance(param, TyperOption) and not (param.is_flag or param.count) else None


def _readable_help(command: Any) -> Any:
    """Help without Python types: arguments by their name, options by a short placeholder."""
    TyperArgument.display_type_rich = _no_type  # type: ignore[method-assign]
    for param in command.params:
        if isinstance(param, TyperArgument):
            name = param.metavar or param.name.upper().removesuffix("_PATH").removesuffix("_PATHS")
            param.metavar = name
            usage = name if name.endswith("...") or param.nargs == 1 else name + "..."
            usage = usage if param.required else f"[{usage}]"
            param._usage_display_name = lambda shown=usage: shown  # type: ignore[attr-defined]
        elif isinstance(param, TyperOption):
            if param.is_flag or param.count:
                param.display_type_rich = lambda ctx, p=param: _no_type(p, ctx)  # type: ignore[method-assign]
            elif param.metavar is None:
                # typer >= 0.2x names the annotation; older releases only click's type name
                bare = param.bare_type() if hasattr(param, "bare_type") else getattr(param.type, "name", "")
                bare = bare.removeprefix("list[").removesuffix("]")
                param.metavar = _METAVARS.get(bare, _METAVARS.get(bare.lower(), "VALUE"))
    for sub in getattr(command, "commands", {}).values():
        _readable_help(sub)
    # click makes the help option when help is asked for: a flag, shown without a type
    make_help = command.get_help_option
    command.get_help_option = lambda ctx: _flag(make_help(ctx))  # type: ignore[method-assign]
    return command


def _flag(option: Any) -> Any:
    if option is not None:
        option.display_type_rich = lambda ctx: None
    return option


# Global options a user may type after the command too (`modelprint verify ... --trust-arch X`):
# the error messages that name them do not say where they go. Each takes a value or none.
_GLOBAL_OPTIONS = {"--trust-arch": True, "--quiet": False, "-q": False}


def _hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the global options moved before the command, wherever they were typed."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS and rest:  # after the command: bring it forward
            takes_value = _GLOBAL_OPTIONS[name] and "=" not in arg
            front += args[i : i + 1 + takes_value]
            i += 1 + takes_value
            continue
        rest.append(arg)
        i += 1
    return front + rest


def _click_errors() -> tuple[tuple[type[Exception], ...], tuple[type[BaseException], ...]]:
    """Usage errors and aborts of the parser typer uses: newer releases carry their own copy of
    click (and do not install click itself), older ones use click."""
    usage: list[type[Exception]] = []
    aborts: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import UsageError
        from typer.exceptions import Abort
    except ImportError:
        pass
    else:
        usage.append(UsageError)
        aborts.append(Abort)
    try:
        import click
    except ImportError:
        pass
    else:
        usage.append(click.UsageError)
        aborts.append(click.Abort)
    return tuple(usage), tuple(aborts)


_USAGE_ERRORS, _ABORTS = _click_errors()


def main(argv: list[str] | None = None) -> None:
    args = _hoist_global_options(_expand_multi_value(list(sys.argv[1:] if argv is None else argv)))
    try:
        command = _readable_help(typer.main.get_command(app))
        code = command.main(args=args, prog_name="modelprint", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except _USAGE_ERRORS as e:  # one line, as every other error (click draws a box of five)
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare command group: its help, as click shows it
            command.main(args=args, prog_name="modelprint")
        path = e.ctx.command_path if e.ctx is not None else "modelprint"
        sys.stderr.write(f"error: {printable(e.format_message())} (see `{path} -h`)\n")
        sys.exit(2)
    except _ABORTS:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except ModelprintError as e:  # the message names Python parameters: show their options instead
        sys.stderr.write(f"error: {printable(e.naming(option_of))}\n")
        sys.exit(2)
    except Exception:  # a bug: say so, with the traceback, and never exit with a verdict's code
        traceback.print_exc()
        sys.stderr.write("internal error: this is a bug in modelprint; please report it with the traceback above\n")
        sys.exit(INTERNAL_ERROR)
