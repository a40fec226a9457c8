"""Users: login, creation, bulk upsert by e-mail, updates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError

from lms_app.accounts.auth import forget_auth_state, issue_token
from lms_app.accounts.models import User
from lms_app.accounts.passwords import hash_password, verify_password
from lms_app.db.upsert import UpsertResult, excluded, upsert
from lms_app.extensions import db

# Verified when the e-mail is unknown, so a wrong e-mail costs as long as a wrong
# password and response times do not reveal who has an account.
_DUMMY_HASH = hash_password("not-a-real-password-0000")


class EmailTaken(Exception):
    pass


def login(email: str, password: str) -> tuple[str, int] | None:
    row = db.session.execute(
        select(User.id, User.password_hash, User.is_active, User.token_version).where(
            User.email == email.strip().lower()
        )
    ).first()
    if row is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not row.is_active or not verify_password(row.password_hash, password):
        return None
    return issue_token(row.id, row.token_version)


def create_user(data: dict[str, Any]) -> User:
    user = User(
        email=data["email"],
        name=data["name"],
        role=data["role"],
        password_hash=hash_password(data["password"]),
    )
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise EmailTaken(data["email"]) from None
    return user


def bulk_upsert_users(items: list[dict[str, Any]]) -> UpsertResult:
    """Insert or update by e-mail; a missing password keeps the stored one."""
    rows = [
        {
            "email": item["email"],
            "name": item["name"],
            "role": item["role"],
            "password_hash": hash_password(item["password"]) if item.get("password") else None,
        }
        for item in items
    ]
    table = User.__table__
    result = upsert(
        db.session,
        table,
        rows,
        conflict=["email"],
        update={
            "name": excluded(table, "name"),
            "role": excluded(table, "role"),
            "password_hash": func.coalesce(excluded(table, "password_hash"), table.c.password_hash),
            "updated_at": func.now(),
        },
    )
    db.session.commit()
    # Roles may have changed: the auth-state cache must not keep the old ones.
    for user_id in db.session.scalars(
        select(User.id).where(User.email.in_([r["email"] for r in rows]))
    ):
        forget_auth_state(user_id)
    return result


def list_users(role: str | None, after: tuple[datetime, int] | None, limit: int) -> list[User]:
    stmt = select(User).order_by(User.created_at.desc(), User.id.desc()).limit(limit + 1)
    if role:
        stmt = stmt.where(User.role == role)
    if after:
        stmt = stmt.where(tuple_(User.created_at, User.id) < tuple_(*after))
    return list(db.session.scalars(stmt))


def update_user(user: User, changes: dict[str, Any]) -> User:
    for field in ("name", "role", "is_active"):
        if field in changes:
            setattr(user, field, changes[field])
    if "password" in changes:
        user.password_hash = hash_password(changes["password"])
        # A new password signs the user out everywhere.
        user.token_version = User.token_version + 1
    db.session.commit()
    forget_auth_state(user.id)
    return user
