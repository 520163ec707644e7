"""A fingerprint file is the owner's, and the owner is a party to the dispute: a null altered to
frame an innocent model (a NaN in its region, parameters its own reference statistics do not
give, numbers out of range, metadata nested without end) is refused on load with one line and
exit code 2, never turned into a verdict."""

import json
import math

import numpy as np
import pytest
from cli_run import run
from safetensors import safe_open
from safetensors.torch import save_file

from modelprint.calibrate import calibrate
from modelprint.errors import FingerprintFileError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.models import save_model
from modelprint.null import BetaNull, KeyNull, NormalNull, Null
from modelprint.verify import verify


@pytest.fixture(scope="module")
def files(source, negatives, tmp_path_factory):
    """A calibrated count fingerprint, the innocent model a forged null would frame, and the file."""
    tmp = tmp_path_factory.mktemp("hostile-fp")
    fp = calibrate(create_method("c", steps=20).generate(source, n=30, seed=0, progress=False), negatives[:5])
    path = tmp / "owner.fp.safetensors"
    fp.save(path)
    innocent = save_model(negatives[5], tmp / "innocent")
    assert verify(Fingerprint.load(path), negatives[5], fpr=0.01).verdict != "match"
    return tmp, path, innocent


def _rewrite(path, out, change):
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["modelprint"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items())
    change(header["meta"])
    save_file(tensors, str(out), metadata={"modelprint": json.dumps(header)})  # json writes NaN as NaN
    return out


def _set(*keys, value):
    def change(meta):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value

    return change


NAN, INF = float("nan"), float("inf")
ALTERED = {
    "region-nan": _set("null", "region", value=lambda r: [[NAN, NAN], *r]),
    "region-point-nan": _set("null", "region", 0, value=[NAN, 0.0]),
    "region-string": _set("null", "region", value="tight"),
    "region-point-string": _set("null", "region", 0, value=["0.1", 0.0]),
    "region-empty": _set("null", "region", value=[]),
    "region-at-zero": _set("null", "region", value=[[1e-12, 0.0]]),  # every rate a near-certain match
    "region-out-of-range": _set("null", "region", 0, value=[1.5, 0.0]),
    "mean-lowered": _set("null", "mean", value=0.01),
    "rho-changed": _set("null", "rho", value=lambda r: 0.3 if r < 0.2 else 0.0),
    "mean-inf": _set("null", "mean", value=INF),
    "confidence-tiny": _set("null", "confidence", value=0.01),
    "confidence-string": _set("null", "confidence", value="0.95"),
    "statistics-string": _set("null", "statistics", value="low"),
    "statistics-nan": _set("null", "statistics", 0, value=NAN),
    "statistics-short": _set("null", "statistics", value=lambda s: s[:-1]),
    "statistics-not-rates": _set("null", "statistics", 0, value=0.123456789),
    "n-queries-zero": _set("null", "n_queries", value=0),
    "n-queries-string": _set("null", "n_queries", value="30"),
    "smallest-p-negative": _set("null", "smallest_p", value=-1.0),
    "param-nan": _set("params", value=lambda p: {**p, "steps": NAN}),
    "nested": _set("params", value=lambda p: {**p, "deep": json.loads("[" * 40 + "]" * 40)}),
}


@pytest.mark.parametrize("name", sorted(ALTERED))
def test_an_altered_null_is_refused_on_load(name, files):
    tmp, path, _ = files
    altered = _rewrite(path, tmp / f"{name}.fp.safetensors", ALTERED[name])
    with pytest.raises(FingerprintFileError, match="damaged or was not written by modelprint"):
        Fingerprint.load(altered)


@pytest.mark.parametrize("name", ["region-nan", "region-at-zero", "mean-lowered", "nested"])
def test_verify_gives_one_line_and_exit_2_never_a_verdict(name, files, capsys):
    tmp, path, innocent = files
    altered = _rewrite(path, tmp / f"cli-{name}.fp.safetensors", ALTERED[name])
    for args in (["verify", str(altered), str(innocent), "--fpr", "0.01"], ["fingerprint", "show", str(altered)]):
        code, out, err = run(args, capsys)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (code, out, err)
        assert "match" not in out


def test_metadata_nested_past_json_recursion_is_one_line(files, capsys):
    tmp, path, innocent = files
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    deep = '{"schema_version": 1, "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    save_file(tensors, str(tmp / "deep.fp.safetensors"), metadata={"modelprint": deep})
    code, _, err = run(["verify", str(tmp / "deep.fp.safetensors"), str(innocent)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


STATISTICS = [0.12, 0.2, 0.25, 0.31, 0.4, 0.18]


def _fitted(kind):
    rng = np.random.default_rng(0)
    if kind is KeyNull:
        return KeyNull.fit([], [0.0] * 5, simulated=rng.uniform(-1, 1, (200, 16)), tau=0.9).to_json()
    return kind.fit([], STATISTICS).to_json()


@pytest.mark.parametrize(
    "kind,change",
    [
        (NormalNull, {"mean": 0.0}),
        (NormalNull, {"sd": 1e-6}),
        (NormalNull, {"sd": NAN}),
        (NormalNull, {"statistics": [0.1, 0.1, 0.1]}),
        (BetaNull, {"mean": 0.001}),
        (BetaNull, {"region": [[0.001, 0.5]]}),
        (BetaNull, {"statistics": [*STATISTICS[:-1], 2.0]}),
        (KeyNull, {"q_upper": 0.0}),
        (KeyNull, {"q_hat": 1e-9}),
        (KeyNull, {"above": 10**9}),
        (KeyNull, {"trials": 7}),
        (KeyNull, {"tau": INF}),
    ],
)
def test_every_family_refuses_parameters_its_statistics_do_not_give(kind, change):
    data = _fitted(kind)
    assert Null.problem(data) is None  # as fitted, it passes
    altered = {**data, **change}
    assert Null.problem(altered), change


def test_a_refit_of_the_stored_statistics_reproduces_every_family():
    for kind in (NormalNull, BetaNull, KeyNull):
        data = json.loads(json.dumps(_fitted(kind)))  # as a file round-trips it
        assert Null.problem(data) is None, kind
        assert all(math.isfinite(v) for v in data.values() if isinstance(v, float))


def test_a_setting_the_method_does_not_have_is_refused_not_dropped(files, capsys):
    """A stored setting this modelprint does not know could change what the fingerprint means:
    verifying it without that setting would be verifying another fingerprint."""
    tmp, path, innocent = files
    altered = _rewrite(path, tmp / "unknown-setting.fp.safetensors", _set("params", value=lambda p: {**p, "gain": 2}))
    for args in (["verify", str(altered), str(innocent)], ["fingerprint", "show", str(altered)]):
        code, out, err = run(args, capsys)
        assert code == 2 and err.count("\n") == 1 and "settings this modelprint does not know: gain" in err, err
