"""Export: onnxruntime and torch give the same answers on a fingerprint's queries."""

import json

import numpy as np
import pytest
import torch

from modelprint.cli import main
from modelprint.errors import ParameterError
from modelprint.export import export_model
from modelprint.fingerprints import create_method
from modelprint.models import save_model


def test_onnx_and_torchscript_exports_answer_like_the_model(source, tmp_path):
    import onnxruntime as ort

    fp = create_method("c", steps=30).generate(source, n=16, seed=0, progress=False)
    with torch.no_grad():
        logits = source.eval()(fp.x)
    onnx_path = export_model(source, tmp_path / "m.onnx", "onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": fp.x.numpy()})[0]  # 16 queries: the batch is dynamic (traced with 2)
    assert out.shape == (16, source.card.num_classes)
    assert np.array_equal(out.argmax(1), fp.y.numpy()) and np.abs(out - logits.numpy()).max() < 1e-4
    ts = torch.jit.load(str(export_model(source, tmp_path / "m.pt", "torchscript")))
    assert torch.equal(ts(fp.x).argmax(1), fp.y)
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
    with pytest.raises(ParameterError, match="format"):
        export_model(source, tmp_path / "m.x", "tflite")


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, *capsys.readouterr()


def test_cli_export(source, tmp_path, capsys):
    src = save_model(source, tmp_path / "src")
    code, out, err = _run(["export", str(src), "--format", "onnx", "--out", str(tmp_path / "s.onnx")], capsys)
    assert code == 0 and (tmp_path / "s.onnx").stat().st_size > 0 and "s.onnx" in out + err
    code, _, err = _run(["export", str(src), "--format", "tflite", "--out", str(tmp_path / "s.x")], capsys)
    assert code == 2 and "format" in err and not (tmp_path / "s.x").exists()
    assert json.loads((tmp_path / "src.json").read_text())["arch"] == "cnn"


def test_a_frequency_marked_model_exports_to_both_formats(source, splits, tmp_path):
    """The white-box mark's module (an FFT convolution beside the host) survives export: the
    exported graphs answer as the marked model does."""
    from modelprint.fingerprints.frequency import inject
    from modelprint.suspects import TorchSuspect, open_suspect

    marked = inject(source, splits.owner, host="features.0", key=7, epochs=1, progress=False)
    x = torch.rand(16, *marked.card.input_shape, generator=torch.Generator().manual_seed(0))
    want = TorchSuspect(marked).predict(x)
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
        got = open_suspect(export_model(marked, tmp_path / name, fmt)).predict(x)
        assert torch.equal(got.labels, want.labels), fmt
        assert (got.probs - want.probs).abs().max() < 1e-4, fmt


class _Flatten(torch.nn.Module):
    """A user's network whose forward reshapes by ``len(x)`` (a trace keeps it as a constant) or by
    ``x.shape[0]`` (a trace keeps it as the input's size)."""

    def __init__(self, by_len: bool) -> None:
        super().__init__()
        self.by_len = by_len
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(len(x) if self.by_len else x.shape[0], -1))


def test_a_trace_that_fixes_the_batch_size_is_refused_with_the_fix(tmp_path):
    from modelprint.models import wrap_model

    for by_len in (True, False):
        model = wrap_model(_Flatten(by_len).eval(), input_shape=(1, 8, 8), num_classes=10)
        path = tmp_path / f"flatten-{by_len}.pt"
        if by_len:
            with pytest.raises(ParameterError, match=r"only takes batches of 2: .*use x.shape\[0\]"):
                export_model(model, path, "torchscript")
            assert not path.exists() and not list(tmp_path.glob(".*.tmp"))
        else:
            ts = torch.jit.load(str(export_model(model, path, "torchscript")))
            assert ts(torch.rand(5, 1, 8, 8)).shape == (5, 10)
