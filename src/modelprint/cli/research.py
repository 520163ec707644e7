"""Commands that compare methods: ``evaluate`` (the paper's protocol), ``bench`` (every suspect
of a zoo), ``null-check``, ``stealth`` and ``report``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._io import atomic_write_text, check_output_path
from ..bench import run_bench
from ..bench.nullcheck import null_check_tables, plot_null_check, run_null_check
from ..bench.report import write_report
from ..bench.screening import parse_screens
from ..bench.tables import leaderboard
from ..data import load_splits
from ..dispute import write_dispute_report
from ..errors import ParameterError
from ..evaluate import evaluate as evaluate_methods
from ..evaluate import print_group_table, print_table, rates_by_group, zoo_suspects
from ..fingerprints import Fingerprint
from ..models import load_model
from ..progress import console
from ..registry import comma_list
from ..stealth import StealthConfig, detection_rates
from .common import (
    DEFAULT_METHODS,
    AsJson,
    Device,
    MethodParams,
    Methods,
    SplitSeed,
    app,
    check_fpr,
    integers,
    method_params,
    print_json,
    result,
)

PruneRates = Annotated[
    str,
    typer.Option(
        "--prune-rates", help="Pruned copies of the source added as positives (default 0.3,0.5,0.7; none with --zoo)."
    ),
]
EvaluateSeed = Annotated[
    int, typer.Option("--seed", help="Seed of the fingerprints and pruned copies (default 0: reruns repeat).")
]


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Source model (or --zoo).")] = None,
    zoo: Annotated[Path, typer.Option("--zoo", help="Zoo folder: its source, positives and negatives.")] = None,
    methods: Methods = DEFAULT_METHODS,
    positives: Annotated[list[Path], typer.Option("--positives", help="Derived models (should match).")] = None,
    negatives: Annotated[list[Path], typer.Option("--negatives", help="Independent models (should not).")] = None,
    prune_rates: PruneRates = None,
    prune_criterion: Annotated[str, typer.Option("--prune-criterion", help="magnitude | random")] = "magnitude",
    prune_repeats: Annotated[int, typer.Option("--prune-repeats", help="Copies per rate (random pruning).")] = 5,
    param: MethodParams = None,
    n: Annotated[int, typer.Option("--n", help="Queries per fingerprint.")] = 100,
    seed: EvaluateSeed = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The paper's protocol: robustness, transferability, uniqueness, AUC, F1 per method."""
    if (model is None) == (zoo is None):
        raise ParameterError("give either a source MODEL with --negatives, or --zoo DIR")
    groups = zoo_suspects(zoo) if zoo is not None else None
    if groups is not None:
        model, positives, negatives = groups.source, groups.positives, groups.negatives
        prune_rates = "" if prune_rates is None else prune_rates
    if not negatives:
        raise ParameterError("evaluate needs negatives: --negatives MODEL... or --zoo DIR")
    prune_rates = "0.3,0.5,0.7" if prune_rates is None else prune_rates
    try:
        rates = [float(r) for r in comma_list(prune_rates)]
    except ValueError:
        raise ParameterError(f"--prune-rates must be comma-separated numbers, got {prune_rates!r}") from None
    settings = {"prune_rates": rates, "prune_repeats": prune_repeats, "prune_criterion": prune_criterion}
    suspects = [load_model(p) for p in positives or []], [load_model(p) for p in negatives]
    settings.update(n=n, seed=seed, method_params=method_params(param))
    results = evaluate_methods(load_model(model), comma_list(methods), *suspects, **settings)
    by_category = groups and rates_by_group(results, groups.positive_categories, groups.negative_categories)
    if as_json:
        print_json(
            {k: v.to_dict() | ({"by_category": by_category[k]} if by_category else {}) for k, v in results.items()}
        )
        return
    print_table(results)
    if by_category:
        print_group_table(by_category, f"mean matching rate by zoo category ({zoo})")


