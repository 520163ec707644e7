"""A prediction API for a model file: FastAPI + uvicorn, the schema ``HttpSuspect`` speaks.

It exists so black-box verification can be tested end to end against something that looks
like a commercial API: batch requests, JSON with base64 or nested lists, a bearer token, a
label-only mode, and limits on request and batch size. Endpoints (OpenAPI at
``/openapi.json``, browsable at ``/docs``):

* ``GET  /v1/info``    what the model takes and answers (input shape, classes, limits);
* ``POST /v1/predict`` labels, and probabilities unless label-only, for a batch;
* ``GET  /health``     liveness, no token needed.

Errors are JSON ``{"detail": ...}``: 400 for a body that is not JSON, 401 without the token,
413 for a body over ``max_request_bytes``, 422 for malformed inputs (wrong shape, values
outside [0, 1], NaN, pixels that are strings or booleans rather than numbers) or a batch over
``max_batch``, 503 (with ``Retry-After``) when ``max_concurrent`` predictions are already
running, never a 500 for anything a client can send. The OpenAPI schema states the exact
shape, range and batch limit of the model served; with a token set, the schema and the docs
need it too.

It stays up under idle and slow clients: :func:`serve` runs uvicorn with a connection
protocol that closes any connection that has not delivered a complete request (head and
body) within ``read_timeout`` seconds of connecting or of its previous answer, idle
keep-alive connections included, so a few hundred slow or silent sockets cannot hold the
server; ``/health`` is never behind the prediction limit. Every request is logged
(uvicorn's access log) unless ``access_log=False``.

Example::

    app = create_app(load_model("owner.safetensors"), labels_only=True, token="s3cret")
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hmac
import html
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._io import html_with_code
from ._lazy import uvicorn as import_uvicorn
from .models import ModelprintModel, weights_digest
from .suspects.base import softmax

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024**2
DEFAULT_MAX_CONCURRENT = 32
DEFAULT_READ_TIMEOUT = 10.0
API_VERSION = 1


# A base64 string of standard alphabet with padding: what ``inputs_b64`` must look like.
BASE64_PATTERN = r"^[A-Za-z0-9+/]*={0,2}$"


def request_models(shape: tuple[int, int, int], max_batch: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """The two request bodies for a model taking ``shape`` (C, H, W), exact in the OpenAPI schema:
    nested lists N x C x H x W of values in [0, 1] (1 <= N <= max_batch), or base64 with its shape."""
    c, h, w = shape
    pixel = Annotated[float, Field(ge=0.0, le=1.0, strict=True)]  # numbers only: no "0.5", no true
    row = Annotated[list[pixel], Field(min_length=w, max_length=w)]
    channel = Annotated[list[row], Field(min_length=h, max_length=h)]
    image = Annotated[list[channel], Field(min_length=c, max_length=c)]
    strict = ConfigDict(extra="forbid")
    nested = create_model(
        "NestedInputs",
        __config__=strict,
        inputs=(
            Annotated[list[image], Field(min_length=1, max_length=max_batch)],
            Field(description=f"N x {c} x {h} x {w} nested lists, values in [0, 1], 1 <= N <= {max_batch}"),
        ),
    )
    encoded = create_model(
        "Base64Inputs",
        __config__=strict,
        inputs_b64=(
            str,
            Field(pattern=BASE64_PATTERN, description="base64 of N*C*H*W float32 little-endian values, C order"),
        ),
        shape=(
            tuple[Annotated[int, Field(ge=1, le=max_batch)], Literal[c], Literal[h], Literal[w]],  # type: ignore[valid-type]
            Field(description=f"[N, {c}, {h}, {w}], 1 <= N <= {max_batch}"),
        ),
    )
    return nested, encoded


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in one line")


class PredictResponse(BaseModel):
    labels: list[int] = Field(description="top-1 class per image")
    probabilities: list[list[float]] | None = Field(None, description="N x classes; absent when label-only")


class InfoResponse(BaseModel):
    api_version: int
    input_shape: list[int] = Field(description="[C, H, W]")
    num_classes: int
    classes: list[str]
    labels_only: bool
    max_batch: int
    max_request_bytes: int
    input_range: list[float] = Field(description="every value must lie in this closed range")
    model_sha256: str | None = Field(None, description="weights' sha256, only when the server discloses it")


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes. The body is read here, counted as
    it streams in (a missing or lying Content-Length does not get past it), and handed to the
    app only when complete and under the limit, so nothing beyond the limit is ever buffered."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _send_json(send, 413, {"detail": f"request body over {self.limit} bytes"})
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                await _send_json(send, 413, {"detail": f"request body over {self.limit} bytes"})
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _PredictLimit:
    """ASGI middleware: at most ``limit`` predictions in flight; the next gets a fast 503 with
    ``Retry-After`` instead of a place in a queue. Nothing else (``/health``, ``/v1/info``) is
    counted, so liveness checks answer however busy the model is. The event loop is one
    thread, so a plain counter is safe."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit, self.running = app, limit, 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != "/v1/predict":
            await self.app(scope, receive, send)
            return
        if self.running >= self.limit:
            detail = f"busy: {self.limit} predictions already running; retry shortly"
            await _send_json(send, 503, {"detail": detail}, [(b"retry-after", b"1")])
            return
        self.running += 1
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held, self.running = False, self.running - 1

        async def answer(message: dict) -> None:
            # The slot is for computing: it is given back once the answer starts, so a client that
            # reads its answer slowly holds its own connection, never another client's prediction.
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            release()


