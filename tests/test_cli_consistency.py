"""Every command speaks the same language: shared option names, --json where it reports, -h,
optional seeds, help without Python types, one error line and exit code 2 for bad input."""

from __future__ import annotations

import json
import re

import pytest
import typer

from modelprint import __version__
from modelprint.cli import app, main
from modelprint.cli.main import _readable_help

ROOT = _readable_help(typer.main.get_command(app))
# Commands that produce no result to print: the demo (a folder and its own report) and a server.
NO_RESULT = {("demo",), ("serve",)}


def commands(cmd=ROOT, path=()):
    subs = getattr(cmd, "commands", None)
    if not subs:
        yield path, cmd
        return
    for name, sub in subs.items():
        yield from commands(sub, (*path, name))


ALL = list(commands())


def options(cmd) -> dict[str, object]:
    return {opt: p for p in cmd.params if p.param_type_name == "option" for opt in (*p.opts, *p.secondary_opts)}


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=" ".join)
def test_help_is_readable(path, capsys):
    code, out, _ = run([*path, "-h"], capsys)
    assert code == 0 and "Usage: modelprint " + " ".join(path) in out
    assert not re.search(r"<(int|str|float|bool|path|list\[)", out, re.I), out
    assert not re.search(r"\{[a-z_A-Z.]+\}", out.splitlines()[1] if len(out.splitlines()) > 1 else out), out


def test_every_reporting_command_has_json():
    missing = [" ".join(p) for p, cmd in ALL if p not in NO_RESULT and "--json" not in options(cmd)]
    assert not missing, f"commands without --json: {missing}"


def test_shared_options_have_one_name_and_one_meaning():
    for path, cmd in ALL:
        opts = options(cmd)
        where = " ".join(path)
        if "--seed" in opts:
            assert not opts["--seed"].required, f"{where}: --seed must be optional"
        assert not ({"--batch", "--batch-size"} <= set(opts)), f"{where}: two names for a batch"
        for alias in ("--queries", "--num", "--num-queries", "--output", "--outdir", "--cuda", "--gpu"):
            assert alias not in opts, f"{where}: {alias} (the shared names are --n, --out, --device)"
        for p in cmd.params:
            if p.param_type_name == "option" and not (getattr(p, "is_flag", False) or getattr(p, "count", False)):
                assert p.metavar and p.metavar.upper() == p.metavar, f"{where} {p.opts}: placeholder {p.metavar!r}"


def test_how_many_reference_models_has_one_name_wherever_they_are_trained():
    """It was --reference N in calibrate (one letter from --references DIR), --n in reference
    build (where --n elsewhere counts queries) and --tune-negatives in create --tune."""
    trains_references = {("fingerprint", "calibrate"), ("fingerprint", "create"), ("reference", "build")}
    for path, cmd in ALL:
        opts = options(cmd)
        assert not {"--reference", "--tune-negatives"} & set(opts), path
        if path in trains_references:
            assert "--reference-models" in opts and opts["--reference-models"].metavar == "N", path
        if "--n" in opts:
            assert "quer" in (opts["--n"].help or "").lower(), path


def test_commands_that_run_a_model_take_a_device():
    runs_a_model = {
        ("train",), ("attack",), ("verify",), ("serve",), ("bench",), ("fingerprint", "create"),
        ("fingerprint", "calibrate"), ("reference", "build"), ("zoo", "build"), ("gan", "train"),
    }  # fmt: skip
    missing = [" ".join(p) for p, cmd in ALL if p in runs_a_model and "--device" not in options(cmd)]
    assert not missing, f"commands without --device: {missing}"


def test_version_and_root_help(capsys):
    code, out, _ = run(["--version"], capsys)
    assert (code, out.strip()) == (0, f"modelprint {__version__}")
    code, out, _ = run(["-h"], capsys)
    assert code == 0 and "--trust-arch" in out and "--quiet" in out


def test_a_misspelt_architecture_argument_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(
        ["train", "--data", "digits", "--arch", "cnn", "--arch-arg", "widht=8", "--out", str(tmp_path / "m")], capsys
    )
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == "error: architecture 'cnn' has no argument 'widht'; it takes: width, depth, batch_norm"
    assert not any(line.startswith("Traceback") for line in lines)


