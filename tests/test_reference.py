"""Reference sets: trained once, checked when loaded, reused by calibrate and create."""

import json
import shutil

import pytest
from cli_run import run

from modelprint.models import load_model, save_model


def fresh_args(path):
    return load_model(path).card.arch_args


@pytest.fixture()
def owner(fresh, tmp_path, capsys):
    src = save_model(fresh, tmp_path / "owner")
    refs = tmp_path / "refs"
    code, out, err = run(["reference", "build", str(src), "--reference-models", "3", "--reference-arch", "cnn:width=4",
                          "--epochs", "1", "--out", str(refs)], capsys)  # fmt: skip
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
