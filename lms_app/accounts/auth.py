"""Bearer tokens and the current user.

Tokens are signed (itsdangerous, HMAC-SHA512 via SECRET_KEY) with a salt that names
the tenant's id and slug, so a token of one school is a 401 in every other school
and verifying one costs no query. Each token carries the user's `token_version`;
bumping it (password change) revokes every earlier token. The user's role,
active flag and token version are read through a small cache entry that the user
write paths refresh, so role changes and deactivation apply at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from lms_app.accounts.models import User
from lms_app.caching.keys import tenant_key
from lms_app.caching.local import LocalCopies
from lms_app.caching.safe import cache_delete, cache_get, cache_set
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, require_tenant

AUTH_STATE_TTL_S = 300
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class AuthUser:
    id: int
    role: str

    @property
    def is_staff(self) -> bool:
        return self.role in ("admin", "instructor")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _serializer(tenant: TenantInfo) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt=f"lms-token:{tenant.id}:{tenant.slug}"
    )


def issue_token(user_id: int, token_version: int) -> tuple[str, int]:
    ttl = current_app.config["LMS_SETTINGS"].token_ttl_s
    return _serializer(require_tenant()).dumps({"u": user_id, "v": token_version}), ttl


def _state_key(tenant: TenantInfo, user_id: int) -> str:
    return tenant_key(tenant, "auth", user_id)


AUTH_STATES = "auth-states"


def _local_states() -> LocalCopies:
    return current_app.extensions["lms_auth_states"]


def init_app(app: Flask) -> None:
    # Per-process copies: a revocation made by another process reaches this one
    # within AUTH_LOCAL_CACHE_SECONDS (the process making it forgets at once).
    app.extensions["lms_auth_states"] = LocalCopies(
        app.config["AUTH_LOCAL_CACHE_SECONDS"], max_entries=50_000
    )


def load_auth_state(user_id: int) -> tuple[str, bool, int] | None:
    """(role, is_active, token_version) of a user: process copy, shared cache, one query."""
    key = _state_key(require_tenant(), user_id)

    def read() -> tuple[str, bool, int] | None:
        state = cache_get(key)
        if state is None:
            row = db.session.execute(
                select(User.role, User.is_active, User.token_version).where(User.id == user_id)
            ).first()
            if row is None:
                return None
            state = (row.role, row.is_active, row.token_version)
            cache_set(key, state, AUTH_STATE_TTL_S)
        return tuple(state)  # type: ignore[return-value]

    return _local_states().get_or_read(AUTH_STATES, key, read)


def forget_auth_state(user_id: int) -> None:
    """Call after committing a change to a user's role, activity or token version."""
    key = _state_key(require_tenant(), user_id)
    # Shared entry first, then this process's copy (see LocalCopies on the order).
    cache_delete(key)
    _local_states().forget(AUTH_STATES, key)


def authenticate() -> AuthUser:
    cached = g.get("user")
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, "missing bearer token")
    ttl = current_app.config["LMS_SETTINGS"].token_ttl_s
    try:
        claims = _serializer(require_tenant()).loads(token.strip(), max_age=ttl)
        user_id, version = int(claims["u"]), int(claims["v"])
    except (BadSignature, KeyError, TypeError, ValueError):
        abort(401, "invalid or expired token")
    state = load_auth_state(user_id)
    if state is None or not state[1] or state[2] != version:
        abort(401, "invalid or expired token")
    g.user = AuthUser(id=user_id, role=state[0])
    return g.user


def current_user() -> AuthUser:
    return authenticate()


def auth_required(*roles: str) -> Callable[[F], F]:
    """Require a valid token (401) and, if given, one of `roles` (403)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = authenticate()
            if roles and user.role not in roles:
                abort(403, "your role may not do this")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