async def _send_json(send: Any, status: int, body: dict, extra: list[tuple[bytes, bytes]] | None = None) -> None:

    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _validation_handler(max_batch: int) -> Any:
    """Turn FastAPI's validation errors into one readable line: 400 for a body that is not JSON,
    422 for a batch over ``max_batch`` or a malformed request (the first error of the body's form)."""

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "the body is not JSON text"}, 400)
        for e in errors:  # a batch over the limit gets its own message (422, as the schema states the limit)
            loc = tuple(e.get("loc", ()))
            if (loc[-1:] == ("inputs",) and e.get("type") == "too_long") or (
                loc[-2:] == ("shape", 0) and e.get("type") == "less_than_equal"
            ):
                return JSONResponse({"detail": f"batch over the limit of {max_batch} images"}, 422)
        # The body is one of two forms: report the errors of the form its keys name, not of both.
        body = exc.body if isinstance(exc.body, dict) else {}
        form = "Base64Inputs" if "inputs_b64" in body else "NestedInputs" if "inputs" in body else None
        mine = [e for e in errors if form in tuple(e.get("loc", ()))] or errors
        first = mine[0] if mine else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "NestedInputs", "Base64Inputs"))
        return JSONResponse({"detail": f"malformed request: {where} {first.get('msg', '')}".strip()}, 422)

    return invalid


# The error answers /v1/predict documents in its schema.
PREDICT_ERRORS = {
    400: {"model": ErrorResponse, "description": "the body is not JSON text"},
    401: {"model": ErrorResponse, "description": "no or wrong bearer token"},
    413: {"model": ErrorResponse, "description": "body over the server's size limit"},
    422: {"model": ErrorResponse, "description": "malformed request, or a batch over the limit"},
    503: {"model": ErrorResponse, "description": "too many predictions in flight; retry after Retry-After"},
}


def _info(
    model: ModelprintModel, *, labels_only: bool, max_batch: int, max_request_bytes: int, disclose_sha256: bool
) -> InfoResponse:
    """What /v1/info says: the input the model takes, its classes and the server's limits."""
    return InfoResponse(
        api_version=API_VERSION,
        input_shape=list(model.card.input_shape),
        num_classes=model.card.num_classes,
        classes=list(model.card.classes),
        labels_only=labels_only,
        max_batch=max_batch,
        max_request_bytes=max_request_bytes,
        input_range=[0.0, 1.0],
        model_sha256=weights_digest(model) if disclose_sha256 else None,
    )


def create_app(
    model: ModelprintModel,
    *,
    labels_only: bool = False,
    token: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    disclose_sha256: bool = False,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    device: str = "cpu",
) -> Any:
    """The FastAPI app answering for ``model`` on ``device``; see the module docstring for the endpoints."""
    if max_batch < 1 or max_request_bytes < 1 or max_concurrent < 1:
        raise ValueError("max_batch, max_request_bytes and max_concurrent must be positive")
    model = model.to(device).eval()
    shape = tuple(model.card.input_shape)
    info = _info(
        model,
        labels_only=labels_only,
        max_batch=max_batch,
        max_request_bytes=max_request_bytes,
        disclose_sha256=disclose_sha256,
    )
    app = FastAPI(
        title="modelprint prediction API",
        version=str(API_VERSION),
        description="Image classifier behind `modelprint serve`: inputs in [0, 1], N x C x H x W.",
        # With a token, the schema and the docs are served below, behind it.
        openapi_url=None if token else "/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN: blank offline. Our own page below needs nothing.
        redoc_url=None,
    )

    authorised = _bearer(token)
    app.add_exception_handler(RequestValidationError, _validation_handler(max_batch))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    if token:

        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorised)])
        def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorised)])
    def docs(request: Request) -> HTMLResponse:
        base = str(request.base_url).rstrip("/")
        return HTMLResponse(docs_page(app.openapi(), info.model_dump(), base, token_required=bool(token)))

    @app.get("/v1/info", response_model=InfoResponse, dependencies=[Depends(authorised)])
    def get_info() -> InfoResponse:
        return info

    _add_predict(app, model, request_models(shape, max_batch), labels_only, device, authorised)
    return _PredictLimit(_BodyLimit(app, max_request_bytes), max_concurrent)


