"""``modelprint bench null-check``: does each method's null hold its false-positive rate on
independent models nobody calibrated on?

1. Every fingerprint of a finished benchmark (its ``results.json`` and cached fingerprint
   files) is asked of every model of a *null zoo*: independent models only (e.g. the built-in
   ``null-fmnist`` spec), each shown to the method as calibration would show it
   (:meth:`~modelprint.fingerprints.FingerprintMethod.reference_model`).
2. For each calibration size N and each of ``repeats`` seeded random draws, the method's null
   is fitted on N of the null models (:meth:`~modelprint.fingerprints.FingerprintMethod.fit_null`)
   and every *other* null model is called: a p-value below alpha is a false match. Draws are
   ``uniform`` over the null zoo, or shaped like the reference sets modelprint trains
   (``references``, :func:`modelprint.reference.reference_plan`): about a third each of the
   source's architecture and others, trained from scratch on the owner's half, and students
   in the source's architecture of such models.
3. Per method and N: false matches at each nominal alpha, pooled over the draws, with the
   95 % Clopper-Pearson interval of one draw's rate and of the pooled rate (the draws share
   models, so the pooled interval is narrower than the evidence; read one draw's for a
   claim), the smallest p each null could give, and the power at the same settings: the
   share of the benchmark's positives the same nulls call a match.

Positives come from the benchmark's ``results.json`` (each suspect's statistic): every
registered null needs only the statistic and the number of items to give a p-value.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from .._lazy import pyplot
from .._version import __version__
from ..errors import CalibrationError, ParameterError
from ..fingerprints import Fingerprint, method_of
from ..models import load_model
from ..models.attachments import split_attachments
from ..null import clopper_pearson
from ..progress import progress_bar
from ..reference import reference_kinds
from ..zoo import ZooManifest

NULL_CHECK = "null_check.json"
DRAWS = ("uniform", "references")
SIZES = (5, 10, 20, 40)
ALPHAS = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)


def bench_fingerprints(bench: Path) -> tuple[dict[str, Any], dict[str, Fingerprint]]:
    path = bench / "results.json"
    if not path.is_file():
        raise ParameterError(f"{bench} holds no results.json: run `modelprint bench` there first")
    results = json.loads(path.read_text("utf-8"))
    fps = {}
    for m, entry in results["methods"].items():
        file = bench / entry["fingerprint"].get("file", "")
        if not file.is_file():
            raise ParameterError(f"{bench}: the fingerprint of {m} ({file.name}) is missing; rerun `modelprint bench`")
        fps[m] = Fingerprint.load(file)
    return results, fps


def null_evidence(null_zoo: str | Path, fps: dict[str, Fingerprint], *, progress: bool = True) -> dict[str, Any]:
    """``{method: {"values": [...], "statistics": [...]}}`` over the null zoo's models, in manifest order."""
    manifest = ZooManifest.read(null_zoo)
    rows = manifest.select()
    if any(r["role"] != "negative" for r in rows):
        raise ParameterError(f"{null_zoo} holds positives: a null zoo is independent models only")
    methods = {m: method_of(fp) for m, fp in fps.items()}
    scratch = {
        r["id"]: (r["arch"], r["recipe"][0].get("args", {}), r["recipe"][0].get("split"))
        for r in rows
        if not r.get("parent")
    }
    out: dict[str, Any] = {m: {"values": [], "statistics": []} for m in fps}
    with progress_bar(len(rows), "query null models", progress) as bar:
        for i, r in enumerate(rows):
            model = load_model(manifest.path(r))
            for m, fp in fps.items():
                seen = methods[m].reference_model(fp, model, seed=10_000 + i)
                values = methods[m].evidence(fp, seen).values
                out[m]["values"].append(values)
                out[m]["statistics"].append(methods[m].statistic(values))
            bar.update(1)
    return {
        "ids": [r["id"] for r in rows],
        "categories": [r["category"] for r in rows],
        # what a reference-shaped draw needs: (architecture, arguments, split) of a model trained from
        # scratch, and (architecture, arguments, the teacher's split) of a student of one
        "scratch": [scratch.get(r["id"]) for r in rows],
        "students": [_student(r, scratch) for r in rows],
        "methods": out,
    }


