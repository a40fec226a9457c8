"""No cookie sessions: lms_app authenticates every request by its bearer token.

Flask opens its signed-cookie session on every request (building a serializer and
reading the cookie: about 5 % of a cheap request, measured with py-spy) even when
nothing uses it. This interface hands out one shared null session instead.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.sessions import NullSession, SessionInterface


class NoSessions(SessionInterface):
    null_session_class = NullSession

    def open_session(self, app: Flask, request: Any) -> None:
        return None  # Flask falls back to make_null_session

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


def init_app(app: Flask) -> None:
    app.session_interface = NoSessions()
