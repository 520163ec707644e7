"""One source model in every form a suspect takes, and calibrated fingerprints to verify them with."""

import os
import socket
import subprocess
import sys
import time

import pytest

from modelprint.calibrate import calibrate
from modelprint.export import export_model
from modelprint.fingerprints import create_method
from modelprint.models import load_model, save_model
from modelprint.zoo import ZooManifest, source_row


@pytest.fixture(scope="module")
def zoo_source(training_zoo):
    manifest = ZooManifest.read(training_zoo)
    return load_model(manifest.path(source_row(manifest)))


@pytest.fixture(scope="module")
def forms(zoo_source, tmp_path_factory):
    """The training zoo's source as a model file, ONNX and TorchScript: {kind: path}."""
    root = tmp_path_factory.mktemp("forms")
    return {
        "model": save_model(zoo_source, root / "suspect"),
        "onnx": export_model(zoo_source, root / "suspect.onnx", "onnx"),
        "torchscript": export_model(zoo_source, root / "suspect.pt", "torchscript"),
    }


@pytest.fixture(scope="module")
def label_fp(zoo_source, negatives):
    """Characteristic examples, calibrated on the independent models."""
    fp = create_method("c", steps=30).generate(zoo_source, n=40, seed=0, progress=False)
    return calibrate(fp, negatives)


@pytest.fixture(scope="module")
def score_fp(zoo_source, training_zoo, negatives):
    """A MetaV fingerprint (short training: the point is the score path, not its quality), calibrated."""
    fp = create_method("metav", trained=str(training_zoo), iterations=30).generate(
        zoo_source, n=10, seed=0, progress=False
    )
    return calibrate(fp, negatives)


def start_serve(
    model_path, *options: str, env: dict | None = None, separate_stderr: bool = False
) -> tuple[subprocess.Popen, int]:
    """`modelprint serve MODEL` as a user starts it, in its own process on a free port, once its
    /health answers: (process, port); stderr merged into stdout unless ``separate_stderr``.
    The caller stops it."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "modelprint", "serve", str(model_path), "--port", str(port), *options]
    stderr = subprocess.PIPE if separate_stderr else subprocess.STDOUT
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=stderr)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not come up: {proc.communicate()[0][-2000:]!r}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.2)
