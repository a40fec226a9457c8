"""The Blueprint every API area uses: flask-smorest's, with argument schemas built once.

webargs instantiates a schema *class* on every request (marshmallow builds its
fields anew each time); an instance is reused. Schemas hold no per-request state.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from marshmallow import Schema


class Blueprint(flask_smorest.Blueprint):
    def arguments(self, schema: type[Schema] | Schema, **kwargs: Any):  # type: ignore[override]
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, **kwargs)
