"""Responses rendered once and served many times.

A cached read stores the body as the route's schema would dump it, already encoded:
a hit then costs neither marshmallow nor the JSON encoder, only string joins. Each
route's test pins the cached body to the schema's dump.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from marshmallow import Schema


def render(schema: Schema, data: Any) -> str:
    """`data` as `schema` dumps it, as compact JSON text."""
    return encode(schema.dump(data))


def encode(dumped: Any) -> str:
    """What a schema dumped, as compact JSON text."""
    return current_app.json.dumps(dumped, separators=(",", ":"))


def open_object(schema: Schema, data: Any) -> str:
    """`render` without the closing brace, to append per-request fields to."""
    return render(schema, data)[:-1]


def json_response(body: str, status: int = 200) -> Response:
    return current_app.response_class(body, status=status, mimetype="application/json")
