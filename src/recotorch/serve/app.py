"""The HTTP API and web page: `create_app(model_dir, store_url=...)` gives a FastAPI app.

Requests take the current `Recommender` once, at their start, and use only it: a reload builds
the new one completely and then replaces a single reference, so requests in flight finish on the
old model and no request ever sees half of each. No request names a file: the only path-like
input, the model of `/admin/reload`, is a plain name resolved under `models_root`.
"""

from __future__ import annotations

import hmac
import logging
import signal
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator
from starlette.middleware.trustedhost import TrustedHostMiddleware

from recotorch.errors import OptionError, RecotorchError
from recotorch.outputs import is_model_dir
from recotorch.serve.docs import add_docs
from recotorch.serve.errors import install_error_handlers
from recotorch.serve.gate import StoreGate
from recotorch.serve.limits import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware, Utf8UrlMiddleware
from recotorch.serve.metrics import Metrics, MetricsMiddleware
from recotorch.serve.params import OPENAPI as RECOMMEND_PARAMS
from recotorch.serve.params import parse_recommend_query
from recotorch.serve.recommender import FoldInUnavailableError, Recommender
from recotorch.serve.schemas import (
    MAX_K,
    MAX_KEY,
    FeedbackEvent,
    FeedbackOut,
    InfoOut,
    NewUserRequest,
    PredictOut,
    PredictRequest,
    RecommendationsOut,
    ReloadOut,
    ReloadRequest,
    SearchOut,
    SimilarOut,
    clean_text,
    text_problem,
)
from recotorch.serve.store import DEFAULT_TIMEOUT_S, FeedbackStore, open_store

log = logging.getLogger("recotorch.serve")
STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_FEEDBACK_RANGE = (-10.0, 10.0)  # models without a rating scale (0/1 feedback, counts)
IdParam = Annotated[str, PathParam(min_length=1, max_length=256), AfterValidator(clean_text)]
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"list length, 1..{MAX_K}")]
Genre = Annotated[str | None, Query(max_length=100), AfterValidator(lambda g: g if g is None else clean_text(g))]
SearchText = Annotated[str, Query(max_length=200), AfterValidator(clean_text)]
IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=MAX_KEY, description="a client key for this event: a retry with the same key is "
    "stored once and answered 200 with the stored event")]