Budgets = Annotated[str, typer.Option("--budgets", help="Query budgets for the sweep (plus the full set).")]
Ablation = Annotated[
    bool,
    typer.Option("--ablation", help="Also run every combination of each method's tricks (for methods that have some)."),
]
Stealth = Annotated[
    bool,
    typer.Option("--stealth", help="Also measure each method's detection rate (detectors trained on the zoo's data)."),
]
Combine = Annotated[
    str, typer.Option("--combine", help="Also the combined verdict (Holm) over these comma-separated methods.")
]
BenchScreen = Annotated[
    list[str],
    typer.Option(
        "--screen",
        metavar="METHOD=K:N",
        help="Screen METHOD: generate N queries, keep the K that half of the calibration negatives follow least "
        "(repeat).",
    ),
]
ScreenReferences = Annotated[
    Path,
    typer.Option(
        "--screen-references",
        metavar="DIR",
        help="Screen with this reference set (built for the zoo's source) instead of half the calibration "
        "negatives: its models choose, the whole calibration half fits the nulls.",
    ),
]
BenchSeed = Annotated[
    int, typer.Option("--seed", help="Seed of every fingerprint and of the negatives' split (recorded).")
]
Workers = Annotated[
    int, typer.Option("--workers", help="Worker processes for querying (0 = in process, fastest on CPU).")
]


@app.command()
def bench(
    zoo: Annotated[Path, typer.Argument(help="Zoo folder (modelprint zoo build).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, report.md, report.html, plots/.")],
    methods: Methods = DEFAULT_METHODS,
    param: MethodParams = None,
    n: Annotated[int, typer.Option("--n", help="Queries per fingerprint.")] = 100,
    budgets: Budgets = "10,20,50,100",
    fpr: Annotated[float, typer.Option("--fpr", help="False-positive rate for the TPR-at-FPR metric.")] = 0.01,
    ablation: Ablation = False,
    stealth: Stealth = False,
    combine: Combine = None,
    screen: BenchScreen = None,
    screen_references: ScreenReferences = None,
    seed: BenchSeed = 0,
    workers: Workers = 0,
    backend: Annotated[str, typer.Option("--backend", help="local | ray")] = "local",
    device: Device = "cpu",
    as_json: AsJson = False,
) -> None:
    """Benchmark methods on every suspect of a zoo; writes results.json and the report."""
    check_output_path(out, "benchmark", folder=True)
    check_fpr(fpr)
    budget_list = integers(budgets, "--budgets")
    chosen = comma_list(methods)
    settings = {"n": n, "seed": seed, "budgets": budget_list, "fpr": fpr, "ablation": ablation, "stealth": stealth}
    settings.update(workers=workers, backend=backend, device=device, combine=comma_list(combine) if combine else None)
    settings.update(screen=parse_screens(screen or []), screen_references=screen_references)
    run_bench(zoo, chosen, out, method_params=method_params(param), **settings)
    md, html_path = write_report(out)
    results = json.loads((out / "results.json").read_text())
    if not as_json:  # the leaderboard where the user is looking, then where the rest is
        _print_leaderboard(results)
    console.print(f"report: {html_path} (and {md.name})")
    aruc = {m: r["metrics"]["aruc"] for m, r in results["methods"].items()}
    result(as_json, {"report": str(html_path), "results": str(out / "results.json"), "aruc": aruc}, str(html_path))


def _print_leaderboard(results: dict[str, Any]) -> None:
    board = leaderboard(results)
    table = Table(title=board.title, title_justify="left")
    for column in board.header:
        table.add_column(column)
    for row in board.shown():
        table.add_row(*map(escape, row))
    Console().print(table)


Draws = Annotated[
    str,
    typer.Option(
        "--draws",
        help="references: calibration sets shaped like modelprint's reference sets (a third of the source's "
        "architecture, all on the owner's half); uniform: any N null models.",
    ),
]


@app.command("null-check")
def null_check(
    null_zoo: Annotated[Path, typer.Argument(help="A zoo of independent models only (e.g. zoo build null-fmnist).")],
    bench_dir: Annotated[
        Path, typer.Option("--bench", help="A finished bench folder: its fingerprints and positives.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for null_check.json, null_check.md and the plots.")],
    sizes: Annotated[str, typer.Option("--sizes", help="Calibration sizes N (comma-separated).")] = "5,10,20,40",
    repeats: Annotated[int, typer.Option("--repeats", help="Random calibration draws per size.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration draws (default 0).")] = 0,
    draws: Draws = "references",
    as_json: AsJson = False,
) -> None:
    """Check each method's null on independent models it was not calibrated on: observed vs nominal FPR."""
    check_output_path(out, "null check", folder=True)
    size_list = integers(sizes, "--sizes")
    record = run_null_check(null_zoo, bench_dir, out, sizes=size_list, repeats=repeats, seed=seed, draws=draws)
    atomic_write_text(out / "null_check.md", "# Null check\n\n" + null_check_tables(record))
    plots = plot_null_check(record, out)
    console.print(f"wrote {out / 'null_check.md'}, {', '.join(p.name for p in plots)}")
    result(as_json, record, str(out / "null_check.json"))


