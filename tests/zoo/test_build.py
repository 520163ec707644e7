import json
import os
import signal
import subprocess
import sys
import time

import pytest

from modelprint.cli import main
from modelprint.models import load_model
from modelprint.zoo import MANIFEST, ZooError, ZooManifest
from modelprint.zoo.build import build_zoo, verify_zoo
from modelprint.zoo.spec import SpecError

from ..conftest import TINY_SPEC


def _shas(root):
    return {r["id"]: r["sha256"] for r in ZooManifest.read(root).rows}


def test_build_writes_every_model_with_lineage(reference_zoo):
    manifest = ZooManifest.read(reference_zoo)
    assert len(manifest.rows) == 10 and verify_zoo(reference_zoo) == []
    rows = manifest.by_id()
    assert [r["id"] for r in manifest.rows][:2] == ["cnn[width=8](owner,s0)", "cnn[width=8](attacker,s1)"]
    for row in manifest.rows:
        assert row["status"] == "done" and 0.0 <= row["accuracy"] <= 1.0
        model = load_model(reference_zoo / row["file"])
        assert model.card.train_seconds > 0  # what each model cost, in its card
        if row["parent"] is None:
            assert model.card.lineage == []
            continue
        parent = rows[row["parent"]]
        assert model.card.lineage[0]["parent_sha256"] == parent["sha256"]
        assert [s["recipe"]["attack"] for s in model.card.lineage] == [s["attack"] for s in row["recipe"]]
        assert row["role"] == parent["role"]
    assert (reference_zoo / "zoo.toml").read_text() == TINY_SPEC


def test_rebuilding_a_finished_zoo_redoes_nothing(tmp_path, reference_zoo):
    spec = tmp_path / "subset.toml"  # on a training subset: the cards say so, for reference models to match
    spec.write_text(TINY_SPEC.replace('data = "digits"', 'data = "digits"\ntrain_subset = 300', 1))
    out = tmp_path / "zoo"
    build_zoo(spec, out, workers=0, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    build_zoo(spec, out, workers=0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "models").iterdir()} == stamps
    assert json.loads((out / "build.json").read_text())["train_subset"] == 300
    source = load_model(out / ZooManifest.read(out).rows[0]["file"])
    assert source.card.training["train_subset"] == 300
    assert _shas(out)["cnn[width=8](owner,s0)"] != _shas(reference_zoo)["cnn[width=8](owner,s0)"]


