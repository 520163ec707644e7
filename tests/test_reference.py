"""Reference sets: trained once, checked when loaded, reused by calibrate and create."""

import json
import shutil
import tomllib

import pytest
from cli_run import run
from hypothesis import given
from hypothesis import strategies as st

from modelprint.models import load_model, save_model, weights_digest


def fresh_args(path):
    return load_model(path).card.arch_args


@pytest.fixture()
def owner(fresh, tmp_path, capsys):
    src = save_model(fresh, tmp_path / "owner")
    refs = tmp_path / "refs"
    code, out, err = run(["reference", "build", str(src), "--reference-models", "3", "--reference-arch", "cnn:width=4",
                          "--epochs", "1", "--workers", "0", "--out", str(refs)], capsys)  # fmt: skip
    assert code == 0, err
    return src, refs


def test_one_reference_set_calibrates_every_fingerprint_without_training_again(owner, tmp_path, capsys):
    src, refs = owner
    record = json.loads((refs / "reference.json").read_text())
    shas = [m["sha256"] for m in record["models"]]
    assert len(shas) == 3 and len(set(shas)) == 3 and record["dataset"] == "digits"
    # the hardest negatives first: the source's own architecture on the owner's data, another seed
    first = record["models"][0]
    assert first["arch"] == "cnn" and first["arch_args"] == fresh_args(src) and first["seed"] != 0
    # then another architecture, then the source's architecture distilled from that one: an innocent extraction
    other, student = record["models"][1:]
    assert other["arch_args"] == {"width": 4} and "distilled_from" not in other
    assert student["distilled_from"] == 1 and student["arch_args"] == fresh_args(src)
    lineage = load_model(refs / student["file"]).card.lineage
    assert lineage[-1]["recipe"]["attack"] == "distill" and lineage[-1]["parent_sha256"] == other["sha256"]
    assert [p["derived"] for p in record["positives"]] == ["prune30", "prune60", "finetune", "prune60-finetune"]
    files_before = sorted(p.name for p in refs.rglob("*"))
    args = ["fingerprint", "create", str(src), "--param", "steps=20", "--n", "10", "--seed", "0"]
    code, out, err = run([*args, "--method", "c", "--references", str(refs), "--out", str(tmp_path / "c.fp")], capsys)
    assert code == 0, err
    assert "null (beta-binomial) from 3 independent models" in " ".join(err.split())
    code, out, err = run([*args, "--method", "ltrc", "--out", str(tmp_path / "l.fp")], capsys)
    assert code == 0 and "until then verify can only say inconclusive" in " ".join(err.split())
    code, out, err = run(["fingerprint", "calibrate", str(tmp_path / "l.fp"), "--references", str(refs),
                          "--out", str(tmp_path / "l.fp")], capsys)  # fmt: skip
    assert code == 0, err
    for name in ("c.fp", "l.fp"):
        code, out, _ = run(["fingerprint", "show", str(tmp_path / name), "--json"], capsys)
        meta = json.loads(out)
        null = meta["null"]
        assert code == 0 and null["sha256"] == shas and "reference set refs" in null["source"]
        assert len(meta["positives"]["statistics"]) == 4  # where copies agree: sequential's prior
    assert sorted(p.name for p in refs.rglob("*")) == files_before  # nothing trained or written again
    code, out, _ = run(["verify", str(tmp_path / "c.fp"), str(src), "--fpr", "0.05", "--json"], capsys)
    assert json.loads(out)["null"]["calibrated"] and code in (0, 3)


def test_a_changed_or_misplaced_reference_model_is_refused(owner, tmp_path, capsys):
    src, refs = owner
    code, _, err = run(["reference", "build", str(src), "--reference-models", "3", "--out", str(refs)], capsys)
    assert code == 2 and "already holds a reference set" in err
    args = ["fingerprint", "create", str(src), "--method", "c", "--param", "steps=5", "--n", "4", "--seed", "0"]
    assert run([*args, "--out", str(tmp_path / "c.fp")], capsys)[0] == 0
    calibrate = ["fingerprint", "calibrate", str(tmp_path / "c.fp"), "--references", str(refs), "--out",
                 str(tmp_path / "x.fp")]  # fmt: skip
    record = json.loads((refs / "reference.json").read_text())
    first, second = (refs / m["file"] for m in record["models"][:2])
    for suffix in (".safetensors", ".json"):  # a consistent model file, but not the one recorded
        shutil.copy(second.with_suffix(suffix), first.with_suffix(suffix))
    code, _, err = run(calibrate, capsys)
    assert code == 2 and "has changed since the reference set was built" in err and len(err.splitlines()) == 1
    record["models"][0]["file"] = "../owner.safetensors"
    (refs / "reference.json").write_text(json.dumps(record))
    code, _, err = run(calibrate, capsys)
    assert code == 2 and "outside the set" in err
    (refs / "reference.json").write_text("{not json")
    code, _, err = run(calibrate, capsys)
    assert code == 2 and "not a readable reference set record" in err
    assert not (tmp_path / "x.fp").exists()