def test_json_results_parse(tmp_path, capsys, source):
    from modelprint.models import save_model

    model = save_model(source, tmp_path / "m")
    code, out, _ = run(["list", "--json"], capsys)
    assert code == 0 and "cnn" in json.loads(out)["architectures"] and "mini-digits" in json.loads(out)["zoo_specs"]
    code, out, _ = run(["attack", "prune", str(model), "--param", "rate=0.3", "--out", str(tmp_path / "p"), "--json"],
                       capsys)  # fmt: skip
    record = json.loads(out)
    assert code == 0 and record["parent_sha256"] == source.card.weights_sha256 and isinstance(record["seed"], int)


def test_model_import_writes_each_model_beside_its_weights(tmp_path, capsys, source):
    import torch

    for name in ("a", "b"):
        torch.save(source.net.state_dict(), tmp_path / f"{name}.pt")
    args = ["model", "import", "--arch", "cnn", "--arch-arg", "width=8", "--input-shape", "1,8,8",
            "--num-classes", "10", "--weights", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]  # fmt: skip
    code, out, err = run([*args, "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--out names one model file" in err
    code, out, _ = run([*args, "--json"], capsys)
    models = json.loads(out)["models"]
    assert code == 0 and [m["model"] for m in models] == [
        str(tmp_path / "a.safetensors"),
        str(tmp_path / "b.safetensors"),
    ]
    assert models[0]["sha256"] == models[1]["sha256"]  # the same weights give the same file, bit for bit


def test_model_import_of_weights_fed_wrongly_is_refused_not_written(tmp_path, capsys, source):
    """The source was trained on (x - 0.5) / 0.25; imported without that, or as untrained
    weights, it answers the owner's data at about chance: refused, since any verdict on the
    file would be wrong."""
    import torch

    from modelprint.models import create_model

    torch.save(
        create_model("cnn", num_classes=10, input_shape=(1, 8, 8), width=8, seed=3).net.state_dict(),
        tmp_path / "untrained.pt",
    )
    torch.save(source.net.state_dict(), tmp_path / "owner.pt")
    base = [
        "model",
        "import",
        "--arch",
        "cnn",
        "--arch-arg",
        "width=8",
        "--input-shape",
        "1,8,8",
        "--num-classes",
        "10",
        "--data",
        "digits",
    ]
    code, _, err = run([*base, "--weights", str(tmp_path / "untrained.pt")], capsys)
    assert code == 2 and "about chance" in err and "--mean/--std" in err and err.count("\n") == 2, err  # + the note
    assert not (tmp_path / "untrained.safetensors").exists()
    code, _, err = run([*base, "--weights", str(tmp_path / "owner.pt"), "--mean", "0.5", "--std", "0.25"], capsys)
    assert code == 0 and "warning" not in err, err
    code, _, err = run([*base, "--weights", str(tmp_path / "untrained.pt"), "--accept-low-accuracy"], capsys)
    assert code == 0 and "warning: no --mean/--std" in err


def test_usage_errors_are_one_line_naming_the_command(capsys):
    code, out, err = run(["verify", "--no-such-flag"], capsys)
    assert code == 2 and err.startswith("error: No such option: --no-such-flag") and err.count("\n") == 1, err
    assert "see `modelprint verify -h`" in err and "╭" not in err + out


def test_global_options_are_taken_after_the_command_too(tmp_path, capsys, source):
    """The messages say "add --trust-arch X"; a user types it where they are, after the command."""
    from modelprint.models import save_model
    from modelprint.models.custom import is_trusted

    model = save_model(source, tmp_path / "m")
    code, out, err = run(
        [
            "attack",
            "prune",
            str(model),
            "--param",
            "rate=0.3",
            "--out",
            str(tmp_path / "p"),
            "--quiet",
            "--trust-arch",
            "nets_after_cmd:Net",
        ],
        capsys,
    )
    assert code == 0, err
    assert is_trusted("nets_after_cmd:Net")
    code, _, err = run(["list", "--trust-arch=nets_after_cmd2:Net", "-q"], capsys)
    assert code == 0 and is_trusted("nets_after_cmd2:Net"), err
