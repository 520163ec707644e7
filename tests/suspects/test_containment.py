"""Hostile model files: TorchScript that writes or reads the verifier's files, ONNX that points
the runtime at a file, graphs that allocate without bound or never finish. Each is refused by
the static checks, and, with those checks bypassed, contained by the worker process."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from modelprint.errors import SuspectError
from modelprint.suspects import OnnxSuspect, TorchScriptSuspect
from modelprint.suspects._worker import landlock_abi
from modelprint.suspects.onnx_file import check_onnx
from modelprint.suspects.sandbox import ContainedModel, SandboxLimits

X = np.zeros((2, 1, 4, 4), np.float32)


def _script(module: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    return buf.getvalue()


class _Overwrite(torch.nn.Module):
    """Maps a file shared and overwrites its first bytes: the probe that rewrote a script."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        t = torch.from_file(self.path, shared=True, size=16, dtype=torch.uint8)
        t.fill_(65)
        return x.flatten(1)[:, :10] + t[:10].float() * 0.0  # used, so the write is not optimised away


class _Leak(torch.nn.Module):
    """Reads a file's first byte into every logit: the verdict would carry the secret."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        t = torch.from_file(self.path, shared=False, size=1, dtype=torch.uint8)
        return x.flatten(1)[:, :10] + t[0].float()


class _Spin(torch.nn.Module):
    def forward(self, x):
        s = x.flatten(1)[:, :10]
        for _ in range(1_000_000_000):
            s = s + 1.0
        return s


@pytest.fixture()
def victim(tmp_path):
    path = tmp_path / "victim.sh"
    path.write_text("#!/bin/sh\necho the verifier's own script, which must stay as it is\n")
    return path


def test_torchscript_that_writes_a_file_is_refused_and_contained(victim, tmp_path):
    before = victim.read_bytes()
    evil = tmp_path / "evil.pt"
    evil.write_bytes(_script(_Overwrite(str(victim))))
    with pytest.raises(SuspectError, match="from_file"):
        TorchScriptSuspect(evil)
    # The static check bypassed: the worker cannot open the file for writing, nor create one.
    created = tmp_path / "created.bin"
    for target in (victim, created):
        with ContainedModel("torchscript", _script(_Overwrite(str(target)))) as m:
            with pytest.raises(SuspectError):
                m.run(X)
    assert victim.read_bytes() == before
    assert not created.exists()
    # The same archive run as torch would run it writes the file: the test can fail.
    torch.jit.load(io.BytesIO(_script(_Overwrite(str(victim)))))(torch.from_numpy(X))
    assert victim.read_bytes() != before


def test_torchscript_that_reads_a_file_never_answers_with_its_content(tmp_path, monkeypatch):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes([42]))
    evil = _script(_Leak(str(secret)))
    assert torch.jit.load(io.BytesIO(evil))(torch.from_numpy(X))[0, 0].item() == 42  # it would leak
    monkeypatch.chdir(tmp_path)  # the verifier's working folder, which is on its sys.path too
    monkeypatch.syspath_prepend(str(tmp_path))
    with ContainedModel("torchscript", evil) as m:
        with pytest.raises(SuspectError, match="failed on the queries: file access blocked by the sandbox"):
            m.run(X)
    for outside in ("/etc/hostname", "/etc/passwd"):
        if os.path.exists(outside):
            with ContainedModel("torchscript", _script(_Leak(outside))) as m:
                with pytest.raises(SuspectError):
                    m.run(X)


def _constant_from_file(location: str) -> onnx.ModelProto:
    """A graph whose Constant reads 10 floats from ``location``: x.flatten()[:, :10] + constant."""
    value = TensorProto(name="c", dims=[10], data_type=TensorProto.FLOAT, data_location=TensorProto.EXTERNAL)
    for key, val in (("location", location), ("offset", "0"), ("length", "40")):
        value.external_data.add(key=key, value=val)
    nodes = [
        helper.make_node("Constant", [], ["c"], value=value),
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Constant", [], ["starts"], value=helper.make_tensor("s", TensorProto.INT64, [1], [0])),
        helper.make_node("Constant", [], ["ends"], value=helper.make_tensor("e", TensorProto.INT64, [1], [10])),
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])),
        helper.make_node("Slice", ["f", "starts", "ends", "axes"], ["s10"]),
        helper.make_node("Add", ["s10", "c"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "leak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_onnx_constant_reading_a_file_is_refused_and_contained(tmp_path, monkeypatch):
    import onnxruntime as ort

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(10, 7.0, np.float32).tobytes())
    proto = _constant_from_file("secret.bin")
    monkeypatch.chdir(tmp_path)
    onnx.checker.check_model(proto)  # onnx's own checker lets it through
    leaked = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": X})
    assert leaked[0][0, 0] == 7.0  # in process, the runtime reads the verifier's file
    path = tmp_path / "leak.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(SuspectError, match="side files"):
        OnnxSuspect(path)
    for location in ("secret.bin", str(secret)):  # relative to the worker's empty folder, and absolute
        with pytest.raises(SuspectError, match="cannot load"):
            ContainedModel("onnx", _constant_from_file(location).SerializeToString())


def test_onnx_external_data_hidden_in_a_subgraph_or_sparse_tensor_is_refused():
    inner = _constant_from_file("secret.bin").graph
    outer = helper.make_graph(
        [helper.make_node("If", ["cond"], ["logits"], then_branch=inner, else_branch=inner)],
        "outer",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
    )
    with pytest.raises(SuspectError, match="side files"):
        check_onnx(helper.make_model(outer), "nested")
    sparse = _constant_from_file("x").graph
    values = TensorProto(name="v", dims=[1], data_type=TensorProto.FLOAT, data_location=TensorProto.EXTERNAL)
    values.external_data.add(key="location", value="secret.bin")
    sparse.sparse_initializer.add().values.CopyFrom(values)
    del sparse.node[0]
    with pytest.raises(SuspectError, match="side files"):
        check_onnx(helper.make_model(sparse), "sparse")
    huge = _constant_from_file("x")
    huge.graph.node[0].attribute[0].t.CopyFrom(TensorProto(name="c", dims=[1 << 20, 1 << 20], data_type=1))
    with pytest.raises(SuspectError, match="elements"):
        check_onnx(huge, "huge")


def test_a_graph_that_allocates_without_bound_stops_at_the_memory_limit():
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [3 << 28])  # 3 GiB of float32 at run time
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["n"], value=shape),
            helper.make_node("ConstantOfShape", ["n"], ["big"], value=helper.make_tensor("v", 1, [1], [1.0])),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
            helper.make_node("Flatten", ["x"], ["f"], axis=1),
            helper.make_node("Add", ["f", "total"], ["logits"]),
        ],
        "alloc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with ContainedModel("onnx", model.SerializeToString(), SandboxLimits(memory_mb=1536)) as m:
        with pytest.raises(SuspectError, match="failed on the queries: memory limit reached"):
            m.run(X)


def test_a_model_that_never_answers_is_killed_at_the_deadline():
    m = ContainedModel("torchscript", _script(_Spin()), SandboxLimits(call_timeout=3))
    started = time.monotonic()
    with pytest.raises(SuspectError, match="deadline"):
        m.run(X)
    assert time.monotonic() - started < 15
    assert m._proc.poll() is not None  # killed, not left running


def test_the_worker_dies_with_the_verifier(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(_constant_from_file("x").SerializeToString())
    code = textwrap.dedent(
        """
        import sys, time
        import numpy as np
        from onnx import helper, TensorProto
        from modelprint.suspects.sandbox import ContainedModel
        g = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"], axis=1)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])])
        m = ContainedModel("onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)],
                                                      ir_version=8).SerializeToString())
        print(m._proc.pid, flush=True)
        time.sleep(600)
        """
    )
    verifier = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(verifier.stdout.readline())
    os.kill(worker, 0)  # alive while the verifier is
    verifier.send_signal(signal.SIGKILL)
    verifier.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), f"worker {worker} outlived the verifier"


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_containment_is_enforced_or_torchscript_is_refused(forms):
    if landlock_abi() >= 1:
        suspect = TorchScriptSuspect(forms["torchscript"])
        containment = suspect.describe()["containment"]
        assert containment["filesystem"] is True and containment["limits"]["memory_mb"] == 4096
        suspect.close()
    else:
        with pytest.raises(SuspectError, match="Landlock is not available"):
            TorchScriptSuspect(forms["torchscript"])


def test_the_pickle_check_resolves_globals_through_the_memo_and_refuses_attribute_paths():
    from modelprint.suspects.pickle_check import check_pickle

    def s(text):
        return b"\x8c" + bytes([len(text)]) + text.encode()

    # "os" and "system" memoised, a decoy allowed global in between, then fetched back for STACK_GLOBAL.
    memo_trick = (b"\x80\x04" + s("os") + b"\x94" + s("collections") + s("OrderedDict") + b"\x93" + b"0"
                  + s("system") + b"\x94" + b"h\x00" + b"h\x01" + b"\x93" + s("echo hi") + b"\x85R.")  # fmt: skip
    with pytest.raises(SuspectError, match="names os.system"):
        check_pickle(memo_trick, "memo")
    dotted = b"\x80\x04" + s("collections") + s("namedtuple.__builtins__.get") + b"\x93."
    with pytest.raises(SuspectError, match="namedtuple.__builtins__.get"):
        check_pickle(dotted, "dotted")
    custom = b"\x80\x04" + s("__torch__.torch.classes.quantized") + s("LinearPackedParamsBase") + b"\x93."
    with pytest.raises(SuspectError, match="not allowed"):
        check_pickle(custom, "custom class")
    computed = b"\x80\x04" + s("os") + b"N" + b"\x93."  # a name that is not a string literal
    with pytest.raises(SuspectError):
        check_pickle(computed, "computed")


def test_scripted_and_traced_standard_layers_pass_the_code_check_and_answer(tmp_path):
    """A model scripted (not traced) calls the archive's own functions through local names;
    the allow-list must take it, as it takes traced ones."""
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(4), nn.Hardswish(), nn.MaxPool2d(2),
        nn.GroupNorm(2, 4), nn.Dropout(), nn.Upsample(scale_factor=2, mode="bilinear"), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, 10), nn.LayerNorm(10),
    ).eval()  # fmt: skip
    want = net(torch.from_numpy(X)).detach().numpy()
    for name, module in (("scripted", torch.jit.script(net)), ("traced", torch.jit.trace(net, torch.from_numpy(X)))):
        path = tmp_path / f"{name}.pt"
        torch.jit.save(module, str(path))
        suspect = TorchScriptSuspect(path)
        got = suspect.predict(torch.from_numpy(X)).probs.numpy()
        assert np.allclose(got, torch.softmax(torch.from_numpy(want), 1).numpy(), atol=1e-5), name
        suspect.close()


def test_code_that_hides_an_operator_behind_a_method_name_or_an_expression_is_refused():
    from modelprint.suspects.torchscript_code import check_torchscript_code

    shadow = (
        "class M(Module):\n"
        "  def untyped_storage(self: __torch__.M) -> int:\n    return 1\n"
        "  def forward(self: __torch__.M, x: Tensor) -> Tensor:\n    s = x.untyped_storage()\n    return x\n"
    )
    with pytest.raises(SuspectError, match="untyped_storage"):
        check_torchscript_code({"a.py": shadow}, "shadow")
    called = 'def f(x: Tensor) -> Tensor:\n  return getattr(x, "add")(x)\n'
    with pytest.raises(SuspectError, match="result of an expression"):
        check_torchscript_code({"b.py": called}, "called")
    printing = "def f(x: Tensor) -> Tensor:\n  print(x)\n  return x\n"
    with pytest.raises(SuspectError, match="print"):
        check_torchscript_code({"c.py": printing}, "print")
