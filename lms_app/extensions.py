"""Extension objects, created once and bound to an app in `create_app()`."""

from __future__ import annotations

from flask_caching import Cache
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy

from lms_app.db.session import TenantSession

# The ORM models use their own declarative bases (public / tenant metadata); the
# extension only provides engines and the request-scoped session.
db = SQLAlchemy(session_options={"class_": TenantSession})
cache = Cache()
api = Api()