SMALL = {"positives": False, "progress": False}


def small_plan(n=3):
    from modelprint.reference import ReferencePlan

    return ReferencePlan(n, archs=[("cnn", {"width": 4})], epochs=1)


def _shas(record):
    return [m["sha256"] for m in record["models"]]


def test_a_reference_set_is_a_zoo_with_the_same_bytes_on_any_number_of_workers_or_none(fresh, tmp_path):
    from modelprint.reference import build_reference_set
    from modelprint.zoo import ZooManifest

    settings = {**SMALL, "positives": True}  # the owner's copies too, made in a process of their own
    one = build_reference_set(fresh, small_plan(), tmp_path / "one", workers=1, **settings)
    two = build_reference_set(fresh, small_plan(), tmp_path / "two", workers=2, **settings)
    inline = build_reference_set(fresh, small_plan(), tmp_path / "inline", workers=0, **settings)
    assert one["models"] == two["models"] == inline["models"] and len(set(_shas(one))) == 3
    assert one["positives"] == two["positives"] == inline["positives"] and len(one["positives"]) == 4
    rows = ZooManifest.read(tmp_path / "two").rows
    assert [r["category"] for r in rows] == ["reference-own", "reference-other", "reference-student"]
    assert [r["sha256"] for r in rows] == _shas(two) and {r["role"] for r in rows} == {"negative"}
    assert rows[2]["parent"] == rows[1]["id"] and rows[2]["recipe"][0]["attack"] == "distill"


def test_a_stopped_reference_build_resumes_and_other_settings_are_refused(fresh, tmp_path):
    from modelprint.errors import ParameterError
    from modelprint.reference import build_reference_set, read_reference_set, source_meta, train_reference
    from modelprint.zoo import ZooManifest

    whole = build_reference_set(fresh, small_plan(), tmp_path / "whole", workers=0, **SMALL)
    # what a killed build leaves: the zoo of reference models, one of them lost, and no record yet
    partial = tmp_path / "partial"
    models = train_reference(source_meta(fresh), small_plan(), out_dir=partial, workers=0, progress=False)
    assert [weights_digest(m) for m in models] == _shas(whole)  # in process: the same bytes too
    with pytest.raises(ParameterError, match="unfinished reference set"):
        read_reference_set(partial)
    manifest = ZooManifest.read(partial)
    lost, *kept = (manifest.path(row) for row in manifest.rows)
    lost.unlink()
    kept_times = [p.stat().st_mtime_ns for p in kept]
    resumed = build_reference_set(fresh, small_plan(), partial, workers=0, **SMALL)
    assert _shas(resumed) == _shas(whole)
    assert [p.stat().st_mtime_ns for p in kept] == kept_times  # the finished models were not trained again
    (partial / "reference.json").unlink()
    with pytest.raises(ParameterError, match="planned with other settings"):
        build_reference_set(fresh, small_plan(4), partial, workers=0, **SMALL)


scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=20))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)


@given(st.dictionaries(st.text(max_size=8), values, max_size=5))
def test_an_architectures_arguments_survive_the_written_spec(args):
    """A reference plan's arguments go into its zoo spec as TOML and come back unchanged."""
    from modelprint.reference import _toml

    assert tomllib.loads(f"args = {_toml(args)}")["args"] == args


def test_a_reference_set_of_a_users_own_architecture_trains_on_workers(splits, user_module, tmp_path):
    """The workers are other processes: the architecture the user trusted in this one must be
    trusted there too (and nothing else)."""
    from modelprint.models import trust_arch
    from modelprint.reference import build_reference_set
    from modelprint.train import TrainConfig, train_new

    trust_arch(f"{user_module}:Net")
    source = train_new(f"{user_module}:Net", splits.owner, TrainConfig(epochs=1), seed=0, test=splits.test)
    record = build_reference_set(source, small_plan(), tmp_path / "refs", workers=2, **SMALL)
    assert [m["arch"] for m in record["models"]] == [f"{user_module}:Net", "cnn", f"{user_module}:Net"]