Draw = Callable[[random.Random, int], set[int]]


def uniform_draw(total: int) -> Draw:
    """N of the ``total`` null models, uniformly at random."""
    return lambda rng, size: set(rng.sample(range(total), size))


def _student(row: dict[str, Any], scratch: dict[str, tuple]) -> tuple | None:
    """(architecture, arguments, the teacher's split) of a student distilled from a model trained
    from scratch; None for any other model."""
    step = row["recipe"][-1] if row.get("recipe") else {}
    teacher = scratch.get(row.get("parent") or "")
    if step.get("attack") != "distill" or teacher is None:
        return None
    return (row["arch"], step.get("arch_args", {}), teacher[2])


def owner_pools(evidence: dict[str, Any], arch: str, args: dict[str, Any]) -> dict[str, list[int]]:
    """What a reference set is drawn from, by kind (:func:`~modelprint.reference.reference_kinds`):
    the null models trained from scratch on the owner's half in the source's architecture
    (``own``) and in every other (``other``), and students in the source's architecture of
    teachers trained on the owner's half (``student``)."""
    pools: dict[str, list[int]] = {"own": [], "other": [], "student": []}
    for i, (s, t) in enumerate(zip(evidence["scratch"], evidence["students"])):
        if s and s[2] == "owner":
            pools["own" if (s[0], s[1]) == (arch, args) else "other"].append(i)
        elif t and t[2] == "owner" and (t[0], t[1]) == (arch, args):
            pools["student"].append(i)
    return pools


def reference_draw(evidence: dict[str, Any], arch: str, args: dict[str, Any]) -> Draw:
    """N null models shaped like the reference set modelprint trains: as many of each kind as
    :func:`~modelprint.reference.reference_kinds` gives for N (about a third each of the source's
    architecture and others, trained from scratch on the owner's half, and students)."""
    pools = owner_pools(evidence, arch, args)

    def draw(rng: random.Random, size: int) -> set[int]:
        kinds = reference_kinds(size)
        short = {k: kinds.count(k) for k in pools if kinds.count(k) > len(pools[k])}
        if short:
            raise ParameterError(
                f"the null zoo holds too few models for reference-shaped draws of {size} with a {arch} {args} "
                "source: " + ", ".join(f"{len(pools[k])} {k} (needs {n})" for k, n in short.items())
            )
        return set().union(*(rng.sample(pools[k], kinds.count(k)) for k in pools))

    return draw


def _positive_evidence(results: dict[str, Any], m: str, items: int, family: str) -> tuple[list, list[float]]:
    """The benchmark's positives as evidence a null can score: their statistic, over ``items``
    0/1 items for counts and keys (the number of ones is statistic x items), else alone."""
    stats_ = [s["rates"][m] for s in results["suspects"] if s["role"] == "positive" and s["id"] != results["source"]]
    if family not in ("counts", "keys"):
        return [np.array([s]) for s in stats_], stats_
    return [np.r_[np.ones(round(s * items)), np.zeros(items - round(s * items))] for s in stats_], stats_


