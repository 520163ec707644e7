"""What every command group shares: the typer apps, the global options, option types used by
several commands, and the small parsers and printers behind them."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .._io import printable
from .._version import __version__
from ..calibrate import null_description, separation_advice
from ..errors import ParameterError
from ..fingerprints import PAPER_METHODS, Fingerprint, method_of
from ..models import trust_arch as trust_arch_paths
from ..progress import configure_logging, console
from ..registry import comma_list, parse_settings

# What `verify` exits with, so that scripts tell verdicts apart without parsing the output.
VERDICT_EXIT_CODES = {"match": 0, "no-match": 1, "inconclusive": 3}

app = typer.Typer(
    help="Prove who owns a trained neural network.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
fingerprint_app = typer.Typer(help="Create and inspect fingerprints.", no_args_is_help=True)
zoo_app = typer.Typer(help="Build, list and check zoos of suspect models.", no_args_is_help=True)
gan_app = typer.Typer(help="Train the GAN a generative method draws its queries from.", no_args_is_help=True)
reference_app = typer.Typer(
    help="Reference sets: independent models trained once, reused to calibrate every fingerprint.",
    no_args_is_help=True,
)
model_app = typer.Typer(
    help="Bring your own model: import an nn.Module's weights as a model file.", no_args_is_help=True
)
app.add_typer(fingerprint_app, name="fingerprint")
app.add_typer(zoo_app, name="zoo")
app.add_typer(gan_app, name="gan")
app.add_typer(reference_app, name="reference")
app.add_typer(model_app, name="model")

# Options several commands take, one name and one meaning each.
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (messages stay on stderr).")]
Device = Annotated[str, typer.Option("--device", help="cpu or cuda[:N]: where the models run.")]
OwnerData = Annotated[str, typer.Option("--data", help="The owner's data set (default: the model card's).")]
SplitSeed = Annotated[int, typer.Option("--split-seed", help="Seed of the owner/attacker/test cut.")]
TrainSubset = Annotated[int, typer.Option("--train-subset", help="Keep N class-balanced images of the split (0: all).")]
ReferenceArchs = Annotated[
    list[str],
    typer.Option(
        "--reference-arch", help="NAME or NAME:K=V,... (repeat; default: the source's, cnn, resnet18, vgg11)."
    ),
]
ReferenceEpochs = Annotated[int, typer.Option("--epochs", help="Epochs per reference model (default: the source's).")]
# Training many models (a zoo, a reference set): where they train.
TrainWorkers = Annotated[
    int, typer.Option("--workers", help="Models trained in parallel (default: CPU count; 0 = in process).")
]
TrainBackend = Annotated[str, typer.Option("--backend", help="local (process pool) | ray")]
# How many independent reference models to train: one name wherever a command trains them.
REFERENCE_MODELS = "--reference-models"

# The options of library parameters whose option is not the parameter's name with dashes:
# a method's own settings go in --param K=V.
OPTION_OF_PARAMETER = {
    "trained": "--param trained",
    "gan": "--param gan",
    "method_params": "--param",
    "kind": "--suspect-type",
}


def option_of(parameter: str) -> str:
    """The command-line option of a parameter a library error names (``max_queries`` -> ``--max-queries``)."""
    return OPTION_OF_PARAMETER.get(parameter, "--" + parameter.replace("_", "-"))


ReferenceSet = Annotated[
    Path, typer.Option("--references", metavar="DIR", help="A reference set (modelprint reference build).")
]
Screen = Annotated[
    int,
    typer.Option(
        "--screen",
        metavar="K",
        help="Keep the K queries half of the independent models follow least; the other half fits the null.",
    ),
]
MethodParams = Annotated[list[str], typer.Option("--param", help="METHOD.K=V method parameter (repeat).")]
Methods = Annotated[str, typer.Option("--methods", help="Comma-separated method names (modelprint list).")]
DEFAULT_METHODS = ",".join(PAPER_METHODS)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"modelprint {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    trust_arch: list[str] = typer.Option(
        None,
        "--trust-arch",
        metavar="MODULE:ATTR",
        help=(
            "Import this exact architecture path when a model card names it (your code or a library's "
            "factory; repeat), from installed packages and PYTHONPATH, never the working folder. "
            "Also MODELPRINT_TRUST_ARCH."
        ),
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, warnings and results only."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail in the log (debug lines)."),
) -> None:
    """Prove who owns a trained neural network."""
    trust_arch_paths(*(trust_arch or []))
    if quiet:
        os.environ["MODELPRINT_QUIET"] = "1"
    configure_logging(-1 if quiet else min(verbose, 1))


def seed_or_drawn(seed: int | None, what: str = "seed") -> int:
    """The seed given, or one drawn now (printed, and recorded in what is written)."""
    if seed is not None:
        return seed
    drawn = random.SystemRandom().randrange(2**31)
    console.print(f"{what} {drawn} (drawn; pass --seed {drawn} to repeat this run)")
    return drawn


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """Repeated ``--param K=V`` (or ``--mark``, ``--arch-arg``) options as settings."""
    return parse_settings(items or [], "settings")


def method_params(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``METHOD.K=V`` pairs, grouped by method."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        method, sep, rest = item.partition(".")
        if not sep or "=" in method:
            raise ParameterError(f"--param here is METHOD.K=V, got {item!r}")
        # method names keep their hyphens; setting names take underscores
        out.setdefault(method, {}).update(parse_settings([rest], f"{method}'s settings"))
    return out


def integers(text: str, flag: str) -> tuple[int, ...]:
    """A comma-separated list of integers, or one line naming ``flag``."""
    try:
        return tuple(int(v) for v in comma_list(text))
    except ValueError:
        raise ParameterError(f"{flag} must be comma-separated integers, got {text!r}") from None


def check_fpr(fpr: float) -> None:
    if not 0 < fpr < 1:  # also false for NaN
        raise ParameterError(f"--fpr must be a rate in (0, 1), got {fpr}")


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in comma_list(text))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ParameterError(f"--input-shape must be C,H,W, e.g. 3,32,32; got {text!r}")
    return shape  # type: ignore[return-value]


def parse_floats(text: str | None, channels: int, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in comma_list(text))
    except ValueError:
        values = ()
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ParameterError(f"{flag} takes 1 or {channels} comma-separated numbers, got {text!r}")
    return values


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def result(as_json: bool, record: dict[str, Any], line: str | list[str] | None = None) -> None:
    """A command's result: ``record`` as JSON with --json, else ``line`` (or lines; if any) on
    stdout, control characters in each escaped."""
    if as_json:
        print_json(record)
    elif line is not None:
        for text in [line] if isinstance(line, str) else line:
            sys.stdout.write(printable(text) + "\n")


def print_null(calibrated: Fingerprint, stream: bool = False) -> None:
    """Where the independent models sit and what a match needs at FPR 1e-2 and 1e-3 (or why
    nothing can); on stdout with ``stream`` (a command's result), else on stderr."""
    d = null_description(calibrated)
    ref = d["reference_statistics"]
    reachable = [a for a in (1e-2, 1e-3) if d[f"needed_at_{a:g}"] is not None]
    say = (lambda text: sys.stdout.write(printable(text) + "\n")) if stream else console.print
    say(
        f"null ({d['family']}) from {d['n_models']} independent models: statistic "
        f"{ref['min']:.2f}-{ref['max']:.2f} (mean {ref['mean']:.2f})"
        + ("; a match needs " if reachable else "")
        + ", ".join(f"{d[f'needed_at_{a:g}']:.2f} at FPR {a:g}" for a in reachable)
        + (f"; the smallest p it can give is {d['smallest_p']:.2g}" if d.get("smallest_p") is not None else "")
    )
    # A query set not yet screened can keep the queries the reference models follow least instead.
    screenable = method_of(calibrated).sequential and "screening" not in calibrated.meta
    for a in (1e-2, 1e-3):
        if a not in reachable:
            say(
                f"warning: {unreachable(d, a, calibrated.meta.get('method', ''), len(calibrated) if screenable else 0)}"
            )


def unreachable(description: dict[str, Any], fpr: float, method: str = "this method", screen_from: int = 0) -> str:
    """The plain sentence for an FPR the calibrated null cannot reach, with what would reach it;
    ``screen_from`` (the queries of a screenable fingerprint) adds screening as the other way."""
    more = description.get(f"references_at_{fpr:g}")
    fix = separation_advice(description["reference_statistics"]["mean"], method)
    if fix is None and more:
        fix = f"about {more} reference models scoring like these would reach it ({REFERENCE_MODELS} {more})"
    elif fix is None:
        fix = "no number of reference models scoring like these would: they spread too widely for this FPR"
    if screen_from and fix.startswith(("about", "no number")):
        fix += (
            f"; or screen the queries on the same reference models: create the fingerprint with --n {2 * screen_from}, "
            f"then calibrate with --screen {screen_from}"
        )
    return (
        f"nothing can be called a match at FPR {fpr:g} with {description['n_models']} reference models: "
        f"even a perfect score is not rare enough; {fix}"
    )


def print_screening(fp: Fingerprint) -> None:
    """What reference screening kept, and how often the models that chose the queries followed them."""
    r = fp.meta["screening"]
    console.print(
        f"screened: kept {r['kept']} of {r['candidates']} queries, the ones {len(r['selection_sha256'])} reference "
        f"models follow least (on {r['kept_agreement']:.2f} of them, at most {r['kept_agreement_max']:.2f}; "
        f"{r['candidate_agreement']:.2f} on all candidates); the other reference models fit the null"
    )
