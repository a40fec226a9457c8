"""Bearer tokens and the current user.

Tokens are signed (itsdangerous, HMAC-SHA256 with SECRET_KEY) with a salt that names
the tenant's id, creation time and slug, so a token of one school is a 401 in every
other school, including a later school under a deleted one's slug, and verifying one
costs no query. Each token carries the user's `token_version`; bumping it (password
change, (re)activation) revokes every earlier token.

The user's role, active flag and token version are cached under a per-user
generation (lms_app.caching.generations): every change to them bumps it after its
commit, so a request that read the row before the change can only store its copy
under the dead generation. A plain delete could not stop that late fill from
bringing the old state back for the entry's whole TTL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from lms_app.accounts.models import User
from lms_app.caching import generations
from lms_app.caching.keys import tenant_scope_key
from lms_app.caching.local import LocalCopies
from lms_app.caching.reads import cached_read
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo, require_tenant

F = TypeVar("F", bound=Callable[..., Any])
AuthState = tuple[str, bool, int]  # role, is_active, token_version


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

    def manages(self, instructor_id: int | None) -> bool:
        """Is this user staff of a course taught by `instructor_id`: an admin, or its
        instructor while still an instructor? A demoted instructor stays named on
        their old courses, but keeps none of the rights."""
        return self.is_admin or (self.role == "instructor" and instructor_id == self.id)


def token_serializer(tenant: TenantInfo, **kwargs: Any) -> URLSafeTimedSerializer:
    """The serializer of `tenant`'s tokens (`kwargs`: itsdangerous options, for tests)."""
    kwargs.setdefault("secret_key", current_app.config["SECRET_KEY"])
    return URLSafeTimedSerializer(
        salt=f"lms-token:{tenant_scope_key(tenant)}:{tenant.slug}",
        signer_kwargs={"digest_method": hashlib.sha256},
        **kwargs,
    )


def issue_token(user_id: int, token_version: int) -> tuple[str, int]:
    ttl = current_app.config["LMS_SETTINGS"].token_ttl_s
    return token_serializer(require_tenant()).dumps({"u": user_id, "v": token_version}), ttl


def _namespace(user_id: int) -> str:
    return f"auth.{user_id}"


def _local_states() -> LocalCopies:
    return current_app.extensions["lms_auth_states"]


def init_app(app: Flask) -> None:
    # Per-process copies: a revocation made by another process reaches this one
    # within AUTH_LOCAL_CACHE_SECONDS (the process making it forgets at once).
    app.extensions["lms_auth_states"] = LocalCopies(
        app.config["AUTH_LOCAL_CACHE_SECONDS"], max_entries=50_000
    )


def load_auth_state(user_id: int) -> AuthState | None:
    """(role, is_active, token_version) of a user: process copy, shared cache, one query."""

    def read() -> AuthState | None:
        row = db.session.execute(
            select(User.role, User.is_active, User.token_version).where(User.id == user_id)
        ).first()
        return None if row is None else (row.role, row.is_active, row.token_version)

    ttl = current_app.config["LMS_SETTINGS"].auth_state_ttl_s
    state = cached_read(_namespace(user_id), "state", ttl, read, copies=_local_states())
    return None if state is None else tuple(state)  # type: ignore[return-value]


def forget_auth_states(user_ids: Iterable[int]) -> None:
    """Call after committing a change to users' role, activity or token version."""
    generations.bump_many(map(_namespace, user_ids), copies=_local_states())


def forget_auth_state(user_id: int) -> None:
    forget_auth_states([user_id])


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
        claims = token_serializer(require_tenant()).loads(token.strip(), max_age=ttl)
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
