"""JSON for every response: datetimes as ISO 8601 with offset (API.md), not RFC 822."""

from __future__ import annotations

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


class ApiJSONProvider(DefaultJSONProvider):
    default = staticmethod(_default)
