"""The Blueprint every API area uses: flask-smorest's, with argument schemas built once
and request bodies parsed by lms_app's strict JSON reader.

webargs instantiates a schema *class* on every request (marshmallow builds its
fields anew each time); an instance is reused. Schemas hold no per-request state.
"""

from __future__ import annotations

from typing import Any

import flask
import flask_smorest
from marshmallow import Schema
from webargs.flaskparser import FlaskParser, is_json_request

from lms_app.errors import abort
from lms_app.web.json import loads_strict


class ApiParser(FlaskParser):
    """Bodies of routes that take JSON: JSON or nothing.

    webargs reads bodies with `json.loads` and handles only its JSONDecodeError (deep
    nesting or a 5,000-digit integer escaped as a 500), and it silently ignores a body
    of another content type: `curl -d '{"is_active": false}'` (a form type) answered
    200 and changed nothing. Here a body that is not JSON is a 415, and a missing
    body a 400 (the document declares every such body required).
    """

    def _raw_load_json(self, req: flask.Request) -> Any:
        data = req.get_data(cache=True)
        if not data.strip():
            abort(400, "a JSON body is required")
        if not is_json_request(req):
            abort(415, "send the body as JSON, with Content-Type: application/json")
        return loads_strict(data)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ApiParser()

    def arguments(self, schema: type[Schema] | Schema, **kwargs: Any):  # type: ignore[override]
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, **kwargs)
