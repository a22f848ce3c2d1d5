"""The HTTP service: a FastAPI app built by :func:`create_app` over one or more bundles (the ``serve`` extra).

Routes (each model also under ``/models/{name}/...``; the un-prefixed ones serve the default model):

* ``POST /recommend``, ``POST /predict``, ``GET /items/{item_id}/similar``, ``POST /explain``, ``GET /users``,
  ``GET /metadata`` (model, config, bundle and data fingerprints, versions) — :mod:`attnrec.serving.service`;
* ``GET /health`` (liveness: the process answers), ``GET /ready`` (every model loaded and warmed up; 503 until
  then), ``GET /metrics`` (Prometheus text: requests, latency histograms, errors, reloads), ``GET /models``;
* ``POST /admin/reload`` — load the bundles again from their folders and swap them in atomically (also on SIGHUP
  when ``reload_on_sighup``); requests in flight finish on the bundle they started with;
* ``GET /`` — the page (``serving/static/index.html``), when it is installed.

Safety: an optional API key (``Authorization: Bearer KEY``) guards every route except ``/health`` and the static
page (which holds no data; its requests carry the key); with a key, ``/openapi.json`` needs it too and the
``/docs`` and ``/redoc`` pages (which fetch the schema without it) are off. ``POST /admin/reload`` takes only
``Content-Type: application/json``, so a cross-site form or fetch (no CORS preflight) cannot trigger a reload.
Request bodies are capped (``max_body_bytes``, 413);
pydantic validation answers 422 naming the field, and so does a request the model cannot serve (same body
shape: ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``); no CORS unless ``cors_origins`` is given;
bundles are loaded only through the safe loader. The CLI (``attnrec serve``) binds 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from attnrec.errors import AttnrecError, DataError, require

require("fastapi", "serve")
require("prometheus_client", "serve")

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request  # noqa: E402
from fastapi import Path as PathParam  # noqa: E402
from fastapi import Query as QueryParam  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, Response  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer  # noqa: E402
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest  # noqa: E402

from attnrec.serving.schemas import (  # noqa: E402
    MAX_K,
    ErrorBody,
    ExplainRequest,
    ExplainResponse,
    Health,
    PredictRequest,
    PredictResponse,
    Ready,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
    SimilarResponse,
)
from attnrec.serving.service import ModelSlot, ServiceError, ServiceState, runtime_versions  # noqa: E402

log = logging.getLogger(__name__)

#: the largest request body accepted by default, in bytes (1,024 CTR rows of a few dozen fields fit)
DEFAULT_MAX_BODY_BYTES = 2 * 2**20
PAGE = Path(__file__).parent / "static" / "index.html"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "a body that cannot be parsed (not UTF-8 JSON) or a bad Content-Length",
    },
    401: {"model": ErrorBody, "description": "missing or wrong API key"},
    404: {"model": ErrorBody, "description": "unknown model, user or item"},
    413: {"model": ErrorBody, "description": "request body too large"},
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Metrics:
    """The app's own Prometheus registry (not the process-wide one: a process may hold many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "attnrec_http_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "attnrec_http_request_seconds",
            "time from request to the end of the response",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "attnrec_http_errors", "responses with status >= 400", ["route", "status"], registry=self.registry
        )
        self.reloads = Counter(
            "attnrec_reloads", "bundle reloads by outcome", ["outcome"], registry=self.registry
        )


