"""Schema dumps compiled once, for the hot routes.

marshmallow's `Schema.dump` walks its field machinery for every value of every row
(a quarter of GET /me/courses' CPU, measured with py-spy). For schemas made of plain
fields, `compile_dump` turns the schema into a list of (attribute, key, converter)
once; a dump is then a loop of dict lookups, and orjson encodes it. Any field it
does not know makes it fall back to the schema's own dump, so the output is always
what the schema gives (tests/test_fast_dump.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
from flask import Response, current_app
from marshmallow import Schema, fields

Dump = Callable[[Any], Any]

# Exact types only: a subclass may serialise differently.
_PLAIN: dict[type, Callable[[Any], Any]] = {
    fields.Integer: int,
    fields.Float: float,
    fields.String: str,
    fields.Boolean: bool,
}


def _converter(field: fields.Field) -> Dump | None:
    if type(field) in _PLAIN:
        return _PLAIN[type(field)]
    if type(field) is fields.DateTime and field.format in (None, "iso"):
        return datetime.isoformat
    if type(field) is fields.Nested and not field.many and isinstance(field.schema, Schema):
        return compile_dump(field.schema)
    if type(field) is fields.List and type(field.inner) is fields.Nested:
        item = compile_dump(field.inner.schema)
        return lambda values: [item(value) for value in values]
    return None


def compile_dump(schema: Schema) -> Dump:
    """A function giving `schema.dump(obj)` for a mapping `obj`."""
    plan = []
    for name, field in schema.dump_fields.items():
        convert = _converter(field)
        if convert is None:
            return schema.dump
        plan.append((field.attribute or name, field.data_key or name, convert))

    def dump(obj: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for attribute, key, convert in plan:
            if attribute in obj:  # marshmallow leaves missing attributes out
                value = obj[attribute]
                out[key] = None if value is None else convert(value)
        return out

    return dump


def respond(dump: Dump, data: Any, status: int = 200) -> Response:
    body = orjson.dumps(dump(data), option=orjson.OPT_SORT_KEYS)
    return current_app.response_class(body, status=status, mimetype="application/json")
