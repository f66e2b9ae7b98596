"""``cfsx serve``: interpretation as a web page and a versioned JSON API, with feedback kept for training.

Starlette on uvicorn: a small ASGI toolkit without a second data-model layer (the records are cfsx's
dataclasses, not pydantic models), with a test client; its OpenAPI schema comes from the docstrings below.
One server process answers requests; ``workers`` processes (cfsx.app.serve_work) each hold every served model
and do the interpretations, behind a bounded queue (503 with Retry-After beyond it). The server process
never imports TensorFlow. See docs/serve.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import python_multipart  # noqa: F401  (the serve extra: without it the CLI says which extra to install)
import starlette  # noqa: F401
import uvicorn  # noqa: F401

from cfsx.app.feedback import Feedback, Store
from cfsx.app.serve_work import FIGURES, Job, Options, failure, interpret_upload, load_models, render_figure
from cfsx.config.flags import Calibration
from cfsx.errors import ConfigError

API = "/api/v1"
MIN_QUEUE = 8  # requests waiting or running before the server answers 503
RESULT_FILES = {"results.json": "application/json", "results.h5": "application/x-hdf5",
                "interpretation.png": "image/png", "correction.png": "image/png"}  # fmt: skip
UPLOAD_SUFFIXES = (".npy", ".tif", ".tiff", ".png", ".h5", ".hdf5", ".nxs", ".cbf", ".edf", ".img", ".mccd")


@dataclass(frozen=True)
class ServeSettings:
    """How a server runs (the options of ``cfsx serve``)."""

    models: dict[str, str]  # key -> model file (the built-in models by their names)
    store: Path
    workers: int = 1
    token: str | None = None  # every request needs it when set
    max_upload_bytes: int = 64 * 2**20
    max_pixels: int = 64 * 2**20
    retention_days: float = 30.0  # files of older interpretations are removed at start-up
    queue: int = MIN_QUEUE  # at least MIN_QUEUE
    replicates: int = 1  # decoded structures per image unless a request asks otherwise (>= 1: the knowledge store)


@dataclass
class _State:
    settings: ServeSettings
    store: Store
    pool: ProcessPoolExecutor | None = None
    pending: int = 0
    served: int = 0
    started: float = field(default_factory=time.time)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cards: dict[str, Any] = field(default_factory=dict)

    def new_pool(self) -> ProcessPoolExecutor:
        """A pool whose workers load every model once (spawned: no TensorFlow state is copied)."""
        self.pool = ProcessPoolExecutor(self.settings.workers, mp_context=get_context("spawn"),
                                        initializer=load_models, initargs=(self.settings.models,))  # fmt: skip
        return self.pool


def served_models(names: list[str]) -> dict[str, str]:
    """Model key -> file: the given built-in names and .keras paths (a file's key is its stem), or every
    installed built-in model when none is given."""
    from cfsx.learning.builtin import builtin_models, resolve_model
    from cfsx.learning.model_card import read_model_card

    if not names:
        names = [model.name for model in builtin_models() if model.path.is_file()]
        if not names:
            raise ConfigError("no built-in model is installed: give --model PATH.keras (make models builds them)")
    models = {}
    for name in names:
        path = resolve_model(name)
        key = Path(name).stem if path.suffix == ".keras" and Path(name).exists() else str(name)
        if key in models:
            raise ConfigError(f"two served models are called {key!r}")
        read_model_card(path)  # refuse a file that is not a cfsx model now, not in a worker
        models[key] = str(path)
    return models


def read_token(path: str | Path) -> str:
    """The token in a file (its first line); refused when empty or readable by others."""
    import stat

    from cfsx.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such token file: {path}")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DataError(f"{path} is readable by others: chmod 600 {path}")
    token = path.read_text().strip().splitlines()[0] if path.read_text().strip() else ""
    if len(token) < 16:
        raise DataError(f"the token in {path} is shorter than 16 characters")
    return token


def create_app(settings: ServeSettings):
    """The ASGI app of ``cfsx serve`` (Starlette)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from cfsx.learning.model_card import read_model_card

    if settings.queue < MIN_QUEUE:
        raise ConfigError(f"the queue must hold at least {MIN_QUEUE} requests, got {settings.queue}")
    state = _State(settings, Store(settings.store))
    state.cards = {key: read_model_card(path) for key, path in settings.models.items()}
    state.store.prune(settings.retention_days)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.new_pool()
        try:
            yield
        finally:
            state.pool.shutdown(wait=False, cancel_futures=True)
            state.store.close()

    routes = [
        Route("/", _page, methods=["GET"]),
        Route("/feedback", _feedback_page, methods=["GET"]),
        Route(f"{API}/health", _health, methods=["GET"]),
        Route(f"{API}/models", _models, methods=["GET"]),
        Route(f"{API}/interpret", _interpret, methods=["POST"]),
        Route(f"{API}/results/{{identifier}}/{{name}}", _result_file, methods=["GET"]),
        Route(f"{API}/feedback", _post_feedback, methods=["POST"]),
        Route(f"{API}/feedback", _list_feedback, methods=["GET"]),
        Route(f"{API}/openapi.json", _openapi, methods=["GET"]),
        Route("/api", _api_page, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(_TokenCheck, token=settings.token)])
    app.state.cfsx = state
    return app


def _error(status: int, message: str, headers: dict[str, str] | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _TokenCheck:
    """With a token set, every request needs it: ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (the page)."""

    def __init__(self, app, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        given = given or request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            await _error(401, "this server needs its token: Authorization: Bearer TOKEN")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _state(request) -> _State:
    return request.app.state.cfsx


async def _health(request):
    """responses:
    200:
      description: The server is up; its models, queue and store counts.
    """
    from starlette.responses import JSONResponse

    from cfsx import __version__

    state = _state(request)
    return JSONResponse({"status": "ok", "version": __version__, "models": list(state.cards),
                         "workers": state.settings.workers, "queue": {"pending": state.pending,
                         "limit": state.settings.queue}, "served": state.served, **state.store.counts()})  # fmt: skip


async def _models(request):
    """responses:
    200:
      description: The models this server interprets with, from their model cards.
    """
    from starlette.responses import JSONResponse

    cards = _state(request).cards
    return JSONResponse([{"name": key, "cfs": card.cfs, "architecture": card.architecture, "labels": card.labels,
                          "image_size": card.image_size, "h_max": card.h_max, "hold_out_r2": card.hold_out_r2}
                         for key, card in cards.items()])  # fmt: skip


def _options(form, cards: dict[str, Any], replicates_default: int) -> Options:
    model = str(form.get("model") or next(iter(cards)))
    if model not in cards:
        raise KeyError(model)
    replicates = str(form.get("replicates") or "").strip()
    if replicates and not replicates.isdigit():
        raise ConfigError(f"replicates must be a whole number, got {replicates!r}")
    calibration = Calibration(origin=_text(form, "origin"), pixels_per_rlu=_text(form, "pixels_per_rlu"),
                              centre=_text(form, "centre"))  # fmt: skip
    calibration.overrides()  # a bad option is refused here, before the upload is stored
    return Options(model=model, calibration=calibration,
                   refine=str(form.get("refine", "")).lower() in ("1", "true", "on"),
                   replicates=int(replicates) if replicates else replicates_default)  # fmt: skip


def _text(form, name: str) -> str | None:
    return str(form.get(name) or "").strip() or None


async def _interpret(request):
    """Interpret one image (multipart field ``image``; options ``model``, ``origin``, ``pixels_per_rlu``,
    ``centre`` as A,B; ``refine``; ``replicates``), as ``cfsx interpret`` does.
    ---
    responses:
      200:
        description: The interpretation record (results.json's image record) with its id and file links.
      400:
        description: Not an image cfsx can read, or a bad option (one line in "error").
      404:
        description: Unknown model.
      413:
        description: The upload is too large (bytes or pixels).
      503:
        description: The queue is full; try again after Retry-After seconds.
    """

    state, settings = _state(request), _state(request).settings
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > settings.max_upload_bytes + 2**16:
        return _error(413, f"the upload is larger than {settings.max_upload_bytes} bytes")
    if state.pending >= settings.queue:
        return _error(503, "the server is busy: try again shortly", {"Retry-After": "5"})
    state.pending += 1
    try:
        return await _interpret_queued(request, state)
    finally:
        state.pending -= 1


async def _interpret_queued(request, state: _State):
    from starlette.responses import JSONResponse

    settings = state.settings
    try:
        async with request.form(max_files=1, max_fields=16, max_part_size=2**16) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                return _error(400, "send the image as the multipart field 'image'")
            options = _options(form, state.cards, settings.replicates)
            data = await upload.read(settings.max_upload_bytes + 1)
            source = Path(upload.filename or "upload").name
    except KeyError as unknown:
        return _error(404, f"unknown model {unknown.args[0]!r} (GET {API}/models lists them)")
    except ConfigError as error:
        return _error(400, str(error))
    except Exception as error:  # a malformed multipart body
        return _error(400, f"not a multipart form with an image: {type(error).__name__}")
    if len(data) > settings.max_upload_bytes:
        return _error(413, f"the upload is larger than {settings.max_upload_bytes} bytes")
    suffix = Path(source).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        return _error(400, f"not an image file cfsx reads ({', '.join(UPLOAD_SUFFIXES)}): {source!r}")
    identifier = uuid.uuid4().hex
    folder = state.store.results_folder(identifier)
    folder.mkdir()
    (folder / f"upload{suffix}").write_bytes(data)
    job = Job(folder, f"upload{suffix}", source, options, settings.max_pixels)
    loop = asyncio.get_running_loop()
    try:
        served = await loop.run_in_executor(state.pool, interpret_upload, job)
    except BrokenProcessPool:
        shutil.rmtree(folder, ignore_errors=True)
        state.new_pool()  # a worker died (out of memory, a crash): new workers, the server stays up
        return _error(500, "the interpretation worker stopped; the server restarted its workers")
    except Exception as error:
        shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing behind
        status, message = failure(error)
        return _error(status, message)
    async with state.write_lock:
        state.store.add_interpretation(identifier, options.model, served.interpretation)
        stored = None
        if served.interpretation.decoded is not None:
            from cfsx.interpretation import record_store

            card = state.cards[options.model]
            path = state.store.knowledge_store(options.model)
            stored = await asyncio.to_thread(record_store, path, card, [served.interpretation])
    state.served += 1
    record = served.document["images"][0]
    links = {name: f"{API}/results/{identifier}/{name}" for name in RESULT_FILES}
    return JSONResponse({"id": identifier, "model": options.model, "interpretation": record,
                         "correction": served.correction.record(), "summary": served.interpretation.summary(),
                         "links": links, "seconds": served.seconds, "knowledge_store_size": stored})  # fmt: skip


async def _result_file(request):
    """responses:
    200:
      description: One file of an interpretation (results.json, results.h5, interpretation.png, correction.png).
    404:
      description: No such interpretation or file.
    """
    from starlette.responses import FileResponse

    name, identifier = request.path_params["name"], request.path_params["identifier"]
    try:
        folder = _state(request).store.results_folder(identifier)
    except KeyError:
        return _error(404, "no such interpretation")
    if name not in RESULT_FILES or not (folder / "results.h5").is_file():
        return _error(404, "no such file")
    if name in FIGURES:
        await asyncio.to_thread(render_figure, folder, name)
        return FileResponse(folder / name, media_type=RESULT_FILES[name])
    return FileResponse(folder / name, media_type=RESULT_FILES[name], filename=f"{identifier[:8]}-{name}")


async def _post_feedback(request):
    """Feedback on an interpretation: JSON {"id", "rating" 1-5, "comment", "encoding" {label: value} or null}.
    ---
    responses:
      200:
        description: Stored; its number.
      400:
        description: Not valid feedback.
      404:
        description: No such interpretation.
    """
    from starlette.responses import JSONResponse

    state = _state(request)
    try:
        body = json.loads(await request.body())
        rating = body["rating"]
        if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
            raise ValueError("rating must be a whole number 1-5")
        comment = str(body.get("comment") or "")[:4000]
        encoding = body.get("encoding")
        if encoding is not None and not (
            isinstance(encoding, dict)
            and all(isinstance(v, int | float) and not isinstance(v, bool) and -1 <= v <= 1 for v in encoding.values())
        ):
            raise ValueError("encoding must map component labels to correlations in [-1, 1]")
        identifier = str(body["id"])
    except (ValueError, KeyError, TypeError) as error:
        return _error(400, f"not valid feedback: {error}")
    if not state.store.known(identifier):
        return _error(404, "no such interpretation")
    async with state.write_lock:
        number = state.store.add_feedback(Feedback(identifier, rating, comment, encoding, time.time()))
    return JSONResponse({"stored": number})


async def _list_feedback(request):
    """responses:
    200:
      description: The feedback received, newest first, with the interpretation it is about.
    """
    from starlette.responses import JSONResponse

    return JSONResponse(_state(request).store.feedback())


async def _openapi(request):
    from starlette.responses import JSONResponse
    from starlette.schemas import SchemaGenerator

    from cfsx import __version__

    generator = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "cfsx", "version": __version__}})
    return JSONResponse(generator.get_schema(routes=request.app.routes))


