"""Screening in a benchmark: part of the calibration negatives choose the queries, the rest fit
the null, and the ones that chose are scored nowhere."""

import json

import numpy as np
import pytest

from modelprint.bench import run_bench
from modelprint.bench.screening import Screen, parse_screens
from modelprint.errors import ParameterError
from modelprint.fingerprints import Fingerprint, method_of
from modelprint.models import load_model
from modelprint.reference import ReferencePlan, build_reference_set
from modelprint.zoo import ZooManifest
from modelprint.zoo.build import build_zoo

# A source, two copies and twelve independent models (two widths, both halves): enough
# negatives for a calibration half that can be cut again.
SPEC = """
name = "tiny-screen"
data = "digits"
[train]
epochs = 3
lr = 0.05
[[models]]
name = "source"
role = "positive"
category = "source"
arch = "cnn"
args = { width = 8 }
seed = 0
[[models]]
from = ["source"]
category = "prune"
steps = [{ attack = "prune", rate = 0.3 }]
[[models]]
from = ["source"]
category = "finetune"
steps = [{ attack = "finetune", mode = "ftal", epochs = 1 }]
[[models]]
name = "independent"
role = "negative"
category = "independent"
arch = "cnn"
split = "attacker"
variants = [
  { args = { width = 8 }, seed = 101 }, { args = { width = 8 }, seed = 102 }, { args = { width = 8 }, seed = 103 },
  { args = { width = 8 }, seed = 104 }, { args = { width = 8 }, seed = 105 }, { args = { width = 8 }, seed = 106 },
  { args = { width = 4 }, seed = 107 }, { args = { width = 4 }, seed = 108 }, { args = { width = 4 }, seed = 109 },
  { args = { width = 4 }, seed = 110 }, { args = { width = 4 }, seed = 111 }, { args = { width = 4 }, seed = 112 },
]
"""


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    root = tmp_path_factory.mktemp("screen")
    (root / "spec.toml").write_text(SPEC)
    build_zoo(root / "spec.toml", root / "zoo", workers=0, progress=False)
    out = root / "bench"
    screens = {"natural": Screen(keep=20, candidates=120)}
    run_bench(
        root / "zoo",
        ["c", "natural"],
        out,
        n=20,
        budgets=(10,),
        method_params={"c": {"steps": 20}},
        screen=screens,
        combine=["c", "natural"],
        progress=False,
    )
    return root / "zoo", out, json.loads((out / "results.json").read_text())


def test_the_models_that_chose_the_queries_are_scored_nowhere(screened):
    zoo, _, results = screened
    split = results["negative_split"]
    selection = split["selection"]
    negatives = [r["id"] for r in ZooManifest.read(zoo).rows if r["role"] == "negative"]
    assert len(selection) >= 2 and len(split["calibration"]) >= 3
    assert sorted(selection + split["calibration"] + split["evaluation"]) == sorted(negatives)
    assert not set(selection) & {s["id"] for s in results["suspects"]}
    for m in ("c", "natural"):  # every entry lost them, screened or not
        assert results["methods"][m]["calibrated"]["calibration_negatives"] == len(split["calibration"])
    assert results["combined"]["held_out"]["calibration_negatives"] == len(split["calibration"])


def test_the_kept_queries_are_the_ones_the_selection_models_follow_least(screened):
    zoo, out, results = screened
    entry = results["methods"]["natural"]["fingerprint"]
    record = entry["screening"]
    assert (record["candidates"], record["kept"], entry["queries"]) == (120, 20, 20)
    manifest = ZooManifest.read(zoo)
    rows = {r["id"]: r for r in manifest.rows}
    assert record["selection_sha256"] == [rows[i]["sha256"] for i in record["selection"]]
    # recompute the selection models' agreement on every candidate: the kept ones are the lowest
    candidates = Fingerprint.load(next((out / "fingerprints").glob("natural-*[0-9a-f].fp.safetensors")))
    kept = Fingerprint.load(out / entry["file"])
    models = [load_model(manifest.path(rows[i])) for i in record["selection"]]
    rates = np.mean([method_of(candidates).evidence(candidates, m).values for m in models], axis=0)
    chosen = [int(np.flatnonzero((candidates.x == q).all(dim=(1, 2, 3)).numpy())[0]) for q in kept.x]
    assert chosen == sorted(chosen) and len(set(chosen)) == 20
    assert max(rates[chosen]) <= min(np.delete(rates, chosen)) + 1e-12
    assert record["kept_agreement"] == pytest.approx(rates[chosen].mean())
    assert "c" in results["methods"] and "screening" not in results["methods"]["c"]["fingerprint"]