class _Guard:
    """ASGI middleware: caps the request body (413) and records every request in the metrics, by route template
    (``/models/{name}/recommend``, never the raw path: ids would make a label per user)."""

    def __init__(self, app: ASGIApp, *, limit: int, metrics: _Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        started = False

        async def send_status(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                bad = not length.isdigit()
                await _send_json(
                    send_status,
                    400 if bad else 413,
                    {"detail": "bad Content-Length" if bad else self._too_large(), "field": None},
                )
                return
            received = 0

            async def limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.limit:  # a chunked body without Content-Length
                        raise HTTPException(413, self._too_large())
                return message

            await self.app(scope, limited, send_status)
        finally:
            route = scope.get("route")
            label = route.path if isinstance(route, APIRoute) else "<unmatched>"
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label, method).observe(time.perf_counter() - start)
            if status >= 400:
                self.metrics.errors.labels(label, str(status)).inc()

    def _too_large(self) -> str:
        return f"request body over {self.limit} bytes"


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    response = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _unprocessable(message: str, field: str | None, kind: str) -> JSONResponse:
    """A 422 in pydantic's shape, so every 422 of the API has one schema and names the field."""
    loc = ["body"] + ([field] if field else [])
    return JSONResponse({"detail": [{"loc": loc, "msg": message, "type": kind}]}, status_code=422)


def create_app(
    models: Mapping[str, str | Path],
    *,
    default: str | None = None,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    warmup: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    trust_code: bool = False,
    reload_on_sighup: bool = False,
    ann: str = "auto",
) -> FastAPI:
    """The service over ``models`` (name -> bundle folder); ``default`` (the first name if None) answers the
    un-prefixed routes. Bundles are loaded here, so a bad one fails before anything is served; warm-up runs
    in the background at start-up (``/ready`` says when it is done; with ``warmup=False`` loaded is ready).

    ``api_key``: when set, every route but ``/health`` and ``/`` needs ``Authorization: Bearer <api_key>`` (the
    ``/docs`` and ``/redoc`` pages are off: they would fetch the schema without the key).
    ``cors_origins``: origins allowed by CORS (none by default). ``max_body_bytes``: larger bodies get a 413.
    ``trust_code``: passed to the bundle loader (see :func:`~attnrec.serving.bundle.load_bundle`).
    ``reload_on_sighup``: SIGHUP reloads every bundle (needs the event loop in the main thread, as under uvicorn).
    ``ann``: the known-user index built at warm-up — ``auto`` (from 1M items: FAISS IVF-Flat if installed), ``exact``
    or ``faiss`` (:mod:`attnrec.serving.retrieval`).
    """
    state = ServiceState(models, default=default, trust_code=trust_code, ann=ann)
    metrics = _Metrics()

    def reload(name: str | None) -> list[ModelSlot]:
        try:
            fresh = state.reload(name)
        except Exception:
            metrics.reloads.labels("failed").inc()
            raise
        metrics.reloads.labels("ok").inc()
        return fresh

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if warmup:
            threading.Thread(target=state.warmup, name="attnrec-warmup", daemon=True).start()
        hooked = False
        if reload_on_sighup and threading.current_thread() is threading.main_thread():

            def on_hup() -> None:
                async def run() -> None:
                    try:
                        await asyncio.to_thread(reload, None)
                    except Exception:  # the old bundles keep serving; the log says why
                        log.exception("SIGHUP reload failed")

                loop.create_task(run())

            loop.add_signal_handler(signal.SIGHUP, on_hup)
            hooked = True
        yield
        if hooked:
            loop.remove_signal_handler(signal.SIGHUP)

    app = FastAPI(
        title="attnrec",
        summary="recommendations from attnrec bundles",
        version=runtime_versions()["attnrec"],
        lifespan=lifespan,
        # with a key, the schema is a guarded route below, and the docs pages (which fetch it without) are off
        openapi_url=None if api_key is not None else "/openapi.json",
        docs_url=None if api_key is not None else "/docs",
        redoc_url=None if api_key is not None else "/redoc",
    )
    app.state.service = state
    app.state.metrics = metrics
    app.add_middleware(_Guard, limit=max_body_bytes, metrics=metrics)  # type: ignore[arg-type]
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        if exc.status == 422:
            return _unprocessable(str(exc), exc.field, "unsupported")
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=exc.status)

    @app.exception_handler(AttnrecError)
    async def attnrec_error(_request: Request, exc: AttnrecError) -> JSONResponse:
        # a request the model refuses (ConfigError, DataError, UnknownIdError): the client's to fix
        return _unprocessable(str(exc), exc.field if isinstance(exc, DataError) else None, "invalid")

    bearer = HTTPBearer(auto_error=False, description="the API key, when the service has one")

    def authorised(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if api_key is None:
            return
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health", tags=["service"])
    def health() -> Health:
        """Liveness: the process answers (no key needed)."""
        return Health(status="ok")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        if not PAGE.is_file():
            raise HTTPException(404, f"no page installed ({PAGE} is absent): use the JSON routes, see /docs")
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    guarded = APIRouter(dependencies=[Depends(authorised)], responses=_ERRORS)

    @guarded.get("/ready", tags=["service"], responses={503: {"model": Ready}})
    def ready() -> JSONResponse:
        """Readiness: every model loaded and warmed up (503 until then)."""
        models_ready = state.ready() if warmup else {n: True for n in state.names}
        ok = all(models_ready.values())
        body = Ready(ready=ok, models=models_ready)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @guarded.get("/metrics", tags=["service"], response_class=Response)
    def metrics_text() -> Response:
        """Prometheus text exposition of this app's counters and histograms."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @guarded.get("/models", tags=["service"])
    def list_models() -> dict[str, Any]:
        """The models served, and which one the un-prefixed routes use."""
        import fastapi

        return {
            "default": state.default,
            "models": {n: _summary(state.slot(n)) for n in state.names},
            "reloads": state.reloads,
            "versions": {**runtime_versions(), "fastapi": fastapi.__version__},
        }

    if api_key is not None:

        @guarded.get("/openapi.json", include_in_schema=False)
        def openapi_schema() -> JSONResponse:
            return JSONResponse(app.openapi())

    @guarded.post(
        "/admin/reload",
        tags=["admin"],
        dependencies=[Depends(_json_only)],
        responses={
            415: {"model": ErrorBody, "description": "a body that is not Content-Type: application/json"}
        },
    )
    def admin_reload(body: ReloadRequest | None = None) -> ReloadResponse:
        """Load the bundle(s) again from their folders, warm up, and swap them in; in-flight requests finish on the
        old ones. A bundle that fails leaves the old one serving (422 with the reason)."""
        fresh = reload(None if body is None else body.model)
        return ReloadResponse(
            reloaded=[s.name for s in fresh], fingerprints={s.name: s.info.fingerprint for s in fresh}
        )

    for prefix, get_slot in (("", _default_slot(state)), ("/models/{name}", _named_slot(state))):
        router = APIRouter(prefix=prefix, tags=["models" if prefix else "default model"])
        _model_routes(router, get_slot, "named_" if prefix else "")
        guarded.include_router(router)
    app.include_router(guarded)

    return app


def _json_only(request: Request) -> None:
    """Refuse (415) a request that is not ``Content-Type: application/json``: browsers send a cross-site form post,
    or a fetch whose type is a form's or absent, without a CORS preflight; a JSON one needs the preflight."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, "send a JSON body with Content-Type: application/json (e.g. {})")


def _summary(slot: ModelSlot) -> dict[str, Any]:
    meta = slot.metadata()
    keys = (
        "model",
        "task",
        "query_inputs",
        "similar_items",
        "explain",
        "explain_kind",
        "titles",
        "n_users",
        "n_items",
    )
    return {k: meta[k] for k in keys}


def _default_slot(state: ServiceState) -> Callable[[], ModelSlot]:
    def get() -> ModelSlot:
        return state.slot(None)

    return get


def _named_slot(state: ServiceState) -> Callable[[str], ModelSlot]:
    def get(name: str = PathParam(min_length=1, max_length=200)) -> ModelSlot:
        return state.slot(name)

    return get


def _model_routes(router: APIRouter, get_slot: Callable[..., ModelSlot], op: str) -> None:
    """The per-model routes on ``router``; ``get_slot`` picks the slot (default or by name) once per request.
    The handlers are plain functions: FastAPI runs them in its thread pool, off the event loop."""
    slot_dep = Depends(get_slot)

    @router.post("/recommend", operation_id=f"{op}recommend")
    def recommend(body: RecommendRequest, slot: ModelSlot = slot_dep) -> RecommendResponse:
        """Top-k items for a user, a text query or a history given now (see the request fields)."""
        return slot.recommend(body)

    @router.post("/predict", operation_id=f"{op}predict")
    def predict(body: PredictRequest, slot: ModelSlot = slot_dep) -> PredictResponse:
        """Ratings or scores for (user, item) pairs, or click probabilities for CTR rows (up to 1,024)."""
        return slot.predict(body)

    @router.get("/items/{item_id}/similar", operation_id=f"{op}similar_items")
    def similar(
        item_id: str = PathParam(min_length=1, max_length=512),
        k: int = QueryParam(10, ge=1, le=MAX_K),
        slot: ModelSlot = slot_dep,
    ) -> SimilarResponse:
        """The items nearest to ``item_id`` in the model's item space (cosine)."""
        return slot.similar(item_id, k)

    @router.post("/explain", operation_id=f"{op}explain")
    def explain(body: ExplainRequest, slot: ModelSlot = slot_dep) -> ExplainResponse:
        """Attention per prediction (hybrid_csa: token shares; safmr: CNN feature shares)."""
        return slot.explain(body)

    @router.get("/users", operation_id=f"{op}users")
    def users(
        limit: int = QueryParam(100, ge=1, le=MAX_K),
        offset: int = QueryParam(0, ge=0),
        prefix: str = QueryParam("", max_length=512, description="only ids that start with this"),
        slot: ModelSlot = slot_dep,
    ) -> list[str]:
        """Known user ids, in vocabulary order (for a page's user picker)."""
        return slot.user_ids(offset, limit, prefix)

    @router.get("/metadata", operation_id=f"{op}metadata")
    def model_metadata(slot: ModelSlot = slot_dep) -> dict[str, Any]:
        """This model's metadata: model, config, bundle and data fingerprints, versions."""
        return slot.metadata()
