"""Keyset pagination: `?limit=` and an opaque `?cursor=` (never OFFSET).

A cursor is the sort key of the last row served, base64url-encoded JSON. Clients
treat it as opaque; a tampered or stale cursor is a 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from lms_app.web.fields import BIGINT_MAX, Text

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(*key: Any) -> str:
    payload = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> tuple[Any, ...]:
    """Decode a cursor whose parts have the given types (datetime, int, str)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError
        values: list[Any] = []
        for part, kind in zip(parts, kinds, strict=True):
            if kind is datetime:
                value = datetime.fromisoformat(part)
                if value.tzinfo is None:
                    raise ValueError
                # One form per instant (cache keys, comparisons); an instant that UTC
                # cannot hold (year 1 at +14:00) is no position in any list.
                value = value.astimezone(UTC)
            elif kind is int:
                if not isinstance(part, int) or isinstance(part, bool):
                    raise ValueError
                if not -BIGINT_MAX <= part <= BIGINT_MAX:
                    raise ValueError
                value = part
            else:
                if not isinstance(part, str):
                    raise ValueError
                value = part
            values.append(value)
        return tuple(values)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("invalid cursor", field_name="cursor") from None


class PageArgs(Schema):
    """`?limit=&cursor=`; subclasses add their filters."""

    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT))
    cursor = Text(load_default=None, max_length=512)


class CursorPageArgs(PageArgs):
    """Cursor over (created_at, id): the common keyset of lms_app lists."""

    @post_load
    def _decode(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["after"] = decode_cursor(data["cursor"], (datetime, int)) if data["cursor"] else None
        return data


def page(rows: Sequence[Any], limit: int, key) -> tuple[list[Any], str | None]:
    """Split `limit + 1` fetched rows into the page and the next cursor."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(*key(items[-1])) if len(rows) > limit and items else None
    return items, next_cursor


class PageSchema(Schema):
    next_cursor = fields.String(allow_none=True)