class ServerState:
    """The model being served (one reference, swapped whole), the feedback store and the metrics."""

    def __init__(self, recommender: Recommender, model_dir: Path | None, store: FeedbackStore | None,
                 models_root: Path | None, admin_token: str | None, options: dict[str, Any], *,
                 admin_auth: bool = True, feedback_range: tuple[float, float] | None = None,
                 store_timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.recommender = recommender
        self.model_dir = model_dir
        self.store = store
        self.gate = StoreGate(store_timeout) if store is not None else None
        self.models_root = models_root.resolve() if models_root else None
        self.admin_token = admin_token
        self.admin_auth = admin_auth
        self.fixed_feedback_range = feedback_range
        self.options = options
        self.metrics = Metrics()
        self._reload_lock = threading.Lock()
        self.metrics.gauge("model_items", lambda: self.recommender.model.n_items)
        self.metrics.gauge("model_users", lambda: self.recommender.model.n_users)
        self.metrics.gauge("model_loaded_timestamp_seconds", lambda: self.loaded_at)
        self.loaded_at = time.time()

    def feedback_range(self) -> tuple[float, float]:
        """Allowed feedback values: `--feedback-range`, else the served model's rating range, else +-10."""
        if self.fixed_feedback_range is not None:
            return self.fixed_feedback_range
        model = self.recommender.model
        span = model.output_range()
        if model.task == "rating" and span is not None:
            return float(span[0]), float(span[1])
        return DEFAULT_FEEDBACK_RANGE

    def rating_scale(self) -> tuple[float, float] | None:
        """Lowest and highest rating a user may give (rating models): the training ratings' range,
        else the model's output range, else the feedback range; None for 0/1 (ranking) models."""
        model = self.recommender.model
        if model.task != "rating":
            return None
        scale = model.rating_scale() or model.output_range() or self.feedback_range()
        return float(scale[0]), float(scale[1])

    def data_info(self) -> dict[str, Any]:
        """What the web page needs to know about the data: feedback kind, scale, names, categories."""
        catalog = self.recommender.catalog
        scale = self.rating_scale()
        return {"feedback": "like" if scale is None else "rating",
                "rating_scale": None if scale is None else {"min": scale[0], "max": scale[1]},
                "feedback_range": list(self.feedback_range()), "has_titles": catalog.titles is not None,
                "category_column": catalog.category_column,
                "categories": [{"column": c, "values": v} for c, v in catalog.categories.items()]}

    def resolve_model(self, name: str) -> Path:
        """The directory `name` under the models root; refuses anything that would leave it."""
        if self.models_root is None:
            raise HTTPException(403, "reload by name is disabled: start the server with --models-root")
        target = (self.models_root / name).resolve()
        if target.parent != self.models_root or not is_model_dir(target):
            raise HTTPException(404, f"no model named {name!r} under the models root")
        return target

    def reload(self, model_dir: Path) -> tuple[str, Recommender]:
        """Build the new runtime fully, then swap the one reference; returns (previous version, new)."""
        with self._reload_lock:
            fresh = Recommender.load(model_dir, **self.options)
            previous, self.recommender = self.recommender.version, fresh
            self.model_dir, self.loaded_at = model_dir, time.time()
            self.metrics.inc("model_reloads_total")
            log.info("reloaded %s (was %s) in %.2fs", fresh.version, previous, fresh.load_seconds)
            return previous, fresh


def create_app(model: str | Path | Recommender, *, store_url: str | None = None, models_root: str | Path | None = None,
               admin_token: str | None = None, admin_auth: bool = True, allowed_hosts: list[str] | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, feedback_range: tuple[float, float] | None = None,
               store_timeout: float = DEFAULT_TIMEOUT_S, handle_sighup: bool = True, **options: Any) -> FastAPI:
    """The app serving `model` (a model directory or a built `Recommender`); `options` go to `Recommender`.

    Admin routes need `admin_token` (sent as `Authorization: Bearer <token>`); without one they
    are refused unless `admin_auth=False` says, explicitly, that anyone may call them.
    `allowed_hosts`: the Host names to answer (others get 400). `max_body_bytes`: larger bodies
    get 413. `feedback_range`: allowed feedback values (default: the model's rating range).
    `store_timeout`: the most seconds a feedback write waits before it answers 503.
    """
    if max_body_bytes < 1:
        raise OptionError("--max-body-bytes", f"must be at least 1, got {max_body_bytes}")
    if feedback_range is not None and not feedback_range[0] < feedback_range[1]:
        raise OptionError("--feedback-range", f"needs LOW < HIGH, got {feedback_range[0]:g},{feedback_range[1]:g}")
    if admin_token is not None and not admin_token.strip():
        raise OptionError("--admin-token", "must not be empty")
    if isinstance(model, Recommender):
        recommender, model_dir = model, None
    else:
        model_dir = Path(model).resolve()
        recommender = Recommender.load(model_dir, **options)
    store = open_store(store_url, timeout=store_timeout) if store_url else None
    state = ServerState(recommender, model_dir, store, Path(models_root) if models_root else None,
                        admin_token, options, admin_auth=admin_auth, feedback_range=feedback_range,
                        store_timeout=store_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if handle_sighup and model_dir is not None and threading.current_thread() is threading.main_thread():
            def on_hup(signum: int, frame: Any) -> None:  # reload the same directory (e.g. after a re-fit)
                threading.Thread(target=_safe_reload, args=(state,), daemon=True).start()
            signal.signal(signal.SIGHUP, on_hup)
        yield
        if state.gate is not None:
            state.gate.close()
        if state.store is not None:
            state.store.close()

    app = FastAPI(title="recotorch", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Recommendations, similar items, predictions and a feedback log from a recotorch model.")
    app.state.server = state
    # the last added runs first: metrics see every answer, hosts are checked before bodies are counted
    app.add_middleware(Utf8UrlMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    install_error_handlers(app)
    app.add_exception_handler(FoldInUnavailableError, _unsupported)
    app.add_exception_handler(NotImplementedError, _unsupported)
    add_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if state.admin_token is None:
            if state.admin_auth:
                raise HTTPException(403, "admin routes are disabled: start the server with --admin-token "
                                    "(or RECOTORCH_ADMIN_TOKEN), or --no-admin-auth to let anyone call them")
            return
        if not hmac.compare_digest((authorization or "").encode(), f"Bearer {state.admin_token}".encode()):
            raise HTTPException(401, "admin routes need 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    def check_genre(rec: Recommender, genre: str | None) -> None:
        if genre and genre.strip().lower() not in {g.lower() for g in rec.catalog.genre_names}:
            known = ", ".join(rec.catalog.genre_names) or "none (this model has no genres)"
            raise OptionError("genre", f"unknown genre {genre[:80]!r}; known: {known}")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, Any]:
        rec = state.recommender
        return {"status": "ok", "model": rec.version, "n_items": rec.model.n_items,
                "feedback_store": None if state.store is None else state.store.url.split(":", 1)[0]}

    @app.get("/info", tags=["ops"], response_model=InfoOut)
    def info() -> dict[str, Any]:
        """The served model and its data: task, rating scale, category columns, whether items have names."""
        return {**state.recommender.info(), **state.data_info()}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/users/{user_id}/recommendations", tags=["recommend"], response_model=RecommendationsOut,
             openapi_extra=RECOMMEND_PARAMS)
    async def recommend(request: Request) -> JSONResponse:
        """Top-k for a known user; filters act before top-k. 404 for an unknown user or item id.

        The hot route: it runs on the event loop (no thread hop) and parses its own parameters
        (`recotorch.serve.params`), which halves the framework's share of its CPU time.
        """
        q = parse_recommend_query(request)
        rec = state.recommender
        check_genre(rec, q.genre)
        user = rec.users.raw(rec.users.index(q.user_id, "user"))
        items = rec.recommend(user, q.k, exclude_seen=q.exclude_seen, include=q.include, exclude=q.exclude,
                              genre=q.genre)
        return _json({"user": user, "model": rec.version, "items": items}, rec)

    @app.post("/recommendations", tags=["recommend"], response_model=RecommendationsOut)
    def recommend_new(body: NewUserRequest) -> JSONResponse:
        """Top-k for an anonymous user from a few (item, rating) pairs, liked items (fold-in) or an ordered
        `history` (oldest first: a next-item model reads the order, other models fold the items in).
        The user's own items are left out unless `repeats`; `scored_by` says which way it was answered."""
        rec = state.recommender
        check_genre(rec, body.genre)
        if body.history:
            items = rec.recommend_history(body.history, body.k, repeats=body.repeats, include=body.include,
                                          exclude=body.exclude, genre=body.genre)
            scored_by = "next_items" if rec.scores_next_items() else "fold_in"
        else:
            ratings = [(r.item, r.rating) for r in body.ratings] or None
            items = rec.recommend_new_user(ratings, body.liked or None, body.k, include=body.include,
                                           exclude=body.exclude, genre=body.genre, repeats=body.repeats)
            scored_by = "fold_in"
        return _json({"user": None, "model": rec.version, "items": items, "scored_by": scored_by}, rec)

    @app.get("/items", tags=["items"], response_model=SearchOut)
    def items(q: SearchText = "", limit: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
              offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0, genre: Genre = None) -> JSONResponse:
        """Search titles (case-insensitive substring) or browse; most-rated first."""
        rec = state.recommender
        check_genre(rec, genre)
        return _json(rec.search(q, limit, offset, genre), rec)

    @app.get("/items/{item_id}", tags=["items"])
    def item(item_id: IdParam) -> JSONResponse:
        rec = state.recommender
        i = rec.catalog.items.index(item_id, "item")
        return _json({**rec.catalog.describe(i), "n_ratings": int(rec.catalog.popularity[i])}, rec)

    @app.get("/items/{item_id}/similar", tags=["items"], response_model=SimilarOut)
    def similar(item_id: IdParam, k: K = 10) -> JSONResponse:
        rec = state.recommender
        found = rec.similar(item_id, k)
        return _json({"item": rec.catalog.items.raw(rec.catalog.items.index(item_id)), "model": rec.version,
                      "items": found}, rec)

    @app.post("/predict", tags=["recommend"], response_model=PredictOut)
    def predict(body: PredictRequest) -> JSONResponse:
        rec = state.recommender
        pairs = [(p.user, p.item) for p in body.pairs]
        return _json({"model": rec.version, "predictions": rec.predict(pairs, body.allow_unknown)}, rec)

    @app.post("/feedback", tags=["feedback"], status_code=201, response_model=FeedbackOut,
              responses={200: {"model": FeedbackOut, "description": "a repeat of a stored key: nothing new stored"},
                         503: {"description": "no store, or the database is down, locked or slow: retry"}})
    async def feedback(event: FeedbackEvent, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Append one event to the log; 201 only after it is committed (durable).

        With an `Idempotency-Key` header or an `event_id` field, a retried event is stored once:
        the retry answers 200 with the stored event. The write runs off the event loop and waits
        at most the store timeout (503 past it), so a locked database never blocks other routes.
        """
        if state.store is None or state.gate is None:
            raise HTTPException(503, "no feedback store: start the server with --store")
        key = _event_key(idempotency_key, event.event_id)
        lo, hi = state.feedback_range()
        if not lo <= event.value <= hi:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "value"),
                                           "msg": f"value must lie in the feedback range [{lo:g}, {hi:g}]"}])
        client_time = event.time is not None
        moment = float(event.time) if client_time else time.time()
        added = await state.gate.call(state.store.add, str(event.user), str(event.item), float(event.value), moment,
                                      key, client_time=client_time)
        body = {"id": added.id, "stored": True, "duplicate": not added.created,
                "event": {"user": added.user, "item": added.item, "value": added.value, "time": added.ts,
                          "event_id": added.key}}
        return JSONResponse(body, status_code=201 if added.created else 200)

    @app.post("/admin/reload", tags=["ops"], response_model=ReloadOut, dependencies=[Depends(admin)],
              responses={401: {"description": "missing or wrong token"}, 403: {"description": "admin disabled"}})
    def reload(body: ReloadRequest) -> dict[str, Any]:
        """Load a model directory by name (under --models-root) and swap it in atomically."""
        target = state.resolve_model(body.model)
        try:
            previous, fresh = state.reload(target)
        except RecotorchError as exc:  # a broken model directory: keep serving the current model
            log.warning("reload of %s refused: %s", target, exc)
            raise RequestValidationError([{
                "type": "corrupt_model", "loc": ("body", "model"),
                "msg": f"still serving {state.recommender.version}: model {body.model!r} could not be loaded ({exc})"},
            ]) from exc
        return {"model": fresh.version, "previous": previous, "load_seconds": fresh.load_seconds}

    return app


def _event_key(header: str | None, field: str | None) -> str | None:
    """The event's idempotency key from the header or the body (they must agree when both are given)."""
    if header is not None:
        problem = text_problem(header)
        if problem:
            raise RequestValidationError([{"type": "value_error", "loc": ("header", "idempotency-key"),
                                           "msg": f"Value error, {problem}"}])
    if header is not None and field is not None and header != field:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "event_id"),
                                       "msg": "event_id and the Idempotency-Key header differ"}])
    return header if header is not None else field


async def _unsupported(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)[:2000]}, status_code=501)


def _json(payload: dict[str, Any], rec: Recommender) -> JSONResponse:
    return JSONResponse(payload, headers={"X-Model-Version": rec.version})


def _safe_reload(state: ServerState) -> None:
    if state.model_dir is None:
        return
    try:
        state.reload(state.model_dir)
    except Exception:  # a bad model on disk must not take the server down; keep serving the old one
        log.exception("SIGHUP reload of %s failed; still serving %s", state.model_dir, state.recommender.version)