def check_method(
    method: Any,
    fp: Fingerprint,
    negatives: dict[str, list],
    positives: tuple[list, list],
    *,
    sizes: tuple[int, ...],
    repeats: int,
    seed: int,
    draw: Draw | None = None,
) -> dict[str, Any]:
    """Step 2-3 for one method: per N, false matches among the held-out null models and TPR;
    ``draw`` picks each calibration set (default: uniform)."""
    values, statistics = negatives["values"], negatives["statistics"]
    total = len(values)
    draw = draw or uniform_draw(total)
    out: dict[str, Any] = {}
    for size in sizes:
        if size + 1 > total:
            continue
        rng = random.Random(f"{seed}/{size}")
        false = {a: [] for a in ALPHAS}
        tpr = {a: [] for a in ALPHAS}
        smallest = []
        held, unfitted = total - size, 0
        for _ in range(repeats):
            calib = draw(rng, size)
            rest = [i for i in range(total) if i not in calib]
            try:
                null = method.fit_null(fp, [values[i] for i in sorted(calib)], [statistics[i] for i in sorted(calib)])
            except CalibrationError:  # e.g. too few references a family can use: no null, so no match either
                unfitted += 1
                for a in ALPHAS:
                    false[a].append(0)
                    tpr[a].append(0.0)
                continue
            p_neg = null.p_values([values[i] for i in rest], [statistics[i] for i in rest])
            p_pos = null.p_values(*positives)
            smallest.append(null.smallest_p())
            for a in ALPHAS:
                false[a].append(int(np.sum(p_neg < a)))
                tpr[a].append(float(np.mean(p_pos < a)) if len(p_pos) else 0.0)
        out[str(size)] = {
            "held_out": held,
            "repeats": repeats,
            "draws_without_null": unfitted,
            "smallest_p": {"median": float(np.median([s for s in smallest if s is not None] or [np.nan]))},
            "alphas": {f"{a:g}": _rates(false[a], held, a) | {"tpr": float(np.mean(tpr[a]))} for a in ALPHAS},
        }
    return out


def _rates(false: list[int], held: int, alpha: float) -> dict[str, Any]:
    pooled, trials = sum(false), held * len(false)
    one_lo, one_hi = clopper_pearson(false[0], held, 0.95)
    lo, hi = clopper_pearson(pooled, trials, 0.95)
    return {
        "false_matches": false,
        "observed_fpr": pooled / trials,
        "first_draw_interval": [one_lo, one_hi],
        "pooled_interval": [lo, hi],
        "nominal_inside_first_draw": bool(one_lo <= alpha <= one_hi),
        "at_or_below_nominal": bool(lo <= alpha),
    }


def run_null_check(
    null_zoo: str | Path,
    bench: str | Path,
    out: str | Path,
    *,
    sizes: tuple[int, ...] = SIZES,
    repeats: int = 20,
    seed: int = 0,
    draws: str = "uniform",
    progress: bool = True,
) -> dict[str, Any]:
    """Check every method of the benchmark in ``bench`` on the null zoo; writes ``out/null_check.json``."""
    if repeats < 1 or not sizes or min(sizes) < 3:
        raise ParameterError("give at least one repeat and calibration sizes of 3 or more")
    if draws not in DRAWS:
        raise ParameterError(f"draws must be one of {', '.join(DRAWS)}, got {draws!r}")
    bench, out = Path(bench), Path(out)
    results, fps = bench_fingerprints(bench)
    started = time.perf_counter()
    evidence = null_evidence(null_zoo, fps, progress=progress)
    querying = time.perf_counter() - started
    per_method = {}
    for m, fp in fps.items():
        method = method_of(fp)
        draw = None
        if draws == "references":
            arch, args = fp.meta.get("source_arch"), split_attachments(dict(fp.meta.get("source_arch_args") or {}))[0]
            draw = reference_draw(evidence, str(arch), args)
        items = method.items(fp)
        positives = _positive_evidence(results, m, items, method.null_family)
        per_method[m] = {
            "null_family": method.null_family,
            "items": items,
            "sizes": check_method(
                method, fp, evidence["methods"][m], positives, sizes=sizes, repeats=repeats, seed=seed, draw=draw
            ),
        }
    record = {
        "modelprint": __version__,
        "null_zoo": str(Path(null_zoo).resolve()),
        "bench": str(bench.resolve()),
        "null_models": len(evidence["ids"]),
        "categories": {c: evidence["categories"].count(c) for c in dict.fromkeys(evidence["categories"])},
        "positives": sum(1 for s in results["suspects"] if s["role"] == "positive" and s["id"] != results["source"]),
        "sizes": list(sizes),
        "repeats": repeats,
        "seed": seed,
        "draws": draws,
        "alphas": [f"{a:g}" for a in ALPHAS],
        "seconds": {"querying": round(querying, 2), "total": round(time.perf_counter() - started, 2)},
        "methods": per_method,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / NULL_CHECK, json.dumps(record, indent=2) + "\n")
    return record


