"""Fuzzing, bounded in time: the API's request parsing against its OpenAPI schema (schemathesis),
and every file loader on mangled files (hypothesis). Nothing a client or a file can do may
give a 500 or an exception other than the one clear error."""

import collections
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from modelprint.errors import ModelprintError, SuspectError
from modelprint.fingerprints import Fingerprint
from modelprint.models import load_model
from modelprint.serve import create_app
from modelprint.suspects import OnnxSuspect, Suspect, TorchScriptSuspect

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def api_schema(zoo_source):
    app = create_app(zoo_source, token=None, max_batch=8, max_request_bytes=64_000)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# schemathesis' pytest plugin (from_fixture / parametrize) fails on pytest 9 ("no attribute
# '_nodeid'"), so each operation's hypothesis strategy is driven directly.
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_api_conforms_to_its_schema_on_whatever_a_client_sends(api_schema, mode):
    """No 5xx, every status and body as the OpenAPI schema documents, schema-violating requests
    rejected. Not checked: that every schema-valid request is accepted, because a base64 body's
    length must match its shape, which JSON Schema cannot state."""
    seen = collections.Counter()
    for result in api_schema.get_all_operations():
        op = result.ok()
        if mode == "negative" and op.method == "get":
            continue  # nothing to get wrong: no parameters, no body

        @FUZZ
        @given(op.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        def check(case):
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            seen[response.status_code] += 1
            if response.status_code == 200 and case.path == "/v1/predict":
                body = response.json()
                assert len(body["labels"]) == len(body["probabilities"]) == len(case.body.get("inputs") or [0])

        check()
    # the fuzzing reached both sides: answers for schema-valid requests, rejections for the rest
    assert seen[200] > 10 if mode == "positive" else seen[422] > 10
    assert not any(code >= 500 for code in seen)


# -- file loaders ------------------------------------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("splice"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("random"), st.binary(max_size=2048)),
)


def mutate(data: bytes, m: tuple) -> bytes:
    if m[0] == "truncate":
        return data[: int(m[1] * len(data))]
    if m[0] == "flip":
        at = min(int(m[1] * len(data)), len(data) - 1)
        return data[:at] + bytes([data[at] ^ m[2]]) + data[at + 1 :]
    if m[0] == "splice":
        at = int(m[1] * len(data))
        return data[:at] + m[2] + data[at + len(m[2]) :]
    return m[1]


def _survives(load, data: bytes, suffix: str, companion: tuple[str, bytes] | None = None) -> None:
    """``load`` on the bytes either works or raises the one clear error, never anything else."""
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / f"f{suffix}"
        path.write_bytes(data)
        if companion:
            (Path(root) / companion[0]).write_bytes(companion[1])
        try:
            loaded = load(path)
            if (
                isinstance(loaded, Suspect) and loaded.input_shape is not None
            ):  # mangled weights still answer, or fail clearly
                loaded.predict(torch.rand(2, *loaded.input_shape, generator=torch.Generator().manual_seed(0)))
        except ModelprintError as e:
            assert str(e) and "\n" not in str(e).strip()


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_exported_file_loaders_survive_mangled_files(forms, kind):
    good = forms[kind].read_bytes()
    load = OnnxSuspect if kind == "onnx" else TorchScriptSuspect

    @FUZZ
    @given(mutation)
    def check(m):
        _survives(load, mutate(good, m), forms[kind].suffix)

    check()


def test_model_file_loader_survives_mangled_weights_and_cards(forms):
    weights = forms["model"].read_bytes()
    card = forms["model"].with_suffix(".json").read_bytes()

    @FUZZ
    @given(mutation, st.booleans())
    def check(m, mangle_card):
        if mangle_card:
            _survives(lambda p: load_model(p), weights, ".safetensors", ("f.json", mutate(card, m)))
        else:
            _survives(lambda p: load_model(p), mutate(weights, m), ".safetensors", ("f.json", card))

    check()