PAGE = Path(__file__).with_name("serve_page.html")


async def _page(request):
    from starlette.responses import HTMLResponse

    return HTMLResponse(PAGE.read_text())


async def _api_page(request):
    """The API, listed from its OpenAPI schema (no scripts from elsewhere: the machine may be offline)."""
    from html import escape

    from starlette.responses import HTMLResponse
    from starlette.schemas import SchemaGenerator

    schema = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "cfsx", "version": "1"}}).get_schema(
        routes=request.app.routes)  # fmt: skip
    listed = [(path, method, spec) for path, methods in schema.get("paths", {}).items()
              for method, spec in methods.items()]  # fmt: skip
    rows = "".join(f"<li><code>{escape(method.upper())} {escape(path)}</code>: "
                   f"{escape('; '.join(r['description'] for r in spec.get('responses', {}).values()))}</li>"
                   for path, method, spec in listed)  # fmt: skip
    return HTMLResponse(f"<!doctype html><title>cfsx API</title><h1>cfsx API {API}</h1><ul>{rows}</ul>"
                        f"<p>Schema: <a href='{API}/openapi.json'>{API}/openapi.json</a></p>")  # fmt: skip


async def _feedback_page(request):
    from html import escape

    from starlette.responses import HTMLResponse

    rows = "".join(
        f"<tr><td>{escape(item['source'])}</td><td>{escape(item['model'])}</td><td>{item['rating']}</td>"
        f"<td>{escape(item['comment'])}</td><td>{escape(json.dumps(item['suggested']))}</td>"
        f"<td>{time.strftime('%Y-%m-%d %H:%M', time.gmtime(item['created']))}</td></tr>"
        for item in _state(request).store.feedback()
    )
    return HTMLResponse(
        "<!doctype html><meta name=viewport content='width=device-width'><title>cfsx feedback</title>"
        "<h1>Feedback received</h1><table border=1 cellpadding=4><tr><th>image</th><th>model</th><th>rating</th>"
        f"<th>comment</th><th>suggested encoding</th><th>when (UTC)</th></tr>{rows}</table>"
    )


def run(settings: ServeSettings, host: str, port: int) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM)."""

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
