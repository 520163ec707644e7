"""Every bad input is one clear error and no result: corrupt files, pickle payloads, broken
outputs, servers that hang, trickle, lie or send garbage, and oversized requests."""

import copy
import json
import pickle
import re
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from modelprint.errors import SuspectError
from modelprint.export import export_model
from modelprint.models import create_model
from modelprint.serve import create_app, serve_background
from modelprint.suspects import HttpSuspect, OnnxSuspect, TorchScriptSuspect, open_suspect
from modelprint.suspects.http_api import encode_inputs
from modelprint.verify import verify

# -- files ------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the marker file: proof that something was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_corrupt_and_truncated_files_are_one_error(forms, kind, tmp_path):
    good = forms[kind].read_bytes()
    cases = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "random": np.random.default_rng(0).bytes(4096),
        "text": b"this is not a model\n",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}{forms[kind].suffix}"
        path.write_bytes(data)
        with pytest.raises(SuspectError) as exc:
            open_suspect(path)
        assert str(path) in str(exc.value) and "\n" not in str(exc.value), name
    with pytest.raises(SuspectError, match="not found"):
        open_suspect(tmp_path / f"missing{forms[kind].suffix}")


def test_a_pickle_payload_posing_as_torchscript_is_refused_before_anything_runs(forms, tmp_path):
    marker = tmp_path / "executed"
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(SuspectError, match="is a pickle"):
        TorchScriptSuspect(bare)
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"weights": _Payload(marker)}, checkpoint)  # the classic malicious torch.save file
    with pytest.raises(SuspectError, match="torch.save checkpoint"):
        TorchScriptSuspect(checkpoint)
    # a real TorchScript archive whose data.pkl was swapped for the payload
    tampered = tmp_path / "tampered.pt"
    with zipfile.ZipFile(forms["torchscript"]) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(_Payload(marker), protocol=2)
            dst.writestr(info, data)
    with pytest.raises(SuspectError, match=r"__builtin__\.exec.*refused"):
        TorchScriptSuspect(tampered)
    assert not marker.exists()


def test_a_flipped_byte_inside_torchscript_fails_its_checksum(forms, tmp_path):
    data = bytearray(forms["torchscript"].read_bytes())
    with zipfile.ZipFile(forms["torchscript"]) as z:
        member = next(i for i in z.infolist() if i.filename.endswith("/data/2"))
    off = member.header_offset  # the local header's own name and extra lengths (torch pads the extra to align data)
    name_len, extra_len = (
        int.from_bytes(data[off + 26 : off + 28], "little"),
        int.from_bytes(data[off + 28 : off + 30], "little"),
    )
    at = off + 30 + name_len + extra_len + 1  # inside the stored bytes
    data[at] ^= 0xFF
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(SuspectError, match="checksum"):
        TorchScriptSuspect(path)


def test_onnx_with_side_files_or_custom_operators_is_refused(forms, tmp_path):
    import onnx

    proto = onnx.load(str(forms["onnx"]))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="w.data",
                    size_threshold=0)  # fmt: skip
    with pytest.raises(SuspectError, match="side files"):
        OnnxSuspect(tmp_path / "ext.onnx")
    custom = copy.deepcopy(proto)
    custom.opset_import.add(domain="com.example.native", version=1)
    (tmp_path / "custom.onnx").write_bytes(custom.SerializeToString())
    with pytest.raises(SuspectError, match="custom operator sets"):
        OnnxSuspect(tmp_path / "custom.onnx")


def test_wrong_input_shape_and_class_count_are_refused_before_querying(label_fp, tmp_path):
    big = create_model("cnn", num_classes=10, input_shape=(1, 16, 16), width=4)
    suspect = open_suspect(export_model(big, tmp_path / "big.onnx", "onnx"))
    with pytest.raises(SuspectError, match="1x8x8.*1x16x16"):
        verify(label_fp, suspect)
    three = create_model("cnn", num_classes=3, input_shape=(1, 8, 8), width=4)
    with pytest.raises(SuspectError, match="10 classes"):
        verify(label_fp, open_suspect(export_model(three, tmp_path / "three.pt", "torchscript")))
    assert suspect.queries == 0


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_nan_outputs_are_an_error_not_a_verdict(zoo_source, label_fp, fmt, tmp_path):
    broken = copy.deepcopy(zoo_source)
    with torch.no_grad():
        broken.net.classifier.bias.fill_(float("nan"))
    suspect = open_suspect(export_model(broken, tmp_path / f"nan.{'onnx' if fmt == 'onnx' else 'pt'}", fmt))
    with pytest.raises(SuspectError, match="not finite"):
        verify(label_fp, suspect)


