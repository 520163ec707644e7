"""Fuzzing, bounded in time: the API's request parsing against its OpenAPI schema (schemathesis),
and every file loader on mangled files (hypothesis). Nothing a client or a file can do may
give a 500 or an exception other than the one clear error."""

import collections
import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from modelprint.errors import ModelprintError
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
