"""The pages of ``cfsx serve`` besides the API: the interpretation page, the feedback table, the API's list and its
OpenAPI document."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cfsx.app.serve_http import API


def document() -> dict:
    """The OpenAPI document of the API (cfsx.app.serve_api), with the schema of results.json's image records."""
    from cfsx import __version__
    from cfsx.app.serve_api import openapi_document
    from cfsx.interpretation.results import results_schema

    return openapi_document(__version__, results_schema())


async def openapi(request):
    from starlette.responses import JSONResponse

    return JSONResponse(document())


PAGE = Path(__file__).with_name("serve_page.html")


async def page(request):
    from starlette.responses import HTMLResponse

    return HTMLResponse(PAGE.read_text())


async def api_page(request):
    """The API, listed from its OpenAPI schema (no scripts from elsewhere: the machine may be offline)."""
    from html import escape

    from starlette.responses import HTMLResponse

    schema = document()
    listed = [(path, method, spec) for path, methods in schema.get("paths", {}).items()
              for method, spec in methods.items()]  # fmt: skip
    rows = "".join(f"<li><code>{escape(method.upper())} {escape(path)}</code>: "
                   f"{escape('; '.join(r['description'] for r in spec.get('responses', {}).values()))}</li>"
                   for path, method, spec in listed)  # fmt: skip
    return HTMLResponse(f"<!doctype html><title>cfsx API</title><h1>cfsx API {API}</h1><ul>{rows}</ul>"
                        f"<p>Schema: <a href='{API}/openapi.json'>{API}/openapi.json</a></p>")  # fmt: skip


async def feedback_page(request):
    from html import escape

    from starlette.responses import HTMLResponse

    rows = "".join(
        f"<tr><td>{escape(item.source)}</td><td>{escape(item.model)}</td><td>{item.rating}</td>"
        f"<td>{escape(item.comment)}</td><td>{escape(json.dumps(item.suggested))}</td>"
        f"<td>{time.strftime('%Y-%m-%d %H:%M', time.gmtime(item.created))}</td></tr>"
        for item in request.app.state.cfsx.store.feedback()
    )
    return HTMLResponse(
        "<!doctype html><meta name=viewport content='width=device-width'><title>cfsx feedback</title>"
        "<h1>Feedback received</h1><table border=1 cellpadding=4><tr><th>image</th><th>model</th><th>rating</th>"
        f"<th>comment</th><th>suggested encoding</th><th>when (UTC)</th></tr>{rows}</table>"
    )