def _draws_text(draws: str) -> str:
    if draws == "references":
        return (
            "shaped like a reference set: thirds of the source's architecture and others from scratch on the "
            "owner's half, and students of such models"
        )
    return "uniform over the null zoo"


def null_check_tables(record: dict[str, Any]) -> str:
    """Markdown: per method and N, false matches at 1e-2 and 1e-3 and the power there."""
    lines = [
        f"{record['null_models']} null models ({', '.join(f'{n} {c}' for c, n in record['categories'].items())}); "
        f"{record['repeats']} random calibration draws per size ({_draws_text(record.get('draws', 'uniform'))}); "
        "each draw scores every null model it did not calibrate on. Intervals: 95 % Clopper-Pearson of the "
        "first draw's rate. A draw a method can fit no null on (too few references it can use) calls nothing "
        "a match and counts 0 towards TPR.",
        "",
        "| method | null | N | held out | smallest p (median) | false matches at 1e-2 (first draw; pooled rate) "
        "| interval | TPR at 1e-2 | false matches at 1e-3 (first draw; pooled rate) | interval | TPR at 1e-3 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, entry in record["methods"].items():
        for size, s in entry["sizes"].items():
            cells = []
            for a in ("0.01", "0.001"):
                v = s["alphas"][a]
                lo, hi = v["first_draw_interval"]
                cells += [
                    f"{v['false_matches'][0]}; {v['observed_fpr']:.4f}",
                    f"[{lo:.4f}, {hi:.4f}]",
                    f"{v['tpr']:.2f}",
                ]
            smallest = s["smallest_p"]["median"]
            unfitted = s.get("draws_without_null", 0)
            n = f"{size} ({unfitted} draws: no null)" if unfitted else size
            lines.append(
                f"| {m} | {entry['null_family']} | {n} | {s['held_out']} | {smallest:.2g} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def plot_null_check(record: dict[str, Any], out: Path) -> list[Path]:
    """calibration.png (observed vs nominal FPR, one panel per N) and power.png (TPR vs N)."""
    plt = pyplot()
    sizes = [str(s) for s in record["sizes"]]
    alphas = [float(a) for a in record["alphas"]]
    colours = plt.get_cmap("tab20").colors
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 4), sharey=True, squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for i, (m, entry) in enumerate(record["methods"].items()):
            if size in entry["sizes"]:
                rates = [max(entry["sizes"][size]["alphas"][f"{a:g}"]["observed_fpr"], 1e-4) for a in alphas]
                ax.plot(alphas, rates, marker="o", ms=3, color=colours[i % 20], label=m)
        ax.plot(alphas, alphas, "k--", lw=1, label="nominal")
        ax.set(xscale="log", yscale="log", title=f"calibrated on N = {size}", xlabel="nominal FPR")
    axes[0][0].set_ylabel("observed FPR on held-out null models (0 drawn at 1e-4)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    paths = [out / "calibration.png", out / "power.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, a in zip(axes, ("0.01", "0.001")):
        for i, (m, entry) in enumerate(record["methods"].items()):
            xs = [int(s) for s in sizes if s in entry["sizes"]]
            ax.plot(
                xs,
                [entry["sizes"][str(x)]["alphas"][a]["tpr"] for x in xs],
                marker="o",
                ms=3,
                color=colours[i % 20],
                label=m,
            )
        ax.set(xscale="log", title=f"TPR on the benchmark's positives at FPR {a}", xlabel="reference models N")
        ax.set_xticks([int(s) for s in sizes], sizes)
    axes[0].set_ylabel("share called a match")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
