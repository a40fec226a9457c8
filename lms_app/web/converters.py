"""URL converters: `<id:course_id>` only matches ids PostgreSQL's bigint can hold.

The range lives in the converter's regex, not in a check after matching: Werkzeug
collects the methods of every rule whose regex matched before it validates values,
so `GET /lessons/0` (an id the check refused) answered 405 "Allow: PATCH, DELETE"
instead of 404.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter

from lms_app.tenancy.slugs import SLUG_PATTERN
from lms_app.web.fields import BIGINT_MAX


def positive_up_to(limit: int) -> str:
    """A regex matching the decimal integers 1..limit, without leading zeros."""
    digits = str(limit)
    shorter = [rf"[1-9]\d{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    same_length = []
    for i, d in enumerate(digits):
        low = "1" if i == 0 else "0"
        if int(d) > int(low):
            rest = len(digits) - i - 1
            same_length.append(
                f"{digits[:i]}[{low}-{int(d) - 1}]" + (rf"\d{{{rest}}}" if rest else "")
            )
    return "|".join([*shorter, *same_length, digits])


class IdConverter(BaseConverter):
    regex = f"(?:{positive_up_to(BIGINT_MAX)})"
    part_isolating = True

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(int(value))


class SlugConverter(BaseConverter):
    """`<slug:slug>`: a tenant slug's shape, so anything else (a NUL byte, say) is no
    route (404) and never reaches a query."""

    regex = SLUG_PATTERN.pattern.removeprefix("^").removesuffix("$")


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["slug"] = SlugConverter