def _bearer(token: str | None) -> Any:
    """The dependency that lets a request through only with ``Bearer token`` (every request without a token)."""

    async def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return authorised


def _add_predict(
    app: Any, model: ModelprintModel, bodies: tuple[Any, Any], labels_only: bool, device: str, authorised: Any
) -> None:
    """``POST /v1/predict``: the body nested or base64 (``bodies``), one forward pass at a time."""
    nested, encoded = bodies
    shape = tuple(model.card.input_shape)
    lock = threading.Lock()  # one forward at a time: torch already uses every core for one batch

    def predict(req: Any) -> PredictResponse:
        x = _decode(req, shape)
        with lock, torch.no_grad():
            logits = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
        labels = logits.argmax(1).tolist()
        if labels_only:
            return PredictResponse(labels=labels)
        return PredictResponse(labels=labels, probabilities=softmax(logits).tolist())

    # Set after the fact: FastAPI reads the body's type from the annotation, and these classes are made per model.
    predict.__annotations__ = {"req": nested | encoded, "return": PredictResponse}
    app.post(
        "/v1/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(authorised)],
        responses=PREDICT_ERRORS,  # type: ignore[arg-type]
        summary="Labels, and probabilities unless label-only, for a batch of images",
    )(predict)


def _decode(req: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The batch as float32 (N, C, H, W); the schema has already checked shapes, ranges and limits."""
    if hasattr(req, "inputs"):
        x = np.asarray(req.inputs, dtype=np.float32)
    else:
        try:
            raw = base64.b64decode(req.inputs_b64, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, "inputs_b64 is not valid base64") from None
        n = req.shape[0]
        if len(raw) != 4 * n * int(np.prod(shape)):
            raise HTTPException(422, f"inputs_b64 holds {len(raw)} bytes; shape {list(req.shape)} needs 4 x N*C*H*W")
        x = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(req.shape)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise HTTPException(422, "input values must be finite and in [0, 1]")
    return np.ascontiguousarray(x)


# On SIGTERM or Ctrl-C, open connections get this long to finish before the server stops anyway.
SHUTDOWN_SECONDS = 3


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline: a connection must deliver a complete request,
    head and body, within ``read_timeout`` seconds of connecting or of its previous answer, or
    it is closed. uvicorn alone waits for ever on a client that sends a header line a second.
    Once its answer starts, a client has between one and two periods to read it, then the
    connection is aborted (a slow reader would otherwise keep the answer's memory for ever)."""

    read_timeout = DEFAULT_READ_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._unread_seen = False  # a period has passed with an answer not yet taken
        self._arm()

    def _arm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._expire)

    def _expire(self) -> None:
        cycle, self._read_deadline = self.cycle, None
        if self.transport.is_closing() and not self.transport.get_write_buffer_size():
            return
        # bytes of an answer the client has not taken yet (close() would wait on them for ever)
        unread = self.transport.get_write_buffer_size() > 0 or (
            cycle is not None and cycle.response_started and not cycle.response_complete
        )
        if unread:
            if self._unread_seen:  # a second period without reading: cut off
                self.transport.abort()
            else:
                self._unread_seen = True
                self._arm()
        elif cycle is None or cycle.response_complete or cycle.more_body:  # waiting on the client: drop it
            self.transport.close()
        else:  # the app is computing: look again later
            self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._unread_seen = False
        self._arm()  # the next request on this connection, or the rest of this answer, gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_read_deadline", None) is not None:
            self._read_deadline.cancel()
        super().connection_lost(exc)


