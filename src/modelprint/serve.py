"""A prediction API for a model file: FastAPI + uvicorn, the schema ``HttpSuspect`` speaks.

It exists so black-box verification can be tested end to end against something that looks
like a commercial API: batch requests, JSON with base64 or nested lists, a bearer token, a
label-only mode, and limits on request and batch size. Endpoints (OpenAPI at
``/openapi.json``, browsable at ``/docs``):

* ``GET  /v1/info``    what the model takes and answers (input shape, classes, limits);
* ``POST /v1/predict`` labels, and probabilities unless label-only, for a batch;
* ``GET  /health``     liveness, no token needed.

Errors are JSON ``{"detail": ...}``: 401 without the token, 413 for a body over
``max_request_bytes`` or a batch over ``max_batch``, 422 for malformed inputs (wrong shape,
values outside [0, 1], NaN), never a 500 for anything a client can send.

Example::

    app = create_app(load_model("owner.safetensors"), labels_only=True, token="s3cret")
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .models import ModelprintModel, weights_digest
from .suspects.base import softmax

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024**2
API_VERSION = 1


class PredictRequest(BaseModel):
    """A batch of N images (N, C, H, W), values in [0, 1]: ``inputs`` as nested lists, or
    ``inputs_b64`` (float32 little-endian, C order) with its ``shape``."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[list[list[list[float]]]] | None = Field(None, description="N x C x H x W nested lists")
    inputs_b64: str | None = Field(None, description="base64 of N*C*H*W float32 little-endian values")
    shape: list[int] | None = Field(None, description="[N, C, H, W], with inputs_b64", min_length=4, max_length=4)


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


async def _send_json(send: Any, status: int, body: dict) -> None:
    import json

    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def create_app(
    model: ModelprintModel,
    *,
    labels_only: bool = False,
    token: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    disclose_sha256: bool = False,
) -> Any:
    """The FastAPI app answering for ``model``; see the module docstring for the endpoints."""
    if max_batch < 1 or max_request_bytes < 1:
        raise ValueError("max_batch and max_request_bytes must be positive")
    model = model.cpu().eval()
    shape = tuple(model.card.input_shape)
    lock = threading.Lock()  # one forward at a time: torch already uses every core for one batch
    info = InfoResponse(
        api_version=API_VERSION,
        input_shape=list(shape),
        num_classes=model.card.num_classes,
        classes=list(model.card.classes),
        labels_only=labels_only,
        max_batch=max_batch,
        max_request_bytes=max_request_bytes,
        input_range=[0.0, 1.0],
        model_sha256=weights_digest(model) if disclose_sha256 else None,
    )
    app = FastAPI(
        title="modelprint prediction API",
        version=str(API_VERSION),
        description="Image classifier behind `modelprint serve`: inputs in [0, 1], N x C x H x W.",
    )

    async def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"detail": f"malformed request: {where} {first.get('msg', '')}".strip()}, 422)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", response_model=InfoResponse, dependencies=[Depends(authorised)])
    def get_info() -> InfoResponse:
        return info

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(authorised)],
        responses={401: {"description": "no or wrong token"}, 413: {"description": "body or batch too large"}},
    )
    def predict(req: PredictRequest) -> PredictResponse:
        x = _decode(req, shape, max_batch)
        with lock, torch.no_grad():
            logits = model(torch.from_numpy(x)).float().numpy()
        labels = logits.argmax(1).tolist()
        if labels_only:
            return PredictResponse(labels=labels)
        return PredictResponse(labels=labels, probabilities=softmax(logits).tolist())

    return _BodyLimit(app, max_request_bytes)


def _decode(req: PredictRequest, shape: tuple[int, ...], max_batch: int) -> np.ndarray:
    if (req.inputs is None) == (req.inputs_b64 is None):
        raise HTTPException(422, "send exactly one of inputs or inputs_b64 (with shape)")
    if req.inputs is not None:
        if len(req.inputs) > max_batch:
            raise HTTPException(413, f"batch of {len(req.inputs)} over the limit of {max_batch}")
        try:
            x = np.asarray(req.inputs, dtype=np.float32)
        except ValueError:
            raise HTTPException(422, "inputs are ragged: every image must be C x H x W") from None
    else:
        if req.shape is None:
            raise HTTPException(422, "inputs_b64 needs its shape [N, C, H, W]")
        n = req.shape[0]
        if n > max_batch:
            raise HTTPException(413, f"batch of {n} over the limit of {max_batch}")
        if n < 1 or tuple(req.shape[1:]) != shape:
            raise HTTPException(422, f"shape must be [N, {', '.join(map(str, shape))}] with 1 <= N, got {req.shape}")
        try:
            raw = base64.b64decode(req.inputs_b64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(422, "inputs_b64 is not valid base64") from None
        if len(raw) != 4 * n * int(np.prod(shape)):
            raise HTTPException(422, f"inputs_b64 holds {len(raw)} bytes; shape {req.shape} needs float32 x N*C*H*W")
        x = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(req.shape)
    if x.ndim != 4 or x.shape[0] < 1 or tuple(x.shape[1:]) != shape:
        want, got = " x ".join(map(str, shape)), " x ".join(map(str, x.shape))
        raise HTTPException(422, f"inputs must be N x {want}, got {got}")
    if len(x) > max_batch:
        raise HTTPException(413, f"batch of {len(x)} over the limit of {max_batch}")
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise HTTPException(422, "input values must be finite and in [0, 1]")
    return np.ascontiguousarray(x)


def serve(
    model: ModelprintModel,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    labels_only: bool = False,
    token: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    disclose_sha256: bool = False,
) -> None:
    """Run the API until interrupted (uvicorn, one process; concurrent connections capped)."""
    import uvicorn

    app = create_app(
        model,
        labels_only=labels_only,
        token=token,
        max_batch=max_batch,
        max_request_bytes=max_request_bytes,
        disclose_sha256=disclose_sha256,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", limit_concurrency=64, timeout_keep_alive=5)


@contextlib.contextmanager
def serve_background(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread for the duration of a ``with`` block and yield its
    base URL (``port=0``: a free port). For tests, benchmarks and notebooks; loopback by default."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="error", limit_concurrency=256, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
