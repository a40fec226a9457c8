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
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from lms_app.web.json import loads_strict


class ApiParser(FlaskParser):
    """webargs reads bodies with `json.loads` and handles only its JSONDecodeError:
    deep nesting or a 5,000-digit integer would escape as a 500."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            return core.missing
        return loads_strict(req.get_data(cache=True))


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ApiParser()

    def arguments(self, schema: type[Schema] | Schema, **kwargs: Any):  # type: ignore[override]
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, **kwargs)