def test_killed_build_resumes_to_the_same_manifest(tiny_spec, tmp_path, reference_zoo):
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "modelprint", "zoo", "build", str(tiny_spec), "--out", str(out), "--workers", "0"]
    env = {**os.environ, "MODELPRINT_QUIET": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        lines = (out / MANIFEST).read_text().count("\n") if (out / MANIFEST).exists() else 0
        if lines >= 4:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = ZooManifest.read(out)
    assert 4 <= len(partial.rows) < 10, "the kill should land mid-build"
    kept = {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in partial.rows}
    loud = {k: v for k, v in env.items() if k != "MODELPRINT_QUIET"}  # the resume is a progress line
    done = subprocess.run(cmd, env=loud, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "already built" in done.stderr
    assert {f: (out / f).stat().st_mtime_ns for f in kept} == kept  # finished models were not redone
    assert not list((out / "models").glob(".*.tmp"))
    assert verify_zoo(out) == []
    assert (out / MANIFEST).read_text() == (reference_zoo / MANIFEST).read_text()


def test_process_pool_build_matches_the_in_process_build(tiny_spec, tmp_path, reference_zoo):
    out = tmp_path / "zoo"
    build_zoo(tiny_spec, out, workers=2, progress=False)
    assert [r["id"] for r in ZooManifest.read(out).rows] == [r["id"] for r in ZooManifest.read(reference_zoo).rows]
    assert verify_zoo(out) == []
    assert _shas(out) == _shas(reference_zoo)


def test_ray_backend_builds_the_same_zoo(tiny_spec, tmp_path, reference_zoo):
    pytest.importorskip("ray", reason="Ray is an optional dependency: pip install 'modelprint[ray]'")
    out = tmp_path / "zoo"
    build_zoo(tiny_spec, out, workers=2, backend="ray", progress=False)
    assert verify_zoo(out) == []
    assert _shas(out) == _shas(reference_zoo)


def test_zoo_verify_finds_a_corrupt_file(reference_zoo, tmp_path, capsys):
    import shutil

    zoo = tmp_path / "copy"
    shutil.copytree(reference_zoo, zoo)
    victim = ZooManifest.read(zoo).rows[3]
    data = bytearray((zoo / victim["file"]).read_bytes())
    data[-1] ^= 0xFF
    (zoo / victim["file"]).write_bytes(bytes(data))
    bad = verify_zoo(zoo)
    assert [(r["id"], why) for r, why in bad] == [(victim["id"], "sha256 differs from the manifest")]
    assert _cli(["zoo", "verify", str(zoo)]) == 2
    assert f"FAIL {victim['file']}" in capsys.readouterr().out


def test_bad_spec_fails_before_anything_is_written(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY_SPEC.replace('mode = "$mode"', 'mode = "$mood"'))
    with pytest.raises(SpecError, match=r"bad.toml line \d+: .*mood"):
        build_zoo(spec, tmp_path / "zoo", workers=0, progress=False)
    assert not (tmp_path / "zoo").exists()


def test_another_spec_cannot_resume_into_a_zoo(tiny_spec, tmp_path, reference_zoo):
    import shutil

    zoo = tmp_path / "copy"
    shutil.copytree(reference_zoo, zoo)
    tiny_spec.write_text(TINY_SPEC.replace("epochs = 3", "epochs = 4"))
    with pytest.raises(ZooError, match="another spec"):
        build_zoo(tiny_spec, zoo, workers=0, progress=False)


def _cli(args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def test_cli_zoo_ls(reference_zoo, capsys):
    assert _cli(["zoo", "ls", str(reference_zoo)]) == 0
    out = capsys.readouterr().out
    assert "cnn[width=8](owner,s0)-prune(0.5)-finetune(ftal)" in out and "positive prune: 1" in out
    assert _cli(["zoo", "ls", str(reference_zoo), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 10 and rows[0]["category"] == "source"


def test_a_spec_that_expands_past_the_plan_cap_is_refused_quickly(tmp_path):
    variants = ", ".join(f"{{seed = {i}}}" for i in range(120))
    steps = ", ".join(f"{{rate = 0.{i:03d}}}" for i in range(1, 120))
    text = (
        'data = "digits"\n[[models]]\nname = "src"\narch = "cnn"\nrole = "positive"\ncategory = "source"\n'
        f"variants = [{variants}]\n"
        f'[[models]]\nfrom = "src"\ncategory = "prune"\nsteps = [{{attack = "prune", rate = "$rate"}}]\n'
        f"variants = [{steps}]\n"
    )
    spec = tmp_path / "big.toml"
    spec.write_text(text)
    started = time.monotonic()
    with pytest.raises(SpecError, match="more than 10000 models"):
        build_zoo(spec, tmp_path / "zoo", workers=0, progress=False)
    assert time.monotonic() - started < 10 and not (tmp_path / "zoo").exists()


def test_a_bad_architecture_argument_or_step_data_is_caught_before_the_folder_is_claimed(tiny_spec, tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text(tiny_spec.read_text().replace("width = 8", "widht = 8", 1))
    with pytest.raises(ZooError, match="line .*cannot build cnn.*widht"):
        build_zoo(typo, tmp_path / "zoo", workers=0, progress=False)
    assert not (tmp_path / "zoo").exists()
    data = tmp_path / "data.toml"
    data.write_text(tiny_spec.read_text() + '\n[[models]]\nfrom = "source"\ncategory = "distill"\n'
                    'steps = [{attack = "distill", data = "folder:/no/such/folder", epochs = 1}]\n')  # fmt: skip
    with pytest.raises((ZooError, SpecError), match="no/such/folder"):
        build_zoo(data, tmp_path / "zoo2", workers=0, progress=False)
    assert not (tmp_path / "zoo2").exists()


def test_a_second_builder_on_one_folder_is_refused_naming_the_holder(tiny_spec, tmp_path):
    from modelprint.zoo.build import zoo_lock

    out = tmp_path / "zoo"
    with zoo_lock(out):
        with pytest.raises(ZooError, match=rf"being built by pid {os.getpid()} on "):
            build_zoo(tiny_spec, out, workers=0, progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ZooError, match="is a file"):
        build_zoo(tiny_spec, tmp_path / "afile", workers=0, progress=False)


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "hardlink", "fifo"])
@pytest.mark.parametrize("name", [".modelprint.lock", MANIFEST])
def test_a_prepared_folder_cannot_make_the_build_write_outside_it(kind, name, tiny_spec, tmp_path):
    """A lock or manifest that is a link to a file outside the zoo (or a FIFO that would block the
    open) is refused in one line, and the file it points to keeps its bytes."""
    out, victim = tmp_path / "zoo", tmp_path / "victim.txt"
    out.mkdir()
    original = "" if name == MANIFEST else "the verifier's own file\n"  # an empty manifest reads as a zoo
    victim.write_text(original)
    link = out / name
    if kind == "symlink":
        link.symlink_to(victim)
    elif kind == "dangling-symlink":
        link.symlink_to(tmp_path / "created-outside")
    elif kind == "hardlink":
        os.link(victim, link)
    else:
        os.mkfifo(link)
    with pytest.raises(ZooError, match="link|not a regular file|holds no zoo"):
        build_zoo(tiny_spec, out, workers=0, progress=False)
    assert victim.read_text() == original
    assert not (tmp_path / "created-outside").exists()


def test_pool_workers_die_with_their_driver(tiny_spec, tmp_path):
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "modelprint", "zoo", "build", str(tiny_spec), "--out", str(out), "--workers", "2"]
    env = {**os.environ, "MODELPRINT_QUIET": "1"}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        workers = [pid for pid in _children(driver.pid) if b"multiprocessing" in _cmdline(pid)]
        time.sleep(0.1)
    assert len(workers) >= 2, "the pool should have started"  # its workers (and the resource tracker)
    driver.send_signal(signal.SIGKILL)  # no chance to shut its pool down
    driver.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
