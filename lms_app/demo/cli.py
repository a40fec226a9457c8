"""Demo data commands (filled in by lms_app.demo.seed)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    pass
