"""The Session class behind `db.session`: every statement lands in the current tenant,
and plain reads of read-only requests go to the read engine.

Routing is decided on the Session's state and the statement object, never on SQL
text (the seed's keyword sniffing sends a CTE that writes, or `SELECT ... FOR
UPDATE`, to the wrong server). A SELECT that writes or locks through a function
(`pg_advisory_xact_lock`, `nextval`, ...) cannot be told from a read by its shape:
mark it with `.execution_options(lms_primary=True)`.
"""

from __future__ import annotations

from typing import Any

import flask_sqlalchemy.session
from flask import Flask, g, has_request_context, request
from sqlalchemy import CTE, Connection, Engine, Select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase

from lms_app.db.engines import READ_BIND, for_schema
from lms_app.db.prepared import OPTION as PREPARE_OPTION
from lms_app.db.routing import read_engine
from lms_app.tenancy.context import current_tenant

# Session.info key: once a session wrote (or locked), its later reads stay on the
# primary so the request reads its own writes.
PINNED_TO_PRIMARY = "lms_pinned_to_primary"


READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def init_app(app: Flask) -> None:
    app.before_request(_mark_read_only_requests)


def _mark_read_only_requests() -> None:
    """GET/HEAD/OPTIONS requests may send their plain SELECTs to the read engine."""
    # Set either way: an app context can outlive one request (tests, scripts).
    g.lms_read_only = request.method in READ_ONLY_METHODS


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
        if self._routes_to_reader(resolved, clause):
            resolved = read_engine()
        tenant = current_tenant()
        return for_schema(resolved, tenant.schema_name) if tenant is not None else resolved

    def _routes_to_reader(self, resolved: Engine, clause: Any | None) -> bool:
        if not (has_request_context() and g.get("lms_read_only")):
            return False
        if self.info.get(PINNED_TO_PRIMARY):
            return False
        if self._flushing or not is_plain_read(clause):
            # Anything else may write or lock: from here on this session uses the
            # primary only. Reads without a statement (mapper-only lookups) land here too.
            self.info[PINNED_TO_PRIMARY] = True
            return False
        engines = self._db.engines
        return READ_BIND in engines and resolved is engines[None]


def is_plain_read(clause: Any) -> bool:
    """A SELECT that neither locks nor writes, by its shape (see the module's doc)."""
    return (
        isinstance(clause, Select)
        and clause._for_update_arg is None
        and not clause._execution_options.get("lms_primary", False)
        and not _writes_through_cte(clause)
    )


def reader_for(session: Session | None, clause: Any) -> Engine | None:
    """The read engine's view of the request's tenant, for a statement the Session
    would route there anyway: a read-only request, nothing written or locked so far
    by `session` (None: the request has none yet), a plain read. None otherwise.

    Such a read needs none of the Session's transaction bookkeeping (the read engine
    is in autocommit): setting it up and tearing it down was a fifth of
    GET /courses/<id>/progress' CPU (py-spy).
    """
    if not (has_request_context() and g.get("lms_read_only")):
        return None
    if session is not None and session.info.get(PINNED_TO_PRIMARY):
        return None
    # A prepared statement was checked to be a plain read when it was marked.
    if not (clause._execution_options.get(PREPARE_OPTION) or is_plain_read(clause)):
        return None
    from lms_app.extensions import db

    tenant = current_tenant()
    if READ_BIND not in db.engines or tenant is None:
        return None
    return for_schema(read_engine(), tenant.schema_name)


def _writes_through_cte(stmt: Select[Any]) -> bool:
    """Does `stmt` carry an INSERT/UPDATE/DELETE CTE, attached (`add_cte`) or selected
    from? (Private attributes: a full traversal would cost more than the statement.)"""
    ctes = [*stmt._independent_ctes, *(f for f in stmt._from_obj if isinstance(f, CTE))]
    ctes += [t for c in stmt._raw_columns if isinstance(t := getattr(c, "table", None), CTE)]
    return any(isinstance(cte.element, UpdateBase) for cte in ctes)
