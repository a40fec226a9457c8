"""Bearer tokens and the current user.

Tokens are signed (itsdangerous, HMAC-SHA256 with SECRET_KEY) with a salt that names
the tenant's id, creation time and slug, so a token of one school is a 401 in every
other school, including a later school under a deleted one's slug, and verifying one
costs no query. Each token carries the user's `token_version`; bumping it (password
change, (re)activation) revokes every earlier token.

The user's role, active flag and token version are cached under the tenant's `auth`
generation (lms_app.caching.generations): every change to them moves it in the
changing transaction, so a request that read the row before the change can only
store its copy under the dead generation, and every process stops using the old
state within CACHE_LOCAL_SECONDS even if the shared cache was unreachable. Such
changes are rare (an admin's edit, an import), so one counter per school is enough.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import bindparam, select

from lms_app.accounts.models import User
from lms_app.caching import generations
from lms_app.caching.keys import tenant_scope_key
from lms_app.caching.reads import cached_read
from lms_app.db.prepared import prepare
from lms_app.db.reads import read as read_columns
from lms_app.errors import abort
from lms_app.tenancy.context import TenantInfo, require_tenant

F = TypeVar("F", bound=Callable[..., Any])
AUTH_STATE = prepare(
    select(User.role, User.is_active, User.token_version).where(User.id == bindparam("user_id")),
    "auth_state",
)
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


def load_auth_state(user_id: int) -> AuthState | None:
    """(role, is_active, token_version) of a user: process copy, shared cache, one query."""

    def read() -> AuthState | None:
        row = read_columns(AUTH_STATE, {"user_id": user_id}).first()
        return None if row is None else (row.role, row.is_active, row.token_version)

    ttl = current_app.config["LMS_SETTINGS"].auth_state_ttl_s
    state = cached_read(generations.AUTH, f"u{user_id}", ttl, read, claim=False)
    return None if state is None else tuple(state)  # type: ignore[return-value]


class VerifiedTokens:
    """Tokens whose signature this process checked, with their claims and expiry.

    A signature check (HMAC, base64, JSON) is most of what auth costs a request, and
    a learner sends the same token all session. The key names the tenant as well as
    the token, so a token is only ever accepted by the school that signed it.
    Revocation is unaffected: it is the token version in the auth state, read for
    every request.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._claims: dict[tuple[str, str], tuple[int, int, float]] = {}

    def get(self, scope: str, token: str) -> tuple[int, int] | None:
        found = self._claims.get((scope, token))
        if found is None or found[2] <= time.time():
            return None
        return found[0], found[1]

    def put(self, scope: str, token: str, claims: tuple[int, int], expires_at: float) -> None:
        if len(self._claims) >= self.max_entries:
            self._claims.clear()  # crude but bounded; a miss costs one signature check
        self._claims[(scope, token)] = (*claims, expires_at)


def verified_claims(tenant: TenantInfo, token: str) -> tuple[int, int] | None:
    """(user id, token version) of a token `tenant` signed and that has not expired."""
    tokens: VerifiedTokens = current_app.extensions["lms_verified_tokens"]
    scope = f"{tenant_scope_key(tenant)}:{tenant.slug}"
    claims = tokens.get(scope, token)
    if claims is not None:
        return claims
    ttl = current_app.config["LMS_SETTINGS"].token_ttl_s
    try:
        payload, signed_at = token_serializer(tenant).loads(
            token, max_age=ttl, return_timestamp=True
        )
        claims = int(payload["u"]), int(payload["v"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    tokens.put(scope, token, claims, signed_at.timestamp() + ttl)
    return claims


def _forget_previous_user() -> None:
    # `g` belongs to the app context, which can outlive one request (tests, scripts):
    # a request never starts out as the previous request's user.
    g.pop("user", None)


def init_app(app: Flask) -> None:
    app.extensions["lms_verified_tokens"] = VerifiedTokens()
    app.before_request(_forget_previous_user)


def authenticate() -> AuthUser:
    cached = g.get("user")
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, "missing bearer token")
    claims = verified_claims(require_tenant(), token.strip())
    if claims is None:
        abort(401, "invalid or expired token")
    user_id, version = claims
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
