"""JSON in and out.

Out: datetimes as ISO 8601 with offset (API.md), not RFC 822.

In: RFC 8259 JSON only, and nothing that makes the parser itself fail. Python's
`json` accepts NaN and Infinity, raises RecursionError on deep nesting and
ValueError on integers of more than 4,300 digits; all of these are a malformed body
(400), for Flask's `request.get_json` and for the webargs parser alike.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask.json.provider import DefaultJSONProvider


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return DefaultJSONProvider.default(value)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_strict(data: str | bytes, **kwargs: Any) -> Any:
    """`json.loads`, raising only JSONDecodeError (or UnicodeDecodeError) on bad input."""
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    try:
        return json.loads(text, parse_constant=_no_constants, **kwargs)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc).split(";", 1)[0], text, 0) from None


class ApiJSONProvider(DefaultJSONProvider):
    default = staticmethod(_default)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_strict(s, **kwargs)
