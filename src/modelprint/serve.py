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
outside [0, 1], NaN) or a batch over ``max_batch``, never a 500 for anything a client can
send. The OpenAPI schema states the exact shape, range and batch limit of the model served.

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
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from .models import ModelprintModel, weights_digest
from .suspects.base import softmax

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024**2
API_VERSION = 1


# A base64 string of standard alphabet with padding: what ``inputs_b64`` must look like.
BASE64_PATTERN = r"^[A-Za-z0-9+/]*={0,2}$"


def request_models(shape: tuple[int, int, int], max_batch: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """The two request bodies for a model taking ``shape`` (C, H, W), exact in the OpenAPI schema:
    nested lists N x C x H x W of values in [0, 1] (1 <= N <= max_batch), or base64 with its shape."""
    c, h, w = shape
    pixel = Annotated[float, Field(ge=0.0, le=1.0)]
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
        errors = exc.errors()
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

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", response_model=InfoResponse, dependencies=[Depends(authorised)])
    def get_info() -> InfoResponse:
        return info

    nested, encoded = request_models(shape, max_batch)
    errors = {
        400: {"model": ErrorResponse, "description": "the body is not JSON text"},
        401: {"model": ErrorResponse, "description": "no or wrong bearer token"},
        413: {"model": ErrorResponse, "description": "body over the server's size limit"},
        422: {"model": ErrorResponse, "description": "malformed request, or a batch over the limit"},
    }

    def predict(req: Any) -> PredictResponse:
        x = _decode(req, shape)
        with lock, torch.no_grad():
            logits = model(torch.from_numpy(x)).float().numpy()
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
        responses=errors,  # type: ignore[arg-type]
        summary="Labels, and probabilities unless label-only, for a batch of images",
    )(predict)

    return _BodyLimit(app, max_request_bytes)


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


def serve(model: ModelprintModel, *, host: str = "127.0.0.1", port: int = 8000, **settings: Any) -> None:
    """Run the API until interrupted (uvicorn, one process; concurrent connections capped);
    ``settings`` are :func:`create_app`'s (labels_only, token, max_batch, ...)."""
    import uvicorn

    app = create_app(model, **settings)
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
