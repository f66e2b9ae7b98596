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
import json
import os
import shutil
import time
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
from cfsx.app.serve_api import FeedbackStored, Health, InterpretAnswer, ModelInfo, QueueState, answer
from cfsx.app.serve_http import (
    API,
    FEEDBACK_BYTES,
    FORM_OVERHEAD,
    RECEIVING_PER_QUEUE,
    BodyTimeout,
    BodyTooLarge,
    OneLineErrors,
    TokenCheck,
    form_problem,
    guarded,
    refusal,
)
from cfsx.app.serve_pages import api_page, feedback_page, openapi, page
from cfsx.app.serve_work import FIGURES, Job, Options, failure, interpret_upload, render_figure, start_worker
from cfsx.config.flags import Calibration
from cfsx.errors import CfsxError, ConfigError

MIN_QUEUE = 8  # requests waiting or running before the server answers 503
MAX_REQUEST_REPLICATES = 32  # decoded structures a request may ask for (each a Monte Carlo run in a worker)
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
    foreign_files: bool = False  # start on a store that holds files the server did not make (left alone)
    body_timeout: float = 30.0  # seconds an upload may pause while its body arrives (a stalled client: 408)

    def __post_init__(self) -> None:
        from cfsx.config import is_int, is_number, require

        checks = (
            (is_int(self.workers) and self.workers >= 1, f"workers must be a whole number >= 1, got {self.workers!r}"),
            (is_int(self.max_upload_bytes) and self.max_upload_bytes > 0,
             f"the upload limit must be a positive number of bytes, got {self.max_upload_bytes!r}"),
            (is_int(self.max_pixels) and self.max_pixels > 0,
             f"--max-pixels must be a whole number > 0, got {self.max_pixels!r}"),
            (is_number(self.retention_days) and self.retention_days > 0,
             f"--retention-days must be a finite number > 0, got {self.retention_days!r}"),
            (is_int(self.queue) and self.queue >= MIN_QUEUE,
             f"the queue must hold at least {MIN_QUEUE} requests, got {self.queue!r}"),
            (is_int(self.replicates) and 0 <= self.replicates <= MAX_REQUEST_REPLICATES,
             f"--replicates must be a whole number in 0..{MAX_REQUEST_REPLICATES}, got {self.replicates!r}"),
            (is_number(self.body_timeout) and self.body_timeout > 0,
             f"the body timeout must be a finite number of seconds > 0, got {self.body_timeout!r}"),
        )  # fmt: skip
        for ok, message in checks:
            require(ok, message)


