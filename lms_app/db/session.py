"""The Session class behind `db.session`: every statement lands in the current tenant."""

from __future__ import annotations

from typing import Any

import flask_sqlalchemy.session
from sqlalchemy import Connection, Engine

from lms_app.db.engines import for_schema
from lms_app.tenancy.context import current_tenant


class TenantSession(flask_sqlalchemy.session.Session):
    """Binds to the engine's view of the request's tenant schema.

    Because the translate map rides on the bind, flushes, Core `insert()` with
    `on_conflict_*`, `selectinload` follow-up queries and raw constructs all go to
    the tenant's schema without touching connection state.
    """

    def get_bind(
        self,
        mapper: Any | None = None,
        clause: Any | None = None,
        bind: Engine | Connection | None = None,
        **kwargs: Any,
    ) -> Engine | Connection:
        resolved = super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
        if bind is not None or not isinstance(resolved, Engine):
            return resolved
        tenant = current_tenant()
        return for_schema(resolved, tenant.schema_name) if tenant is not None else resolved
