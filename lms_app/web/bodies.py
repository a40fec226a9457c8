"""Request bodies over MAX_CONTENT_LENGTH are a 413, however they arrive.

With a Content-Length, Werkzeug refuses a body that is too large before reading it.
A chunked body has none: Werkzeug's stream then stops reading at the limit without
an error, and the JSON cut off there was answered as malformed (400). So a chunked
body is read here, once (the view reuses it), and refused when it fills the limit.
"""

from __future__ import annotations

from flask import Flask, request

from lms_app.errors import abort


def _refuse_oversized_chunked_body() -> None:
    limit = request.max_content_length
    if limit is None or "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    if len(request.get_data(cache=True)) < limit:
        return
    # Exactly `limit` bytes were read: the body is too large only if more follow (the
    # limited stream cannot tell, so the server's own stream is asked for one byte).
    if request.environ["wsgi.input"].read(1):
        abort(413, f"the request body is larger than {limit} bytes")


def init_app(app: Flask) -> None:
    app.before_request(_refuse_oversized_chunked_body)