@app.command()
def stealth(
    inputs: Annotated[list[Path], typer.Argument(metavar="FP_OR_BENCH...", help="Fingerprint files or bench folders.")],
    model: Annotated[
        Path, typer.Option("--model", help="The model the attacker holds (FGSM examples are made on it).")
    ],
    data: Annotated[str, typer.Option("--data", help="The attacker's data set (default: the model card's).")] = None,
    split_seed: SplitSeed = 0,
    clean: Annotated[int, typer.Option("--clean", help="Clean images from the attacker's split.")] = 5000,
    seeds: Annotated[
        int, typer.Option("--seeds", help="Detectors trained with seeds 0..N-1; the rate is their mean.")
    ] = 3,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Detection rate of fingerprint queries under a detector trained on clean vs noise/FGSM images."""
    files: dict[str, Path] = {}
    for p in inputs:
        found = sorted((p / "fingerprints").glob("*.fp.safetensors")) if p.is_dir() else [p]
        if p.is_dir() and not found:
            raise ParameterError(f"{p} has no fingerprints/*.fp.safetensors (a `modelprint bench` folder has)")
        files.update({f.name.removesuffix(".fp.safetensors"): f for f in found})
    holder = load_model(model)
    splits = load_splits(data or holder.card.dataset, split_seed=split_seed)
    queries = {name: Fingerprint.load(f).x for name, f in files.items()}
    config = StealthConfig(clean=clean, seeds=tuple(range(seeds)))
    rates = detection_rates(queries, splits.attacker, holder=holder, test=splits.test, config=config)
    if as_json:
        print_json(rates)
        return
    for name, r in rates["methods"].items():
        sys.stdout.write(f"{name}\t{r['mean']:.3f}\t(per seed {', '.join(f'{v:.3f}' for v in r['per_seed'])})\n")
    alarm = rates["false_alarm"]
    console.print(f"false alarms on clean test images: {alarm['mean']:.3f}" if alarm else "no test images")


@app.command()
def report(
    root: Annotated[
        Path | None, typer.Argument(metavar="[DIR]", help="Benchmark folder with results.json (without --record).")
    ] = None,
    record: Annotated[
        list[Path] | None,
        typer.Option(
            "--record", metavar="RECORD", help="A verification record: write a dispute report (repeat to compare)."
        ),
    ] = None,
    fingerprint: Annotated[
        Path | None, typer.Option("--fingerprint", metavar="FP", help="With --record: the fingerprint file it names.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="With --record: the report's folder (default: RECORD-report beside it)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Regenerate a benchmark's report.md, report.html, CSV tables and plots from results.json; or,
    with --record, audit verification records and write a one-page dispute report (exit 1 when a
    record does not reproduce)."""
    if record:
        _dispute_report(record, fingerprint, out, root, as_json)
        return
    if root is None or fingerprint or out:
        raise ParameterError("give a benchmark folder DIR, or --record RECORD --fingerprint FP [--out DIR]")
    md, html_path = write_report(root)
    result(as_json, {"report": str(html_path), "markdown": str(md)}, [str(html_path), str(md)])


def _dispute_report(
    records: list[Path], fingerprint: Path | None, out: Path | None, root: Path | None, as_json: bool
) -> None:
    if root is not None:
        raise ParameterError(f"with --record the report goes to --out, not to a benchmark folder ({root})")
    if fingerprint is None:
        raise ParameterError("a dispute report needs the fingerprint the records name: add --fingerprint FP")
    out = out or records[0].with_name(records[0].stem + "-report")
    made = write_dispute_report(records, fingerprint, check_output_path(out, "report", folder=True))
    lines = [str(made.html), str(made.markdown)]
    for path, differences in made.differences.items():
        lines += [f"{path} does not reproduce:", *(f"  {d}" for d in differences)]
    record_out = {"report": str(made.html), "markdown": str(made.markdown), "reproduced": made.reproduced}
    result(as_json, record_out | {"differences": made.differences}, lines)
    raise typer.Exit(0 if made.reproduced else 1)
