"""A prediction API over HTTP: ``modelprint serve`` or any endpoint that follows its schema.

The schema (version 1; ``modelprint serve`` publishes it as OpenAPI at ``/openapi.json``):

* ``GET  {base}/v1/info`` -> ``{"input_shape": [C, H, W], "num_classes": K, "labels_only": bool,
  "max_batch": B, ...}``
* ``POST {base}/v1/predict`` with ``{"inputs_b64": <base64 of float32 little-endian N*C*H*W>,
  "shape": [N, C, H, W]}`` or ``{"inputs": <nested lists N x C x H x W>}``, values in [0, 1]
  -> ``{"labels": [N ints], "probabilities": [N x K floats]}`` (no probabilities when label-only).
* An optional bearer token: ``Authorization: Bearer <token>``.

The client is careful with a server it does not trust: every request has one wall-clock
deadline for the whole exchange (``timeout`` seconds for connecting, sending, the headers and
the body together, so a server that trickles headers or bytes is cut off); answers must come
uncompressed (the client asks for ``identity`` and refuses any ``Content-Encoding``, so no
decompression bomb) and are counted as they stream in, up to a size limit; the JSON is
checked for nesting depth before it is parsed; retries are bounded, with exponential backoff
on connection errors, timeouts, 429 and 5xx (``Retry-After`` honoured up to a cap); and the
query budget (``max_queries``) counts every query *sent*, retries included, and is never
exceeded. Every answer goes through the suspect contract's checks (count, range,
finiteness), so garbage is an error and never evidence.

What identifies the server goes into :meth:`HttpSuspect.describe` (and so into a verdict and a
verification record): the headers that name it (``Server``, ``Via``, ...), a model sha256 its
``/v1/info`` discloses, and over https the sha256 of its TLS certificate (DER) and the TLS
version. Every distinct identity seen during a verification is kept, so a server that changes
mid-way shows it. Certificates are always verified: against httpx's CA bundle (certifi), or
only against those in ``ca_file`` (an API behind a private CA).

Example::

    api = HttpSuspect("http://127.0.0.1:8000", token="s3cret", max_queries=200)
    api.predict(fp.x[:10]).labels
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import ssl
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import ParameterError, SuspectError
from .base import Suspect, register_suspect

API_PREFIX = "/v1"
MAX_RESPONSE_BYTES = 64 * 1024**2
MAX_BACKOFF_SECONDS = 30.0
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_JSON_DEPTH = 8  # the schema's answers nest 3 deep
# Response headers that say which server answered (kept, shortened, in the suspect's description).
IDENTIFYING_HEADERS = ("server", "via", "x-powered-by", "x-served-by", "x-model-version", "x-model-id")
MAX_HEADER_CHARS = 200
_DEPTH_CHUNK = 1 << 20
_QUOTE, _BACKSLASH = 0x22, 0x5C


def json_depth(data: bytes) -> int:
    """How deep ``[`` and ``{`` nest in JSON text ``data`` (strings ignored), without parsing it:
    a 200,000-deep answer would otherwise exhaust the parser's recursion.

    One pass over the bytes in 1 MB chunks, whatever the answer holds (a regular expression
    over strings rescans an unterminated one from every quote: quadratic). A quote is a
    string's edge unless an odd run of backslashes precedes it; a bracket counts when an even
    number of such quotes precede it. Where the text is not JSON (a backslash outside a
    string) the parser stops at that byte, and the depth up to there is exact."""
    depth = deepest = 0
    quotes = 0  # unescaped quotes so far: odd while inside a string
    run = 0  # backslashes ending the previous chunk
    view = memoryview(data)
    for start in range(0, len(data), _DEPTH_CHUNK):
        chunk = np.frombuffer(view[start : start + _DEPTH_CHUNK], np.uint8)
        index = np.arange(len(chunk))
        slash = chunk == _BACKSLASH
        # backslashes in the run that ends just before each byte
        last_other = np.maximum.accumulate(np.where(slash, -1, index))
        before = np.empty(len(chunk), np.int64)
        before[0] = run
        ends = index[:-1] - last_other[:-1]  # run length ending at i - 1
        before[1:] = np.where(last_other[:-1] < 0, ends + run, ends)
        edge = (chunk == _QUOTE) & (before % 2 == 0)
        inside = (np.cumsum(edge) + quotes) % 2 == 1
        steps = np.where(
            inside, 0, (chunk == 0x5B).astype(np.int8) + (chunk == 0x7B) - (chunk == 0x5D) - (chunk == 0x7D)
        )
        running = np.cumsum(steps, dtype=np.int64) + depth
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
        quotes += int(edge.sum())
        run = int(index[-1] - last_other[-1]) + (run if last_other[-1] < 0 else 0)
    return deepest


class _LoopThread:
    """An asyncio loop in a daemon thread: a synchronous caller runs one exchange with a hard
    deadline (``asyncio.wait_for`` cancels it, whatever the server is doing), also from inside
    a notebook that runs its own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="modelprint-http")
        self.thread.start()
        # A suspect dropped without close() still stops its thread.
        weakref.finalize(self, self.loop.call_soon_threadsafe, self.loop.stop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        return future.result(timeout + 30)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


def encode_inputs(x: np.ndarray) -> dict[str, Any]:
    """The compact request body for queries ``x`` (N, C, H, W): base64 float32 little-endian."""
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    return {"inputs_b64": base64.b64encode(data).decode("ascii"), "shape": [int(s) for s in x.shape]}


class _Retryable(Exception):
    """A failure worth another try: connection trouble, a deadline, 429 or 5xx."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


@register_suspect("http")
class HttpSuspect(Suspect):
    """A remote prediction API; see the module docstring for the schema and the safeguards.

    ``url``: the base (``http://host:port``, a path prefix allowed); ``token``: bearer token;
    ``timeout``: seconds per request, in all; ``retries``: further tries after a failure;
    ``backoff``: first wait in seconds, doubled each retry; ``max_queries``: most queries that
    may be answered; ``batch_size``: queries per request (at most the server's ``max_batch``);
    ``nested``: send nested lists instead of base64.

    Example::

        api = HttpSuspect("http://127.0.0.1:8000", token="...", max_queries=100)
        verify(fp, api).verdict
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_queries: int | None = None,
        batch_size: int | None = None,
        nested: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        ca_file: str | None = None,
    ) -> None:
        super().__init__()
        import httpx

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ParameterError(f"a suspect URL must be http(s)://host[:port][/prefix], got {url!r}")
        if not (math.isfinite(timeout) and 0 < timeout <= 3600) or retries < 0 or not 0 <= backoff <= 60:
            raise ParameterError(
                f"timeout must be a number of seconds in (0, 3600], retries at least 0, backoff in [0, 60]; "
                f"got timeout {timeout}, retries {retries}, backoff {backoff}"
            )
        if max_queries is not None and max_queries < 1:
            raise ParameterError(f"max_queries must be at least 1, got {max_queries}")
        base = url.rstrip("/")
        for suffix in (f"{API_PREFIX}/predict", f"{API_PREFIX}/info", API_PREFIX):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        self.base, self.timeout, self.retries, self.backoff = base, timeout, retries, backoff
        self.max_queries, self.nested, self.max_response_bytes = max_queries, nested, max_response_bytes
        self.retried = 0
        self.identities: list[dict[str, Any]] = []  # each distinct server identity seen, in order
        self.disclosed_sha256: str | None = None  # the weights' sha256, when /v1/info discloses it
        self._tls = _tls_context(ca_file)
        self._headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._httpx = httpx
        self._client: Any = None  # made inside the loop's thread on first use
        self._loop = _LoopThread()
        self.location = self.identity = base
        info = self._call("GET", f"{API_PREFIX}/info", None)
        self._read_info(info)
        if batch_size is not None:
            if batch_size < 1:
                raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
            self.max_batch = min(self.max_batch, batch_size)

    def _read_info(self, info: Any) -> None:
        try:
            shape = tuple(int(v) for v in info["input_shape"])
            classes = int(info["num_classes"])
            labels_only = info.get("labels_only", False)
            max_batch = int(info.get("max_batch", 64))
        except (TypeError, KeyError, ValueError):
            where = f"{self.base}{API_PREFIX}/info"
            raise SuspectError(f"{where} did not describe the model (input_shape, num_classes)") from None
        if len(shape) != 3 or min(shape) < 1 or classes < 2 or max_batch < 1 or not isinstance(labels_only, bool):
            raise SuspectError(f"{self.base}{API_PREFIX}/info is malformed: {json.dumps(info)[:200]}")
        self.input_shape, self.num_classes, self.labels_only, self.max_batch = shape, classes, labels_only, max_batch
        disclosed = info.get("model_sha256")
        if isinstance(disclosed, str) and re.fullmatch(r"[0-9a-f]{64}", disclosed):
            self.disclosed_sha256 = disclosed

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "retries": self.retried, "max_queries": self.max_queries}
        described |= self.identities[0] if self.identities else {}
        if self.disclosed_sha256:
            described["disclosed_model_sha256"] = self.disclosed_sha256
        if len(self.identities) > 1:  # the server changed during the verification
            described["identities_seen"] = self.identities
        return described

    def close(self) -> None:
        if self._client is not None:
            try:
                self._loop.run(self._client.aclose(), 5)
            except Exception:  # noqa: BLE001 (closing a connection the server already dropped)
                pass
        self._loop.close()

    # -- one batch ------------------------------------------------------------------------------
    def _answer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(x)
        body = {"inputs": x.tolist()} if self.nested else encode_inputs(x)
        reply = self._call("POST", f"{API_PREFIX}/predict", body, queries=n)
        if not isinstance(reply, dict) or "labels" not in reply:
            raise SuspectError(f"{self.base} answered without 'labels': {json.dumps(reply)[:200]}")
        probs = None if self.labels_only else reply.get("probabilities")
        if not self.labels_only and probs is None:
            raise SuspectError(f"{self.base} said it answers with scores but sent no 'probabilities'")
        return reply["labels"], probs

    # -- transport: deadline, size limit, retries -------------------------------------------------
    def _call(self, method: str, path: str, body: Any, queries: int = 0) -> Any:
        last = ""
        for attempt in range(self.retries + 1):
            if self.max_queries is not None and self.queries_sent + queries > self.max_queries:
                lost = self.queries_sent - self.queries
                raise SuspectError(
                    f"the query budget is spent: {self.queries_sent} of {self.max_queries} queries sent "
                    f"({self.queries} answered, {lost} lost to failed requests), {queries} more needed; "
                    "raise `max_queries` or verify sequentially",
                    params=("max_queries",),
                )
            if attempt:
                self.retried += 1
            self.requests += 1
            self.queries_sent += queries
            try:
                return self._once(method, path, body)
            except _Retryable as e:
                last = str(e)
                if attempt == self.retries:
                    break
                wait = min(MAX_BACKOFF_SECONDS, self.backoff * 2**attempt)
                time.sleep(min(MAX_BACKOFF_SECONDS, max(wait, e.wait or 0.0)))
        tries = self.retries + 1
        raise SuspectError(f"{self.base}{path}: {last} (gave up after {tries} tr{'y' if tries == 1 else 'ies'})")

    def _once(self, method: str, path: str, body: Any) -> Any:
        url = f"{self.base}{path}"
        try:
            status, retry_after, data = self._loop.run(self._exchange(method, url, body), self.timeout)
        except TimeoutError:
            raise _Retryable(f"no complete answer within {self.timeout:g} s") from None
        except self._httpx.TimeoutException:
            raise _Retryable(f"no answer within {self.timeout:g} s") from None
        except self._httpx.TransportError as e:
            raise _Retryable(f"cannot reach the server ({type(e).__name__}: {str(e)[:120]})") from None
        except self._httpx.HTTPError as e:  # a protocol violation: malformed status line or headers
            raise SuspectError(f"{url} broke the HTTP protocol ({type(e).__name__}: {str(e)[:120]})") from None
        if status in RETRY_STATUSES:
            # delay-seconds only (RFC 9110), ASCII digits, capped: anything else is no hint at all
            wait = float(retry_after) if retry_after and re.fullmatch(r"[0-9]{1,6}", retry_after) else None
            raise _Retryable(f"the server answered HTTP {status}", wait)
        detail = _detail(data)
        if status in (401, 403):
            raise SuspectError(
                f"{url}: HTTP {status}, not authorised ({detail}); pass the API's token as `token`", params=("token",)
            )
        if status == 413:
            raise SuspectError(
                f"{url}: HTTP 413, request too large ({detail}); lower `batch_size`", params=("batch_size",)
            )
        if status != 200:
            raise SuspectError(f"{url}: HTTP {status} ({detail})")
        return parse_json(data, url)

    async def _exchange(self, method: str, url: str, body: Any) -> tuple[int, str | None, bytes]:
        """One request and its whole answer; the caller's deadline cancels it at any point."""
        if self._client is None:
            self._client = self._httpx.AsyncClient(
                timeout=self._httpx.Timeout(self.timeout), follow_redirects=False, trust_env=False, verify=self._tls
            )
        async with self._client.stream(method, url, json=body, headers=self._headers) as r:
            self._observe(r)
            encoding = r.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise SuspectError(
                    f"{url} answered with Content-Encoding {encoding[:40]!r} although the client asked for "
                    "identity; compressed answers are refused (their decoded size is not known in advance)"
                )
            data = bytearray()
            async for chunk in r.aiter_raw():
                data += chunk
                if len(data) > self.max_response_bytes:
                    raise SuspectError(f"{url} sent more than {self.max_response_bytes} bytes; refused")
            return r.status_code, r.headers.get("retry-after"), bytes(data)

    def _observe(self, response: Any) -> None:
        """Keep the server's identity as this response shows it, when it is one not seen before."""
        identity: dict[str, Any] = {
            "server_headers": {
                h: response.headers[h][:MAX_HEADER_CHARS] for h in IDENTIFYING_HEADERS if h in response.headers
            }
        }
        stream = response.extensions.get("network_stream")
        tls = stream.get_extra_info("ssl_object") if stream is not None else None
        if tls is not None:
            certificate = tls.getpeercert(binary_form=True) or b""
            identity |= {
                "tls_certificate_sha256": hashlib.sha256(certificate).hexdigest(),
                "tls_version": tls.version(),
            }
        if identity not in self.identities:
            self.identities.append(identity)


def _tls_context(ca_file: str | None) -> ssl.SSLContext | bool:
    """What httpx verifies certificates with: its own CA bundle (True), or only ``ca_file``'s CAs."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ParameterError(f"cannot read CA certificates from {ca_file}: {e}") from None


def parse_json(data: bytes, url: str) -> Any:
    """``data`` parsed as JSON, refused when it nests deeper than ``MAX_JSON_DEPTH``."""
    if json_depth(data) > MAX_JSON_DEPTH:
        raise SuspectError(f"{url} answered JSON nested deeper than {MAX_JSON_DEPTH} levels; refused")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        raise SuspectError(f"{url} answered something that is not JSON: {data[:80]!r}") from None


def _detail(data: bytes) -> str:
    try:
        detail = json.loads(data).get("detail", "") if json_depth(data[:65536]) <= MAX_JSON_DEPTH else ""
    except (ValueError, AttributeError, RecursionError):
        detail = ""
    return str(detail)[:200] or data[:80].decode("utf-8", "replace") or "no detail"