def test_fingerprint_loader_survives_mangled_files(label_fp):
    with tempfile.TemporaryDirectory() as root:
        label_fp.save(os.path.join(root, "fp.fp.safetensors"))
        good = Path(root, "fp.fp.safetensors").read_bytes()

    @FUZZ
    @given(mutation)
    def check(m):
        _survives(Fingerprint.load, mutate(good, m), ".fp.safetensors")

    check()


# -- the static checks ----------------------------------------------------------------------------------


class _Recorder(pickle.Unpickler):
    """Unpickles with every global replaced by an inert stand-in, recording what was asked for."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.asked: list[tuple[str, str]] = []

    def find_class(self, module, name):
        self.asked.append((module, name))
        return lambda *args, **kwargs: None

    def persistent_load(self, pid):
        return None


def _torchscript_pickles(path) -> list[bytes]:
    with zipfile.ZipFile(path) as z:
        return [z.read(n) for n in z.namelist() if n.endswith(".pkl")]


def test_the_pickle_check_is_sound_on_mangled_and_random_pickles(forms):
    """Whenever the symbolic check passes a pickle, a real unpickler asks for no global outside
    the allow-list: what the check resolves is what loading would import."""
    from modelprint.suspects.pickle_check import check_pickle, torchscript_global

    seeds = _torchscript_pickles(forms["torchscript"])
    names = st.sampled_from(["os", "system", "collections", "OrderedDict", "torch._utils", "_rebuild_tensor_v2",
                             "builtins", "eval", "namedtuple.__builtins__.get", "__torch__.m", "C"])  # fmt: skip

    def short(s: str) -> bytes:
        b = s.encode()
        return b"\x8c" + bytes([len(b)]) + b

    ops = st.lists(
        st.one_of(
            names.map(short),
            st.sampled_from(
                [
                    b"\x94",
                    b"\x93",
                    b"0",
                    b"h\x00",
                    b"h\x01",
                    b"h\x02",
                    b"(",
                    b")",
                    b"t",
                    b"R",
                    b"\x85",
                    b"\x86",
                    b"N",
                    b"2",
                ]
            ),
        ),  # fmt: skip
        max_size=24,
    ).map(lambda parts: b"\x80\x04" + b"".join(parts) + b".")

    @FUZZ
    @given(st.one_of(st.tuples(st.sampled_from(seeds), mutation).map(lambda t: mutate(*t)), ops))
    def check(data):
        try:
            check_pickle(data, "fuzz")
        except SuspectError as e:
            assert "\n" not in str(e)
            return
        recorder = _Recorder(data)
        try:
            recorder.load()
        except Exception:  # noqa: BLE001 (a malformed stream stops the real unpickler too)
            pass
        assert all(torchscript_global(m, n) and "." not in n for m, n in recorder.asked), recorder.asked

    check()


def test_the_torchscript_code_check_survives_mangled_code(forms):
    from modelprint.suspects.torchscript_code import check_torchscript_code

    with zipfile.ZipFile(forms["torchscript"]) as z:
        sources = {n: z.read(n).decode() for n in z.namelist() if n.endswith(".py")}
    name = sorted(sources)[0]
    check_torchscript_code(sources, "good")  # the real archive passes

    @FUZZ
    @given(mutation)
    def check(m):
        text = mutate(sources[name].encode(), m).decode("utf-8", "replace")
        try:
            check_torchscript_code({**sources, name: text}, "fuzz")
        except SuspectError as e:
            assert "\n" not in str(e)

    check()


def test_json_depth_agrees_with_the_parser():
    from modelprint.suspects.http_api import json_depth

    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet='[]{}"\\ab', max_size=8))
    values = st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.lists(kids, max_size=3), st.dictionaries(st.text(alphabet='[]{}"ab', max_size=4), kids, max_size=3)
        ),
        max_leaves=20,
    )

    def depth(v):
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    @FUZZ
    @given(values)
    def check(v):
        assert json_depth(json.dumps(v).encode()) == depth(v)

    check()
