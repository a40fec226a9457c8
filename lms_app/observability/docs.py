"""Browsable API documentation at /docs: Swagger UI over this deployment's /openapi.json.

The page and its assets come from the `swagger-ui-bundle` wheel, served by the app
itself: a school's network may have no way out, and the docs must not depend on a
CDN or leak which deployment is being read. Only the three files the page needs are
served; nothing else of the wheel's directory is reachable.
"""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from lms_app.errors import abort

blp = Blueprint("docs", __name__)

ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"})

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>lms_app API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    });
  </script>
</body>
</html>
"""


@blp.get("/docs")
def docs() -> Response:
    return Response(_PAGE, mimetype="text/html")


@blp.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404, "no such documentation asset")
    # Versioned by the wheel: a day of browser caching is safe.
    return send_from_directory(swagger_ui_path, name, max_age=86_400)