# -- servers that misbehave -----------------------------------------------------------------------

INFO = {"input_shape": [1, 8, 8], "num_classes": 10, "labels_only": False, "max_batch": 64}


class _Misbehaving(BaseHTTPRequestHandler):
    mode = "ok"
    posts = 0

    def log_message(self, *args):
        pass

    def _send(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {} if self.mode == "bad-info" else INFO)

    def do_POST(self):
        type(self).posts += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = body["shape"][0]
        good = {"labels": [1] * n, "probabilities": [[0.1] * 10] * n}
        mode = self.mode
        if mode == "hang":
            time.sleep(3)
        elif mode == "trickle":  # headers at once, then a byte every 0.1 s: no read ever times out
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        elif mode == "slow-headers":  # one header line every 0.1 s, for ever: each read succeeds in time
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(100):
                self.wfile.write(f"X-Slow-{i}: 1\r\n".encode())
                self.wfile.flush()
                time.sleep(0.1)
        elif mode == "gzip-bomb":  # 1 KB on the wire, gigabytes once decoded twice
            import gzip

            data = gzip.compress(gzip.compress(b"\0" * (64 << 20)))
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip, gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif mode.startswith("unterminated"):  # a string that never closes, full of escaped quotes:
            # a naive scan restarts at each of them and runs to the end (quadratic)
            unit = {"unterminated": b'\\"', "unterminated-text": b'ab\\"', "unterminated-brackets": b'[\\"{'}[mode]
            self._send(200, b'{"labels": ["' + unit * (6_000_000 // len(unit)))
        elif mode == "bad-retry-after":  # a hint in no format the standard allows
            data = b'{"detail": "busy"}'
            self.send_response(503)
            self.send_header("Retry-After", "\u00b2".encode().decode("latin-1"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif mode == "long-number":  # a label of 5,000 digits: past Python's integer parsing limit
            self._send(200, b'{"labels": [' + b"7" * 5000 + b"]}")
        elif mode == "deep":
            self._send(200, b"[" * 900 + b"]" * 900)  # under the size cap, 900 deep
        elif mode == "alternate" and type(self).posts % 2 == 1:
            self._send(503, {"detail": "busy"})
        elif mode == "garbage":
            self._send(200, b"<html>oops</html>", "text/html")
        elif mode == "wrong-count":
            self._send(200, {"labels": [1] * (n - 1), "probabilities": [[0.1] * 10] * (n - 1)})
        elif mode == "nan":
            self._send(200, b'{"labels": [1], "probabilities": [[NaN, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]]}')
        elif mode == "label-range":
            self._send(200, {**good, "labels": [99] * n})
        elif mode == "huge":
            self._send(200, {**good, "padding": "x" * 8000})
        elif mode == "flaky" and type(self).posts == 1:
            self._send(503, {"detail": "busy"})
        else:
            self._send(200, good)


@pytest.fixture()
def fake_server():
    servers = []

    def start(mode):
        handler = type("Handler", (_Misbehaving,), {"mode": mode, "posts": 0})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


X = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "mode, message",
    [
        ("hang", "answer within 0.5 s"),
        ("slow-headers", "no complete answer within 0.5 s"),
        ("gzip-bomb", "Content-Encoding 'gzip, gzip'"),
        ("deep", "nested deeper than 8"),
        ("trickle", "no complete answer within 0.5 s"),
        ("garbage", "not JSON"),
        ("wrong-count", "0 labels for 1 queries|shape"),
        ("nan", "not finite"),
        ("label-range", "outside 0..9"),
        ("huge", "more than 6000 bytes"),
        ("bad-retry-after", "HTTP 503"),
        ("long-number", "not JSON"),
    ],
)
def test_a_misbehaving_server_is_one_error_and_no_result(fake_server, mode, message):
    url, _ = fake_server(mode)
    # The stalling servers meet a 0.5 s deadline; the others get 3 s, so that a busy machine
    # (the test files run in parallel) cannot turn their error into a timeout.
    stalls = "within 0.5 s" in message
    api = HttpSuspect(url, timeout=0.5 if stalls else 3.0, retries=1, backoff=0.0, max_response_bytes=6000)
    started = time.monotonic()
    with pytest.raises(SuspectError, match=message):
        api.predict(X)
    assert time.monotonic() - started < (5 if stalls else 10)  # the deadline holds however the server stalls
    assert api.queries == 0


def test_the_query_budget_counts_queries_sent_retries_included(fake_server):
    url, handler = fake_server("alternate")  # 503 on every other request
    api = HttpSuspect(url, retries=3, backoff=0.0, max_queries=20, batch_size=5)
    with pytest.raises(SuspectError, match="query budget is spent: 20 of 20 queries sent"):
        api.predict(torch.rand(20, 1, 8, 8))
    assert api.queries_sent == 20 and handler.posts * 5 == 20 and api.queries == 10


@pytest.mark.parametrize("mode", ["unterminated", "unterminated-text", "unterminated-brackets"])
def test_an_unterminated_string_is_checked_in_linear_time_inside_the_deadline(fake_server, mode):
    url, _ = fake_server(mode)
    api = HttpSuspect(url, timeout=5, retries=0, max_response_bytes=8_000_000)
    started = time.monotonic()
    with pytest.raises(SuspectError, match="not JSON"):
        api.predict(X)
    assert time.monotonic() - started < 5 + 3  # the deadline plus a linear check of 6 MB


def test_json_depth_is_measured_without_parsing():
    from modelprint.suspects.http_api import json_depth

    assert json_depth(b'{"labels": [1, 2], "probabilities": [[0.5, 0.5]]}') == 3
    assert json_depth(b'{"detail": "[[[[[[[[[[ in a string ]"}') == 1
    assert json_depth(b"[" * 1000 + b"]" * 1000) == 1000
    assert json_depth(b'{"detail": "a \\" [[[[ an escaped quote stays in the string"}') == 1
    assert json_depth(b'["\\\\", [[1]]]') == 3  # an escaped backslash ends before the quote
    assert json_depth(b'["' + b"x" * (3 << 20) + b'", [[[1]]]]') == 4  # across the 1 MB chunks


def test_retries_with_backoff_then_the_answer_counts_once(fake_server):
    url, handler = fake_server("flaky")
    api = HttpSuspect(url, retries=2, backoff=0.01)
    assert api.predict(X).labels.tolist() == [1]
    assert handler.posts == 2 and api.retried == 1 and api.queries == 1 and api.queries_sent == 2


def test_a_server_that_is_not_there_or_does_not_describe_itself(fake_server):
    url, _ = fake_server("bad-info")
    with pytest.raises(SuspectError, match="did not describe"):
        HttpSuspect(url)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SuspectError, match="cannot reach.*gave up after 2 tries"):
        HttpSuspect(f"http://127.0.0.1:{port}", retries=1, backoff=0.0)


# -- the server's own limits ------------------------------------------------------------------------


def test_serve_limits_size_batch_token_and_values(zoo_source):
    from starlette.testclient import TestClient

    client = TestClient(create_app(zoo_source, token="t", max_batch=4, max_request_bytes=10_000))
    auth = {"Authorization": "Bearer t"}
    x = torch.rand(3, 1, 8, 8).numpy()
    assert client.post("/v1/predict", json=encode_inputs(x)).status_code == 401
    assert client.post("/v1/predict", json=encode_inputs(x), headers={"Authorization": "Bearer x"}).status_code == 401
    assert client.get("/health").status_code == 200  # liveness needs no token
    ok = client.post("/v1/predict", json=encode_inputs(x), headers=auth)
    assert ok.status_code == 200 and ok.json()["labels"] == zoo_source.predict(torch.from_numpy(x)).tolist()
    too_many = client.post("/v1/predict", json=encode_inputs(np.zeros((5, 1, 8, 8), np.float32)), headers=auth)
    assert too_many.status_code == 422 and "limit of 4" in too_many.json()["detail"]
    big = client.post("/v1/predict", content=b"[" * 20_000, headers={**auth, "content-type": "application/json"})
    assert big.status_code == 413
    bad = [np.full((1, 1, 8, 8), 2.0, np.float32), np.full((1, 1, 8, 8), np.nan, np.float32), np.zeros((1, 1, 4, 4))]
    for x_bad in bad:
        r = client.post("/v1/predict", json=encode_inputs(x_bad.astype(np.float32)), headers=auth)
        assert r.status_code == 422, x_bad.shape
    r = client.post("/v1/predict", json={"inputs_b64": "%%%", "shape": [1, 1, 8, 8]}, headers=auth)
    assert r.status_code == 422 and "inputs_b64" in r.json()["detail"] and "Nested" not in r.json()["detail"]
    r = client.post("/v1/predict", json={"inputs": [[[[0.5] * 8] * 8]], "inputs_b64": "AAAA"}, headers=auth)
    assert r.status_code == 422


def test_an_oversized_request_from_our_client_is_a_clear_error(zoo_source):
    with serve_background(create_app(zoo_source, max_request_bytes=3_000)) as url:
        api = HttpSuspect(url, retries=0)
        with pytest.raises(SuspectError, match="413.*`batch_size`"):
            api.predict(torch.rand(10, 1, 8, 8))
        assert HttpSuspect(url, batch_size=2).predict(torch.rand(10, 1, 8, 8)).labels.shape == (10,)


def test_chunked_body_over_the_limit_is_cut_off(zoo_source):
    import httpx

    with serve_background(create_app(zoo_source, max_request_bytes=3_000)) as url:

        def chunks():
            yield b'{"inputs_b64": "'
            for _ in range(100):
                yield b"A" * 100

        r = httpx.post(f"{url}/v1/predict", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_serve_answers_400_for_non_json_and_422_for_pixels_that_are_not_numbers(zoo_source):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(zoo_source))
    r = client.post("/v1/predict", content=b"not json {", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"] == "the body is not JSON text"
    for pixel in ("0.5", True):
        image = [[[pixel] * 8] * 8]
        r = client.post("/v1/predict", json={"inputs": [image]})
        assert r.status_code == 422, pixel
    assert client.post("/v1/predict", json={"inputs": [[[[0, 1] * 4] * 8]]}).status_code == 200  # JSON ints are numbers


def test_with_a_token_the_schema_and_docs_need_it_too(zoo_source):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(zoo_source, token="s3cret"))
    for path in ("/openapi.json", "/docs"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
    assert client.get("/health").status_code == 200
    open_client = TestClient(create_app(zoo_source))
    assert open_client.get("/openapi.json").status_code == 200


def test_the_docs_page_needs_nothing_from_the_network(zoo_source):
    from fastapi.testclient import TestClient

    page = TestClient(create_app(zoo_source)).get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "POST /v1/predict<" in text and "GET /v1/info<" in text and "<code>PredictResponse</code>" in text
    # no script, style sheet or font fetched from anywhere (Swagger UI's CDN left the page blank offline)
    assert "<script" not in text and "<link" not in text and not re.search(r"(src|href)=['\"]https?://", text)


def test_idle_and_slow_connections_neither_block_health_nor_stay_open(zoo_source):
    import socket

    import httpx

    with serve_background(create_app(zoo_source), read_timeout=1.0) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(100)]
        slow = [socket.create_connection((host, int(port))) for _ in range(20)]
        for s in slow:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 3.0  # not queued behind the idle sockets (it used to be a 503)
        for _ in range(8):  # a header line every 0.25 s: each arrives in time, the request never completes
            for s in slow:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            time.sleep(0.25)
        for s in idle + slow:
            s.settimeout(3)
            try:
                data = s.recv(1024)  # a socket.timeout here fails the test: the server kept it open
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 4"), data[:40]  # closed by the server
            s.close()
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200


def test_predictions_over_the_concurrency_limit_get_a_fast_503_and_health_still_answers(zoo_source):
    import concurrent.futures

    import httpx

    slow = copy.deepcopy(zoo_source)
    forward = slow.forward

    def sleepy(x):
        time.sleep(0.5)
        return forward(x)

    slow.forward = sleepy
    body = encode_inputs(np.zeros((1, 1, 8, 8), np.float32))
    with serve_background(create_app(slow, max_concurrent=2)) as url:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/predict", json=body, timeout=30) for _ in range(8)]
            time.sleep(0.2)
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
            codes = [f.result().status_code for f in futures]
        busy = [f.result() for f in futures if f.result().status_code == 503]
    assert set(codes) == {200, 503} and codes.count(200) >= 2
    assert busy[0].headers["retry-after"] == "1" and "busy" in busy[0].json()["detail"]


def _slow_reader(host, port, body: bytes):
    """A client that sends a whole prediction request, then never reads the answer (its receive
    buffer kept tiny, so the server's writes stall at once)."""
    import socket

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.connect((host, port))
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    s.sendall(head.encode() + body)
    return s


def test_slow_readers_neither_hold_prediction_slots_nor_stay_open(zoo_source):
    import httpx

    # answers of several MB: more than the kernel's socket buffers take, so the server's writes stall
    batch = np.random.default_rng(0).random((30_000, 1, 8, 8), dtype=np.float32)
    body = json.dumps(encode_inputs(batch)).encode()
    app = create_app(zoo_source, max_concurrent=2, max_batch=30_000, max_request_bytes=16 << 20)
    with serve_background(app, read_timeout=1.0) as url:
        host, port = url.removeprefix("http://").split(":")
        readers = [_slow_reader(host, int(port), body) for _ in range(4)]
        time.sleep(3)  # their predictions are computed; their answers are stuck in the socket
        started = time.monotonic()
        for _ in range(4):  # every prediction slot is free: the slow readers hold none
            answer = httpx.post(f"{url}/v1/predict", json=encode_inputs(batch[:2]), timeout=5)
            assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < 3
        time.sleep(1.5)  # past two read periods since their answers started: each has been cut off
        for s in readers:
            s.settimeout(3)
            received = 0
            try:
                while chunk := s.recv(65536):  # what was in flight, then the end of the connection
                    received += len(chunk)
            except ConnectionResetError:
                pass
            s.close()
            assert received < 5 * 1024 * 1024  # never the whole answer (over 6 MB): the rest was dropped


def test_serve_stops_within_seconds_of_sigterm_whatever_its_clients_do(forms):
    """`modelprint serve` in its own process, held by slow readers, idle sockets and a client
    that trickles its headers, with a read timeout longer than the test: SIGTERM still ends it."""
    import signal
    import socket

    from .conftest import start_serve

    proc, port = start_serve(forms["model"], "--max-batch", "30000", "--max-request-mb", "16", "--read-timeout", "120",
                             "--no-access-log")  # fmt: skip
    clients = []
    try:
        batch = np.random.default_rng(0).random((15_000, 1, 8, 8), dtype=np.float32)
        body = json.dumps(encode_inputs(batch)).encode()
        clients += [_slow_reader("127.0.0.1", port, body) for _ in range(2)]
        clients += [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        clients[-1].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(timeout=30)
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in clients:
            c.close()


def test_the_docs_pages_example_request_is_answered_at_the_servers_address(zoo_source):
    """The page's example was answered 422 (`shape` beside nested inputs) and named HOST:PORT."""
    import html as html_module
    import shlex
    import subprocess

    import httpx

    with serve_background(create_app(zoo_source)) as url:
        page = httpx.get(f"{url}/docs", timeout=10).text
        example = html_module.unescape(re.search(r"<pre>(curl [^<]+)</pre>", page).group(1))
        assert f"curl -s {url}/v1/predict" in example and "HOST:PORT" not in page
        run = subprocess.run(shlex.split(example), capture_output=True, text=True, timeout=30)
        answer = json.loads(run.stdout)
        assert len(answer["labels"]) == 1 and len(answer["probabilities"][0]) == 10, run.stdout
    assert "`" not in re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)  # code spans rendered, not backticks


def test_a_large_input_gets_a_base64_example_that_is_answered():
    import html as html_module
    import subprocess

    import httpx

    big = create_model("cnn", num_classes=10, input_shape=(3, 64, 64), width=4)
    with serve_background(create_app(big)) as url:
        page = httpx.get(f"{url}/docs", timeout=10).text
        example = html_module.unescape(re.search(r"<pre>(python -c [^<]+)</pre>", page).group(1))
        run = subprocess.run(
            ["bash", "-c", example.replace("python -c", f"{sys.executable} -c", 1)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert len(json.loads(run.stdout)["labels"]) == 1, run.stdout + run.stderr


def test_the_access_log_goes_to_stderr_as_documented(forms):
    import httpx

    from .conftest import start_serve

    proc, port = start_serve(forms["model"], separate_stderr=True)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=10).status_code == 200
    finally:
        proc.terminate()
        out, err = (b.decode() for b in proc.communicate(timeout=30))
    assert "GET /v1/info" in err and "GET /v1/info" not in out, (out, err)