def _log_config(uvicorn: Any) -> dict[str, Any]:
    """uvicorn's logging, its access log on stderr with the rest (uvicorn writes it to stdout):
    stdout stays for what a command prints as its result."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def uvicorn_config(
    app: Any, host: str, port: int, read_timeout: float, access_log: bool, tls: tuple[str, str] | None = None
) -> Any:
    """The uvicorn settings :func:`serve` runs with: the guarded protocol, no connection-count
    503 (uvicorn's would count idle sockets and refuse /health too), short keep-alive; https
    with ``tls`` = (certificate file, key file), PEM."""
    uvicorn = import_uvicorn()
    if not (math.isfinite(read_timeout) and 0 < read_timeout <= 3600):
        raise ValueError(f"read_timeout must be a number of seconds in (0, 3600], got {read_timeout}")
    protocol = type("Guarded", (GuardedH11Protocol,), {"read_timeout": read_timeout})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        log_level="info" if access_log else "warning",
        access_log=access_log,
        timeout_keep_alive=min(5, max(1, int(read_timeout))),
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,  # on SIGTERM: stop after this, whatever clients do
        log_config=_log_config(uvicorn),
        lifespan="off",
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )


def serve(
    model: ModelprintModel,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    access_log: bool = True,
    tls: tuple[str, str] | None = None,
    **settings: Any,
) -> None:
    """Run the API until interrupted (uvicorn, one process); ``read_timeout``: seconds a client
    has to send each whole request; ``tls``: (certificate, key) PEM files for https;
    ``settings`` are :func:`create_app`'s (labels_only, token, max_batch, max_concurrent, ...)."""
    uvicorn = import_uvicorn()
    app = create_app(model, **settings)
    uvicorn.Server(uvicorn_config(app, host, port, read_timeout, access_log, tls)).run()


@contextlib.contextmanager
def serve_background(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    tls: tuple[str, str] | None = None,
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread for the duration of a ``with`` block and yield its
    base URL (``port=0``: a free port; https with ``tls``). For tests, benchmarks and notebooks; loopback by default;
    the same protocol and limits as :func:`serve`, without the access log."""
    uvicorn = import_uvicorn()
    server = uvicorn.Server(uvicorn_config(app, host, port, read_timeout, access_log=False, tls=tls))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# Nested lists of one image are shown whole up to this many values; a larger input gets a script.
EXAMPLE_VALUES = 4096


def docs_page(
    schema: dict[str, Any], info: dict[str, Any], base_url: str = "http://HOST:PORT", *, token_required: bool = False
) -> str:
    """The API described in one self-contained HTML page: no script, no style sheet, no font
    fetched from anywhere, so it reads the same offline. Its example request is one the server
    accepts, sent to the address the page was read from."""
    esc, text = html.escape, html_with_code  # the schema's descriptions use `code` spans

    rows = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            body = ((op.get("requestBody") or {}).get("content") or {}).get("application/json", {}).get("schema")
            answers = ", ".join(
                f"{code} {text(r.get('description', ''))}" for code, r in op.get("responses", {}).items()
            )
            names = [ref.rsplit("/", 1)[-1] for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(body or {}))]
            rows.append(
                f"<h3><code>{esc(method.upper())} {esc(path)}</code></h3><p>{text(op.get('summary', ''))}</p>"
                + (f"<p>Request body: one of {', '.join(f'<code>{esc(n)}</code>' for n in names)}</p>" if names else "")
                + f"<p>Answers: {answers}</p>"
            )
    models = "".join(
        f"<details><summary><code>{esc(name)}</code></summary><pre>{esc(json.dumps(s, indent=2))}</pre></details>"
        for name, s in schema.get("components", {}).get("schemas", {}).items()
    )
    c, h, w = info["input_shape"]
    auth = " -H 'Authorization: Bearer TOKEN'" if token_required else ""
    if c * h * w <= EXAMPLE_VALUES:
        body = json.dumps({"inputs": [[[[0.5] * w] * h] * c]}, separators=(",", ":"))
        example = f"curl -s {base_url}/v1/predict -H 'Content-Type: application/json'{auth} -d '{body}'"
    else:  # one grey image as base64 float32: nested lists of this size would fill the page
        example = (
            'python -c "import base64, json, struct; '
            f"print(json.dumps({{'inputs_b64': base64.b64encode(struct.pack('<{c * h * w}f', "
            f"*[0.5] * {c * h * w})).decode(), 'shape': [1, {c}, {h}, {w}]}}))\" | "
            f"curl -s {base_url}/v1/predict -H 'Content-Type: application/json'{auth} -d @-"
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(schema['info']['title'])}</title></head>"
        "<body style='font-family:sans-serif;max-width:60em;margin:2em auto'>"
        f"<h1>{esc(schema['info']['title'])}</h1><p>{text(schema['info'].get('description', ''))}</p>"
        f"<p>This model: <code>{esc(json.dumps(info))}</code></p>"
        f"<p>Try it (one grey image):</p><pre>{esc(example)}</pre>"
        f"<h2>Endpoints</h2>{''.join(rows)}<h2>Schemas</h2>{models}"
        "<p>The machine-readable schema is <a href='/openapi.json'>/openapi.json</a>.</p></body></html>"
    )