@dataclass
class _State:
    settings: ServeSettings
    store: Store
    pool: ProcessPoolExecutor | None = None
    pending: int = 0  # requests in the queue: their bodies have arrived
    receiving: int = 0  # requests whose bodies are arriving
    served: int = 0
    started: float = field(default_factory=time.time)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cards: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # what is broken, by what (health reports it)

    def renew_pool(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """New workers in place of the ``broken`` pool (unless another request renewed it already)."""
        if self.pool is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self.new_pool()
        return self.pool

    def new_pool(self) -> ProcessPoolExecutor:
        """A pool whose workers load every model once (spawned: no TensorFlow state is copied) and end with the
        server, also when it is killed."""
        initialise = (os.getpid(), self.settings.models)
        self.pool = ProcessPoolExecutor(self.settings.workers, mp_context=get_context("spawn"),
                                        initializer=start_worker, initargs=initialise)  # fmt: skip
        return self.pool


def served_models(names: list[str]) -> dict[str, str]:
    """Model key -> file: the given built-in names and .keras paths (a file's key is its stem), or every
    installed built-in model when none is given."""
    from cfsx.learning.builtin import builtin_models, resolve_model
    from cfsx.learning.model_card import check_model_archive, read_model_card

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
        check_model_archive(path)  # nor one whose weights are damaged
        models[key] = str(path)
    return models


def create_app(settings: ServeSettings):
    """The ASGI app of ``cfsx serve`` (Starlette)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from cfsx.learning.model_card import read_model_card

    state = _State(settings, Store(settings.store, settings.foreign_files))
    try:
        state.cards = {key: read_model_card(path) for key, path in settings.models.items()}
        for key, card in state.cards.items():
            _check_knowledge_store(state.store.knowledge_store(key), card)
        state.store.prune(settings.retention_days)
    except BaseException:
        state.store.close()
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.new_pool()
        try:
            yield
        finally:
            state.pool.shutdown(wait=False, cancel_futures=True)
            state.store.close()

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/feedback", feedback_page, methods=["GET"]),
        Route(f"{API}/health", _health, methods=["GET"]),
        Route(f"{API}/models", _models, methods=["GET"]),
        Route(f"{API}/interpret", _interpret, methods=["POST"]),
        Route(f"{API}/results/{{identifier}}/{{name}}", _result_file, methods=["GET"]),
        Route(f"{API}/feedback", _post_feedback, methods=["POST"]),
        Route(f"{API}/feedback", _list_feedback, methods=["GET"]),
        Route(f"{API}/openapi.json", openapi, methods=["GET"]),
        Route("/api", api_page, methods=["GET"]),
    ]
    middleware = [Middleware(OneLineErrors), Middleware(TokenCheck, token=settings.token)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: _http_refusal})  # fmt: skip
    app.state.cfsx = state
    return app


async def _http_refusal(request, problem):
    """Starlette's own refusals (no such address: 404; a method the address does not take: 405) as one line of
    JSON, like every other refusal."""
    detail = {404: "no such address", 405: f"{request.method} is not taken here"}.get(problem.status_code)
    return refusal(problem.status_code, detail or str(problem.detail), getattr(problem, "headers", None))


def _state(request) -> _State:
    return request.app.state.cfsx


async def _health(request):
    """The server's state (serve_api.Health)."""
    from cfsx import __version__

    state = _state(request)
    counts = state.store.counts()
    return answer(Health(status="degraded" if state.problems else "ok", problems=sorted(state.problems.values()),
                         version=__version__, models=list(state.cards), workers=state.settings.workers,
                         queue=QueueState(state.pending, state.settings.queue), served=state.served,
                         interpretations=counts["interpretations"], feedback=counts["feedback"]))  # fmt: skip


async def _models(request):
    """The served models, from their model cards (serve_api.ModelInfo)."""
    return answer([ModelInfo(key, card.cfs, card.architecture, card.labels, card.image_size, card.h_max,
                             card.hold_out_r2) for key, card in _state(request).cards.items()])  # fmt: skip


def _options(form, cards: dict[str, Any], replicates_default: int) -> Options:
    model = str(form.get("model") or next(iter(cards)))
    if model not in cards:
        raise KeyError(model)
    replicates = str(form.get("replicates") or "").strip()
    if replicates and not (replicates.isdigit() and int(replicates) <= MAX_REQUEST_REPLICATES):
        raise ConfigError(f"replicates must be a whole number in 0..{MAX_REQUEST_REPLICATES}, got {replicates[:20]!r}")
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
    limit = settings.max_upload_bytes + FORM_OVERHEAD
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limit:
        return refusal(413, f"the upload is larger than {settings.max_upload_bytes} bytes")
    if state.receiving >= RECEIVING_PER_QUEUE * settings.queue:
        return refusal(503, "the server is busy: try again shortly", {"Retry-After": "5"})
    state.receiving += 1  # the body is read first; a request joins the queue only once it has arrived
    try:
        received = await _receive_upload(guarded(request, limit, settings.body_timeout), state)
    finally:
        state.receiving -= 1
    if not isinstance(received, tuple):
        return received  # the refusal
    if state.pending >= settings.queue:
        return refusal(503, "the server is busy: try again shortly", {"Retry-After": "5"})
    state.pending += 1
    try:
        return await _interpret_queued(state, *received)
    finally:
        state.pending -= 1


async def _receive_upload(request, state: _State):
    """The upload's bytes, its name and the options, or the response that refuses it."""
    settings = state.settings
    try:
        async with request.form(max_files=1, max_fields=16, max_part_size=2**16) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                return refusal(400, "send the image as the multipart field 'image'")
            options = _options(form, state.cards, settings.replicates)
            data = await upload.read(settings.max_upload_bytes + 1)
            source = Path(upload.filename or "upload").name
    except KeyError as unknown:
        return refusal(404, f"unknown model {str(unknown.args[0])[:80]!r} (GET {API}/models lists them)")
    except ConfigError as error:
        return refusal(400, str(error))
    except BodyTooLarge:
        return refusal(413, f"the upload is larger than {settings.max_upload_bytes} bytes")
    except BodyTimeout:
        return refusal(408, f"the upload stalled for more than {settings.body_timeout:g} s")
    except Exception as error:  # a malformed multipart body
        return refusal(400, f"not a multipart form with one image: {form_problem(error)}")
    if len(data) > settings.max_upload_bytes:
        return refusal(413, f"the upload is larger than {settings.max_upload_bytes} bytes")
    return data, source, options


async def _interpret_queued(state: _State, data: bytes, source: str, options: Options):

    settings = state.settings
    suffix = Path(source).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        return refusal(400, f"not an image file cfsx reads ({', '.join(UPLOAD_SUFFIXES)}): {source!r}")
    identifier = state.store.issue()
    folder = state.store.results_folder(identifier)
    folder.mkdir()
    (folder / f"upload{suffix}").write_bytes(data)
    job = Job(folder, f"upload{suffix}", source, options, settings.max_pixels)
    loop = asyncio.get_running_loop()
    try:
        pool = state.pool
        try:
            served = await loop.run_in_executor(pool, interpret_upload, job)
        except BrokenProcessPool:  # a worker died, perhaps while idle (killed, out of memory): once more, new workers
            pool = state.renew_pool(pool)
            served = await loop.run_in_executor(pool, interpret_upload, job)
    except BrokenProcessPool:
        shutil.rmtree(folder, ignore_errors=True)
        state.renew_pool(pool)  # a worker died on this image (out of memory, a crash): new workers, the server stays up
        return refusal(500, "the interpretation worker stopped on this image; the server restarted its workers")
    except Exception as error:
        shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing behind
        status, message = failure(error, job)
        return refusal(status, message)
    async with state.write_lock:
        state.store.add_interpretation(identifier, options.model, served.interpretation)
        stored, problem = None, None
        if served.interpretation.decoded is not None:
            card = state.cards[options.model]
            path = state.store.knowledge_store(options.model)
            try:
                stored = await asyncio.to_thread(_record_locked, path, card, served.interpretation)
                state.problems.pop(path.name, None)
            except (CfsxError, OSError) as error:  # the interpretation stands; the store says what is wrong
                problem = f"not recorded in the knowledge store {path.name}: {str(error).splitlines()[0]}"
                state.problems[path.name] = problem
    state.served += 1
    record = served.document["images"][0]
    links = {name: f"{API}/results/{identifier}/{name}" for name in RESULT_FILES}
    return answer(InterpretAnswer(id=identifier, model=options.model, interpretation=record,
                                  correction=None if served.correction is None else served.correction.record(),
                                  summary=served.interpretation.summary(), links=links, seconds=served.seconds,
                                  knowledge_store_size=stored, knowledge_store_error=problem))  # fmt: skip


def _check_knowledge_store(path: Path, card) -> None:
    """Refuse to start when a model's knowledge store exists but cannot take its interpretations (damaged, or of
    another model's encoding or settings)."""
    from cfsx.config.flags import interpretation_config
    from cfsx.errors import DataError
    from cfsx.interpretation import store_attributes
    from cfsx.io.dataset import check_appendable

    if path.exists():
        try:
            check_appendable(path, store_attributes(card, interpretation_config().decode.lattice_size))
        except DataError as error:
            raise DataError(f"the knowledge store {path} cannot take this server's interpretations ({error}): move "
                            "it away or give another --store") from None  # fmt: skip


def _record_locked(path: Path, card, interpretation) -> int:
    """Append to a knowledge store under its lock, as ``interpret --record`` does (the two may share a store)."""
    from cfsx.interpretation import record_store
    from cfsx.io.outputs import OutputLock

    with OutputLock(path):
        return record_store(path, card, [interpretation])


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
        return refusal(404, "no such interpretation")
    if name not in RESULT_FILES or not (folder / "results.h5").is_file():
        return refusal(404, "no such file")
    if name in FIGURES:
        try:
            await asyncio.to_thread(render_figure, folder, name)
        except FileNotFoundError as missing:
            return refusal(404, f"no such file: {missing}")
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

    state = _state(request)
    try:
        body = json.loads(await guarded(request, FEEDBACK_BYTES, state.settings.body_timeout).body())
        if not isinstance(body, dict):
            raise ValueError("send a JSON object")
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
        identifier = str(body["id"])[:64]
    except BodyTooLarge:
        return refusal(413, f"feedback is at most {FEEDBACK_BYTES} bytes")
    except BodyTimeout:
        return refusal(408, f"the feedback stalled for more than {state.settings.body_timeout:g} s")
    except RecursionError:
        return refusal(400, "not valid feedback: JSON nested too deeply")
    except KeyError as missing:
        return refusal(400, f"not valid feedback: it needs {missing}")
    except (ValueError, TypeError) as error:
        return refusal(400, f"not valid feedback: {str(error)[:200]}")
    model = state.store.model_of(identifier)
    if model is None:
        return refusal(404, "no such interpretation")
    labels = state.cards[model].labels if model in state.cards else None
    if encoding is not None and labels is not None and not set(encoding) <= set(labels):
        return refusal(400, f"not valid feedback: an encoding names some of the model's components "
                            f"({', '.join(labels)}), nothing else")  # fmt: skip
    async with state.write_lock:
        number = state.store.add_feedback(Feedback(identifier, rating, comment, encoding, time.time()))
    return answer(FeedbackStored(number))


async def _list_feedback(request):
    """The feedback received, newest first, with the interpretation it is about (serve_api.FeedbackEntry)."""
    return answer(_state(request).store.feedback())


def run(app, host: str, port: int) -> None:
    """Serve ``app`` (``create_app``) until stopped: SIGTERM is the clean stop of a service (returns), Ctrl-C
    (SIGINT) ends in KeyboardInterrupt after the same graceful shutdown (exit 130, the table in README)."""
    from cfsx.app.serve_http import log_config
    from cfsx.errors import Terminated

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", log_config=log_config()))
    try:
        server.run()
    except Terminated:
        return
    finally:
        app.state.cfsx.store.close()  # also when the server never started (its port taken): the store's lock goes
