"""GET /docs: Swagger UI over /openapi.json, served by the deployment itself."""

from __future__ import annotations

import re

from tests.conftest import assert_error


def test_the_docs_page_loads_its_assets_from_this_deployment_only(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert 'url: "/openapi.json"' in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/docs/assets/") for s in sources)  # no CDN
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.data) > 10_000  # the real Swagger UI files, not a stub
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").get_data(
        as_text=True
    )
    assert client.get("/openapi.json").status_code == 200


def test_nothing_else_of_the_bundle_is_served(client):
    for name in ("index.html", "swagger-ui.js.map", "..%2F__init__.py", "oauth2-redirect.html"):
        assert_error(client.get(f"/docs/assets/{name}"), 404)
    assert_error(client.post("/docs"), 405)
