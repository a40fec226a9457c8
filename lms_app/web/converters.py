"""URL converters: `<id:course_id>` only matches ids PostgreSQL's bigint can hold."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

from lms_app.web.fields import BIGINT_MAX


class IdConverter(IntegerConverter):
    def __init__(self, url_map, **kwargs):
        super().__init__(url_map, min=1, max=BIGINT_MAX, **kwargs)


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
