"""Every error leaves as API.md's JSON shape: never HTML, never a traceback.

`{"code": 404, "status": "Not Found", "message": "...", "errors": {...}}`, with
`errors` only on validation failures (field -> messages).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, NoReturn

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    ServiceUnavailable,
    UnprocessableEntity,
    default_exceptions,
)

from lms_app.observability.logging import exception_outline

log = logging.getLogger(__name__)


def error_body(code: int, message: str | None = None, errors: Any = None) -> dict[str, Any]:
    status = HTTPStatus(code)
    body: dict[str, Any] = {
        "code": code,
        "status": status.phrase,
        "message": message or status.description or status.phrase,
    }
    if errors:
        body["errors"] = _plain(errors)
    return body


def _plain(value: Any) -> Any:
    """Errors as JSON can always carry them: string keys (marshmallow keys list items
    by int, beside "_schema"; mixed keys cannot even be sorted), lists, scalars."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def abort(
    code: int, message: str, errors: Any = None, headers: dict[str, str] | None = None
) -> NoReturn:
    """Stop the request with an API error (compatible with flask-smorest's abort)."""
    exc = default_exceptions[code](description=message)
    exc.data = {"message": message, "errors": errors, "headers": headers}  # type: ignore[attr-defined]
    raise exc


LOCATIONS = {"json", "query", "path", "form", "headers", "view_args", "querystring"}


def _flatten_locations(errors: dict[str, Any]) -> dict[str, Any]:
    """{"json": {"title": [...]}} -> {"title": [...]}; a whole-body error -> "_schema"."""
    flat: dict[str, Any] = {}
    for location, found in errors.items():
        if isinstance(found, dict):
            flat.update(found)
        else:
            flat["_schema" if location == "json" else location] = found
    return flat


def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    message = data.get("message") or exc.description
    # webargs/flask-smorest put field errors under "messages": {location: {field: [...]}}
    errors = data.get("errors") or data.get("messages")
    if isinstance(errors, dict) and set(errors) <= LOCATIONS:
        errors = _flatten_locations(errors)
    if code == 422 and errors and message == UnprocessableEntity.description:
        message = "invalid input; see errors"
    elif code == 400 and errors and data.get("messages"):
        message = "malformed JSON body"
    if code != 422:
        errors = None  # API.md: `errors` on 422 only, absent otherwise
    response = jsonify(error_body(code, message, errors))
    response.status_code = code
    for name, value in exc.get_headers():
        if name.lower() not in {"content-type", "content-length"}:
            response.headers[name] = value
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


def error_response(code: int, message: str) -> Response:
    """The JSON error response itself, for error handlers (which must not raise)."""
    return _http_error(default_exceptions[code](description=message))


def unexpected_error_response(exc: Exception) -> Response:
    return _unexpected(exc)


# deadlock_detected, serialization_failure: the transaction lost a race and may be
# run again (lms_app.db.retry does, once).
TRANSIENT_PGCODES = frozenset({"40P01", "40001"})


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "pgcode", None) in TRANSIENT_PGCODES


def _unavailable(exc: Exception) -> bool:
    """The database is out of reach or busy rather than wrong: the client may retry."""
    if isinstance(exc, PoolTimeoutError) or is_transient(exc):
        return True
    # A connection that failed or broke carries no SQLSTATE.
    return isinstance(exc, OperationalError) and getattr(exc.orig, "pgcode", None) is None


def _unexpected(exc: Exception) -> Response:
    _log_unexpected(exc)
    if _unavailable(exc):
        response = _http_error(ServiceUnavailable("the database is busy; try again shortly"))
        response.headers["Retry-After"] = "1"
        return response
    return _http_error(InternalServerError("unexpected error; it has been logged"))


def _log_unexpected(exc: Exception) -> None:
    """Where it failed, never what it failed on.

    Exception messages are not logged: a database error quotes rows and statements
    (`DETAIL: Key (email)=(...)`), others quote input. The log gets the exception
    types of the chain, PostgreSQL's error code and the frames (code lines only).
    """
    pgcode = getattr(getattr(exc, "orig", None), "pgcode", None)
    log.error("unhandled pgcode=%s %s", pgcode, exception_outline(exc))


def _data_error(exc: DataError) -> Response:
    # Input that passed validation but PostgreSQL still refused (a value out of a
    # column's range, say): the client's fault, so a 422, and nothing was written.
    log.warning("data_error pgcode=%s", getattr(exc.orig, "pgcode", None))
    return _http_error(UnprocessableEntity("a value is out of range or malformed"))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DataError, _data_error)
    app.register_error_handler(Exception, _unexpected)
