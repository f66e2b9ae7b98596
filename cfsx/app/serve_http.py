"""The HTTP side of ``cfsx serve`` that is not about interpretation: the token (a header or an HttpOnly cookie,
never in a URL or a log line), request bodies read under a byte limit and a time limit, errors as one-line JSON, the
address the server may listen on."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
from pathlib import Path

from cfsx.errors import ConfigError, DataError

API = "/api/v1"
FORM_OVERHEAD = 2**16  # bytes of a multipart form besides its image (the options, the boundaries)
FEEDBACK_BYTES = 2**16  # the largest feedback body
RECEIVING_PER_QUEUE = 2  # uploads whose bodies may arrive at once, per place in the queue
BODY_TIMEOUTS = 10  # a whole body must arrive within this many body timeouts (a client trickling bytes)


class BodyTooLarge(Exception):  # noqa: N818  (an HTTP 413)
    """A request body grew past its limit while it was read."""


class BodyTimeout(Exception):  # noqa: N818  (an HTTP 408)
    """A request body stalled for longer than the server waits."""


def guarded(request, limit: int, timeout: float):
    """The request with a body read under a byte limit (also without Content-Length: chunked) and time limits: each
    piece within ``timeout`` seconds, the whole body within BODY_TIMEOUTS of them (a stalled or trickling client)."""
    from starlette.requests import Request

    received = 0
    deadline = asyncio.get_running_loop().time() + BODY_TIMEOUTS * timeout

    async def receive():
        nonlocal received
        left = deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(request.receive(), max(0.0, min(timeout, left)))
        except TimeoutError:
            raise BodyTimeout from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return Request(request.scope, receive)


def form_problem(error: Exception) -> str:
    """What is wrong with a multipart body, in one line, without the server's internals."""
    detail = getattr(error, "detail", None) or str(error) or type(error).__name__
    return str(detail).splitlines()[0][:200]


def refusal(status: int, message: str, headers: dict[str, str] | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


log = logging.getLogger("cfsx.serve")


class OneLineErrors:
    """Any error a request meets that is not answered otherwise: a 500 with one line of JSON, and one line in the
    log (never a traceback in either); the server keeps running."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:  # noqa: BLE001  (the last line of defence: one line, the server stays up)
            line = f"internal error ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            log.error("%s %s: %s", scope.get("method"), scope.get("path"), line)
            if not started:
                await refusal(500, f"{line[:300]}; the server keeps running")(scope, receive, send)


TOKEN_COOKIE = "cfsx_token"


class TokenCheck:
    """With a token set, every request needs it: ``Authorization: Bearer TOKEN``, or the HttpOnly cookie the page
    gets when it is opened once as ``/?token=TOKEN`` (answered by a redirect to ``/``: the token leaves the address,
    and no link the page makes carries it)."""

    def __init__(self, app, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.token is None:
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request
        from starlette.responses import RedirectResponse

        request = Request(scope)
        offered = request.query_params.get("token")
        if offered is not None and scope["path"] == "/" and self._right(offered):
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, offered, httponly=True, samesite="strict",
                                secure=scope.get("scheme") == "https")  # fmt: skip
            await response(scope, receive, send)
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not self._right(given or request.cookies.get(TOKEN_COOKIE, "")):
            await refusal(401, "this server needs its token: Authorization: Bearer TOKEN")(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _right(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(errors="replace"), self.token.encode())


def read_token(path: str | Path) -> str:
    """The token in a file (its first line); refused when missing, not a file, not text, empty, short or readable by
    others."""
    import stat

    path = Path(path)
    if path.is_dir():
        raise DataError(f"the token file {path} is a directory")
    if not path.is_file():
        raise DataError(f"no such token file: {path}")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DataError(f"{path} is readable by others: chmod 600 {path}")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise DataError(f"the token file {path} is not UTF-8 text") from None
    token = text.splitlines()[0].strip() if text else ""
    if len(token) < 16:
        raise DataError(f"the token in {path} is shorter than 16 characters")
    return token


def check_address(host: str, port: int, token: str | None, no_token: bool) -> str | None:
    """Refuse a port outside 1..65535 and, without a token, any address but this machine's (unless ``no_token``:
    then a warning line to print is returned, for a server behind a proxy that authenticates)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"--port must be a whole number in 1..65535, got {port!r}")
    if token is not None and no_token:
        raise ConfigError("--token-file and --no-token contradict each other: give one of them")
    if token is not None or _loopback(host):
        return None
    if not no_token:
        raise ConfigError(
            f"--host {host} lets other machines reach the server: give --token-file FILE (chmod 600), or --no-token "
            "when a proxy in front of it authenticates"
        )
    return f"warning: serving on {host} without a token (--no-token): anyone who can reach it can use it"


def _loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class RedactToken(logging.Filter):
    """Keep a token out of the access log: ``token=...`` in a logged request line becomes ``token=[redacted]``."""

    PATTERN = re.compile(r"(token=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                                for arg in record.args)  # fmt: skip
        return True


def log_config() -> dict:
    """uvicorn's logging config with the access log's handler filtered by RedactToken."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_token"] = {"()": "cfsx.app.serve_http.RedactToken"}
    config["handlers"]["access"]["filters"] = ["redact_token"]
    return config
