"""The null check: every method's null, fitted on N null models, scored on the others."""

import json

import numpy as np
import pytest

from modelprint.bench import run_bench
from modelprint.bench.nullcheck import ALPHAS, null_check_tables, plot_null_check, run_null_check

from ..cli_run import run

PARAMS = {"c": {"steps": 30}, "ltrc": {"steps": 30, "k": 2}}

NULL_SPEC = """
name = "tiny-null"
data = "digits"
[train]
epochs = 3
lr = 0.05
[[models]]
name = "independent"
role = "negative"
category = "independent"
variants = [
  { arch = "cnn", args = { width = 4 }, split = "owner", seed = 100, subset = 300 },
  { arch = "cnn", args = { width = 4 }, split = "owner", seed = 101, subset = 400 },
  { arch = "cnn", args = { width = 8 }, split = "attacker", seed = 102 },
  { arch = "cnn", args = { width = 8 }, split = "attacker", seed = 103, subset = 300 },
  { arch = "cnn", args = { width = 4 }, split = "attacker", seed = 104 },
  { arch = "cnn", args = { width = 8 }, split = "owner", seed = 105, subset = 500 },
  { arch = "cnn", args = { width = 4 }, split = "owner", seed = 106 },
  { arch = "cnn", args = { width = 8 }, split = "attacker", seed = 107, subset = 400 },
]
"""


@pytest.fixture(scope="module")
def null_zoo(tmp_path_factory):
    from modelprint.zoo.build import build_zoo

    root = tmp_path_factory.mktemp("null")
    (root / "null.toml").write_text(NULL_SPEC)
    build_zoo(root / "null.toml", root / "zoo", workers=0, progress=False)
    return root / "zoo"


@pytest.fixture(scope="module")
def checked(reference_zoo, null_zoo, tmp_path_factory):
    bench = tmp_path_factory.mktemp("nb")
    run_bench(reference_zoo, ["c", "ltrc"], bench, n=20, method_params=PARAMS, workers=0, progress=False)
    out = tmp_path_factory.mktemp("nc")
    return run_null_check(null_zoo, bench, out, sizes=(3, 5), repeats=4, progress=False), bench, out


def test_every_method_and_size_counts_false_matches_on_models_it_did_not_calibrate_on(checked, null_zoo):
    record, _, out = checked
    assert record["null_models"] == 8 and record["categories"] == {"independent": 8}
    assert json.loads((out / "null_check.json").read_text()) == record
    for m in ("c", "ltrc"):
        entry = record["methods"][m]
        assert entry["null_family"] == "counts" and entry["items"] == 20
        for size in ("3", "5"):
            s = entry["sizes"][size]
            assert s["held_out"] == 8 - int(size) and s["repeats"] == 4
            assert set(s["alphas"]) == {f"{a:g}" for a in ALPHAS}
            for v in s["alphas"].values():
                assert len(v["false_matches"]) == 4 and all(0 <= k <= s["held_out"] for k in v["false_matches"])
                assert v["observed_fpr"] == pytest.approx(sum(v["false_matches"]) / (4 * s["held_out"]))
                assert 0 <= v["tpr"] <= 1
            # a larger alpha never calls fewer models a match
            counts = [sum(s["alphas"][f"{a:g}"]["false_matches"]) for a in ALPHAS]
            assert counts == sorted(counts)


def test_subsets_train_on_fewer_images_and_are_recorded(null_zoo):
    from modelprint.zoo import ZooManifest

    rows = {r["id"]: r for r in ZooManifest.read(null_zoo).rows}
    small = rows["cnn[width=4](owner,s100,n300)"]
    assert small["recipe"][0]["subset"] == 300
    assert "subset" not in rows["cnn[width=8](attacker,s102)"]["recipe"][0]


def test_tables_plots_and_cli(checked, null_zoo, tmp_path, capsys):
    record, bench, _ = checked
    table = null_check_tables(record)
    assert "| c | counts | 3 | 5 |" in table and "| ltrc | counts | 5 | 3 |" in table
    paths = plot_null_check(record, tmp_path)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    code, out, err = run(["null-check", str(null_zoo), "--bench", str(bench), "--out", str(tmp_path / "cli"),
                          "--sizes", "3", "--repeats", "2", "--draws", "uniform"], capsys)  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "cli" / "null_check.md").read_text().startswith("# Null check")
    code, out, err = run(["null-check", str(bench), "--bench", str(bench), "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "not a zoo" in err
    code, out, err = run(["null-check", str(null_zoo), "--bench", str(bench), "--out", str(tmp_path / "bad2"),
                          "--draws", "some"], capsys)  # fmt: skip
    assert code == 2 and "draws must be one of uniform, references" in err
    assert np.isfinite(record["seconds"]["total"])


def test_a_draw_a_method_cannot_fit_calls_nothing_a_match_and_is_counted():
    """A family that needs references of a kind (weight cosine: the source's architecture)
    refuses draws without enough of them; the check counts those draws instead of failing."""
    from modelprint.bench.nullcheck import check_method
    from modelprint.errors import CalibrationError
    from modelprint.null import NormalNull

    class NeedsThreeAlike:
        def fit_null(self, fp, evidence, statistics):
            alike = [i for i, v in enumerate(evidence) if v[0] != 0]
            if len(alike) < 3:
                raise CalibrationError("too few alike")
            return NormalNull.fit([evidence[i] for i in alike], [statistics[i] for i in alike])

    stats = [0.0] * 8 + [0.01, 0.02, -0.01, 0.015]  # 4 of 12 comparable models
    negatives = {"values": [np.array([s]) for s in stats], "statistics": stats}
    positives = ([np.array([0.9])], [0.9])
    out = check_method(NeedsThreeAlike(), None, negatives, positives, sizes=(7,), repeats=30, seed=0)["7"]
    assert 0 < out["draws_without_null"] < 30
    for v in out["alphas"].values():
        assert len(v["false_matches"]) == 30 and sum(k == 0 for k in v["false_matches"]) >= out["draws_without_null"]
    assert out["alphas"]["0.01"]["tpr"] <= 1 - out["draws_without_null"] / 30 + 1e-12


def test_reference_shaped_draws_mirror_the_reference_plan_own_other_and_students_of_the_owners_half():
    import random

    from modelprint.bench.nullcheck import reference_draw
    from modelprint.errors import ParameterError
    from modelprint.reference import reference_kinds

    own, other_arch, other_width = (
        ("cnn", {"width": 16}, "owner"),
        ("vgg11", {}, "owner"),
        ("cnn", {"width": 8}, "owner"),
    )
    student, attacker_student = ("cnn", {"width": 16}, "owner"), ("cnn", {"width": 16}, "attacker")
    scratch = [own] * 6 + [other_arch] * 6 + [other_width] * 6 + [("cnn", {"width": 16}, "attacker")] * 6 + [None] * 12
    students = [None] * 24 + [student] * 5 + [attacker_student] * 5 + [("vgg11", {}, "owner")] * 2
    draw = reference_draw({"scratch": scratch, "students": students}, "cnn", {"width": 16})
    rng = random.Random(0)
    for size in (3, 7, 10):
        picked = draw(rng, size)
        kinds = reference_kinds(size)
        assert len(picked) == size
        assert sum(scratch[i] == own for i in picked) == kinds.count("own")
        assert sum(scratch[i] in (other_arch, other_width) for i in picked) == kinds.count("other")
        assert sum(students[i] == student for i in picked) == kinds.count("student")  # none of the attacker's half
    with pytest.raises(ParameterError, match="6 own \\(needs 7\\), 5 student \\(needs 6\\)"):
        draw(rng, 19)