def test_screening_requests_are_checked_before_any_work(reference_zoo, tmp_path):
    with pytest.raises(ParameterError, match="METHOD=KEEP:CANDIDATES"):
        parse_screens(["natural=100"])
    with pytest.raises(ParameterError, match="keeps 1 to 50"):
        Screen(keep=80, candidates=50)
    with pytest.raises(ParameterError, match="not among the methods"):
        run_bench(reference_zoo, ["c"], tmp_path / "a", screen={"natural": Screen(10, 20)}, progress=False)
    with pytest.raises(ParameterError, match="only per-query agreement can be screened"):
        run_bench(
            reference_zoo, ["weight-cosine"], tmp_path / "b", screen={"weight-cosine": Screen(1, 1)}, progress=False
        )
    with pytest.raises(ParameterError, match="at least 5 calibration negatives"):
        run_bench(reference_zoo, ["natural"], tmp_path / "c", n=10, screen={"natural": Screen(5, 10)}, progress=False)


def test_an_owners_reference_set_chooses_the_queries_and_the_calibration_half_stays_whole(screened, tmp_path):
    zoo, _, _ = screened
    manifest = ZooManifest.read(zoo)
    source = load_model(manifest.path(next(r for r in manifest.rows if r["category"] == "source")))
    refs = tmp_path / "refs"
    record = build_reference_set(source, ReferencePlan(4, epochs=2), refs, positives=False, progress=False)
    out = tmp_path / "bench"
    screens = {"natural": Screen(keep=20, candidates=120)}
    results = run_bench(
        zoo, ["natural"], out, n=20, budgets=(10,), screen=screens, screen_references=refs, progress=False
    )
    split = results["negative_split"]
    assert split["selection_from"] == "references"
    assert split["selection"] == ["reference:" + e["file"] for e in record["models"]]
    # no zoo negative chose anything: the calibration half is the one an unscreened bench has
    negatives = [r["id"] for r in manifest.rows if r["role"] == "negative"]
    assert sorted(split["calibration"] + split["evaluation"]) == sorted(negatives)
    assert results["methods"]["natural"]["calibrated"]["calibration_negatives"] == len(split["calibration"])
    screening = results["methods"]["natural"]["fingerprint"]["screening"]
    assert screening["selection_sha256"] == [e["sha256"] for e in record["models"]]
    assert "owner's reference models" in screening["rule"]
    # the kept queries are those the reference models follow least
    candidates = Fingerprint.load(next((out / "fingerprints").glob("natural-*[0-9a-f].fp.safetensors")))
    models = [load_model(refs / e["file"]) for e in record["models"]]
    rates = np.mean([method_of(candidates).evidence(candidates, m).values for m in models], axis=0)
    kept = Fingerprint.load(out / results["methods"]["natural"]["fingerprint"]["file"])
    chosen = [int(np.flatnonzero((candidates.x == q).all(dim=(1, 2, 3)).numpy())[0]) for q in kept.x]
    assert max(rates[chosen]) <= min(np.delete(rates, chosen)) + 1e-12


def test_a_reference_set_of_another_source_cannot_screen(screened, tmp_path):
    zoo, _, _ = screened
    manifest = ZooManifest.read(zoo)
    other = load_model(manifest.path(next(r for r in manifest.rows if r["role"] == "negative")))
    refs = tmp_path / "refs"
    build_reference_set(other, ReferencePlan(4, epochs=1), refs, positives=False, progress=False)
    screens = {"natural": Screen(keep=10, candidates=40)}
    with pytest.raises(ParameterError, match="built for another model"):  # before any work: nothing written
        run_bench(zoo, ["natural"], tmp_path / "b", n=10, screen=screens, screen_references=refs, progress=False)
    assert not (tmp_path / "b").exists()
    with pytest.raises(ParameterError, match="no method to screen"):
        run_bench(zoo, ["natural"], tmp_path / "c", n=10, screen_references=refs, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="reference set record not found"):
        run_bench(zoo, ["natural"], tmp_path / "d", n=10, screen=screens, screen_references=tmp_path / "empty")
