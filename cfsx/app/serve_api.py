"""The records of the API of ``cfsx serve`` (/api/v1) and its OpenAPI document, generated from them.

Every answer is one of these dataclasses, made into JSON by ``cfsx.io.records.to_plain``; ``openapi_document``
describes each request and answer with the JSON schema of its record (``records.json_schema``), so the document
cannot drift from what the server sends. Dataclasses rather than pydantic models: the records of cfsx are
dataclasses already (docs/serve.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cfsx.app.serve_http import API
from cfsx.io import records


@dataclass(frozen=True)
class Refusal:
    """Every refusal and error: one line."""

    error: str


@dataclass(frozen=True)
class QueueState:
    pending: int  # requests whose bodies have arrived, waiting or running
    limit: int


@dataclass(frozen=True)
class Health:
    """The server's state (GET /api/v1/health)."""

    status: str  # "ok", or "degraded" when something listed in problems is broken
    problems: list[str]
    version: str
    models: list[str]
    workers: int
    queue: QueueState
    served: int
    interpretations: int
    feedback: int


@dataclass(frozen=True)
class ModelInfo:
    """A served model, from its card (GET /api/v1/models)."""

    name: str
    cfs: int
    architecture: str
    labels: list[str]
    image_size: int
    h_max: float
    hold_out_r2: float


@dataclass(frozen=True)
class InterpretAnswer:
    """One interpreted upload (POST /api/v1/interpret)."""

    id: str
    model: str
    interpretation: dict[str, Any]  # results.json's image record (results.schema.json)
    correction: dict[str, Any] | None  # what correct did, as cfsx correct --json prints it; None: not corrected
    summary: str
    links: dict[str, str]  # file name -> its address
    seconds: float
    knowledge_store_size: int | None  # the model's knowledge store after this image; None: not recorded
    knowledge_store_error: str | None  # why it was not recorded, when it should have been


@dataclass(frozen=True)
class FeedbackRequest:
    """Feedback on an interpretation (POST /api/v1/feedback, JSON)."""

    id: str
    rating: int  # 1 (wrong) .. 5 (right)
    comment: str | None = None
    encoding: dict[str, float] | None = None  # some of the model's components, each in [-1, 1]


@dataclass(frozen=True)
class FeedbackStored:
    stored: int  # the feedback's number


@dataclass(frozen=True)
class FeedbackEntry:
    """Feedback received, with the interpretation it is about (GET /api/v1/feedback)."""

    number: int
    id: str
    rating: int
    comment: str
    suggested: dict[str, float] | None
    created: float
    model: str
    source: str
    interpreted: dict[str, float]


def answer(record: Any, status: int = 200, headers: dict[str, str] | None = None):
    """A record (or a list of them) as a JSON response."""
    from starlette.responses import JSONResponse

    return JSONResponse(records.to_plain(record), status_code=status, headers=headers)


# The multipart form of POST /api/v1/interpret (its fields are text, as HTML forms send them).
INTERPRET_FORM = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "the image file, in a format cfsx reads"},
        "model": {"type": "string", "description": "a served model's name (default: the first)"},
        "origin": {"type": "string", "description": "ROW,COLUMN: the pixel of h = k = 0"},
        "pixels_per_rlu": {"type": "string", "description": "ROWS,COLUMNS: pixels per r.l.u."},
        "centre": {"type": "string", "description": "ROW,COL or H=-2,L=4: the window's centre"},
        "refine": {"type": "string", "enum": ["", "true", "false", "on", "1", "0"]},
        "replicates": {"type": "string", "pattern": "^[0-9]*$", "description": "decoded structures, 0..32"},
    },
}


def openapi_document(version: str, results_schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of /api/v1: every request and answer with its record's schema (``results_schema``:
    results.schema.json, whose image record is the interpretation of an answer)."""
    kinds = (Refusal, Health, ModelInfo, InterpretAnswer, FeedbackRequest, FeedbackStored, FeedbackEntry)
    schemas = {kind.__name__: records.json_schema(kind) for kind in kinds}
    schemas.update({f"results_{name}": _rebased(value) for name, value in results_schema["$defs"].items()})
    schemas["InterpretAnswer"]["properties"]["interpretation"] = {"$ref": "#/components/schemas/results_record"}

    def reply(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        shown = schema or {"$ref": "#/components/schemas/Refusal"}
        return {"description": description, "content": {"application/json": {"schema": shown}}}

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    refusals = {"400": reply("Not valid (one line in error)"), "401": reply("The server's token is needed")}
    paths = {
        f"{API}/health": {"get": {"responses": {"200": reply("The server's state", ref("Health")), **refusals}}},
        f"{API}/models": {
            "get": {
                "responses": {
                    "200": reply("The served models", {"type": "array", "items": ref("ModelInfo")}),
                    **refusals,
                }
            }
        },  # fmt: skip
        f"{API}/interpret": {
            "post": {
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": INTERPRET_FORM}}},
                "responses": {
                    "200": reply("The interpretation", ref("InterpretAnswer")),
                    **refusals,
                    "404": reply("Unknown model"),
                    "408": reply("The upload stalled"),
                    "413": reply("The upload is too large (bytes or pixels)"),
                    "500": reply("The worker stopped on this image (it was restarted)"),
                    "503": reply("The queue is full: try again after Retry-After seconds"),
                },
            }
        },  # fmt: skip
        f"{API}/results/{{identifier}}/{{name}}": {
            "get": {
                "parameters": [
                    {"name": "identifier", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "The file", "content": {"application/octet-stream": {}}},
                    "404": reply("No such interpretation or file"),
                    **refusals,
                },
            }
        },  # fmt: skip
        f"{API}/feedback": {
            "post": {
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("FeedbackRequest")}}},
                "responses": {
                    "200": reply("Stored", ref("FeedbackStored")),
                    **refusals,
                    "404": reply("No such interpretation"),
                    "408": reply("The body stalled"),
                    "413": reply("The feedback is too large"),
                },
            },
            "get": {
                "responses": {
                    "200": reply(
                        "The feedback received, newest first", {"type": "array", "items": ref("FeedbackEntry")}
                    ),
                    **refusals,
                }
            },
        },  # fmt: skip
    }
    return {"openapi": "3.1.0", "info": {"title": "cfsx", "version": version}, "paths": paths,
            "components": {"schemas": schemas}}  # fmt: skip


def _rebased(schema: dict[str, Any]) -> dict[str, Any]:
    """A definition of results.schema.json with its references pointing into the OpenAPI document's components."""
    return json.loads(json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/results_'))
