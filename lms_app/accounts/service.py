"""Users: login, creation, bulk upsert by e-mail, updates.

Every change to an existing user, by `PATCH /users/<id>` or `POST /users/bulk`,
passes `check_change` and revokes what it must in the same statement: one set of
rules whichever route a client takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, exists, func, literal_column, select, tuple_
from sqlalchemy.exc import IntegrityError

from lms_app.accounts.auth import AuthUser, issue_token
from lms_app.accounts.models import User
from lms_app.accounts.passwords import hash_password, verify_password
from lms_app.accounts.throttle import throttle_login
from lms_app.audit import trail
from lms_app.caching import generations
from lms_app.catalog.models import Course
from lms_app.db.arrays import array_param
from lms_app.db.upsert import UpsertResult, excluded, upsert
from lms_app.errors import abort
from lms_app.extensions import db

# Checked whenever there is no real hash to check (unknown e-mail, an account without
# a password yet), so every refusal costs one scrypt like a wrong password does, and
# response times do not tell which accounts exist, are deactivated or have no password.
_DUMMY_HASH = hash_password("not-a-real-password-0000")

SELF_DEMOTION = "you cannot demote or deactivate your own account"
LAST_ADMIN = "a school keeps at least one active admin"
CURRENT_REQUIRED = "required to change your own password"
CURRENT_WRONG = "does not match your current password"
OWN_PASSWORD_IN_BULK = (
    "your own password is changed with PATCH /users/<your id> and your current password"
)


class EmailTaken(Exception):
    pass


def login(email: str, password: str) -> tuple[str, int] | None:
    row = db.session.execute(
        select(User.id, User.password_hash, User.is_active, User.token_version).where(
            User.email == email.strip().lower()
        )
    ).first()
    stored = row.password_hash if row is not None else None
    matches = verify_password(stored or _DUMMY_HASH, password)
    if row is None or stored is None or not row.is_active or not matches:
        return None
    return issue_token(row.id, row.token_version)


def check_change(actor: AuthUser, target_id: int, changes: Mapping[str, Any]) -> None:
    """May `actor` make `changes` (field -> new value) to user `target_id`? 403/409."""
    if not actor.is_admin:
        if actor.id != target_id:
            abort(403, "admins only, or your own account")
        if {"role", "is_active"} & changes.keys():
            abort(403, "only an admin may change roles or deactivate accounts")
    if actor.id == target_id and (
        changes.get("is_active") is False or changes.get("role", actor.role) != actor.role
    ):
        # An admin who could demote themself could leave a school with no admin.
        abort(409, SELF_DEMOTION)


def _active_admins_locked() -> list[Any]:
    """(id, email) of the school's active admins, locked until the transaction ends.

    Whatever may demote or deactivate an admin takes these locks first (in id order:
    no deadlock), so two admins demoting each other run one after the other, and the
    second sees the first's change before it decides."""
    return db.session.execute(
        select(User.id, User.email)
        .where(User.role == "admin", User.is_active)
        .order_by(User.id)
        .with_for_update()
    ).all()


def _admins_among(emails: list[str]) -> bool:
    """Are any of `emails` active admins? (One statement, one array parameter.)"""
    return db.session.scalar(
        select(
            exists().where(
                User.role == "admin",
                User.is_active,
                User.email == func.any(array_param("emails", User.email.type)),
            )
        ),
        {"emails": emails},
    )


def _keep_an_admin(leaving: Callable[[Any], bool]) -> None:
    """409 unless an active admin remains once those `leaving` are demoted or gone."""
    if all(leaving(admin) for admin in _active_admins_locked()):
        abort(409, LAST_ADMIN)


def create_user(data: dict[str, Any]) -> User:
    user = User(
        email=data["email"],
        name=data["name"],
        role=data["role"],
        password_hash=hash_password(data["password"]),
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise EmailTaken(data["email"]) from None
    trail.record(trail.Event(trail.USER_CREATE, "user", user.id, {"role": user.role}))
    db.session.commit()
    return user


def bulk_upsert_users(actor: AuthUser, items: Sequence[Mapping[str, Any]]) -> UpsertResult:
    """Insert or update by e-mail; a missing password keeps the stored one.

    The caller's own row, if listed, obeys the rules of PATCH: no self-demotion, and
    no password change without the current password (which bulk does not carry).
    A password set here revokes that user's tokens, as PATCH does.
    """
    # Hashed before the first statement: scrypt is slow on purpose (up to 100 of them
    # here), and no transaction, let alone the admins' row locks, may wait on it.
    rows = [
        {
            "email": item["email"],
            "name": item["name"],
            "role": item["role"],
            "password_hash": hash_password(item["password"]) if item.get("password") else None,
        }
        for item in items
    ]
    own_email = db.session.scalar(select(User.email).where(User.id == actor.id))
    for item in items:
        if item["email"] == own_email:
            check_change(actor, actor.id, {"role": item["role"]})
            if item.get("password"):
                abort(409, OWN_PASSWORD_IN_BULK)
    demoted = [item["email"] for item in items if item["role"] != "admin"]
    if demoted and _admins_among(demoted):
        # Locks only when an admin is demoted: student imports keep running side by side.
        listed = set(demoted)
        _keep_an_admin(lambda admin: admin.email in listed)
    table = User.__table__
    new_hash = excluded(table, "password_hash")
    result = upsert(
        db.session,
        table,
        rows,
        conflict=["email"],
        update={
            "name": excluded(table, "name"),
            "role": excluded(table, "role"),
            "password_hash": func.coalesce(new_hash, table.c.password_hash),
            "token_version": case(
                (new_hash.is_not(None), table.c.token_version + 1), else_=table.c.token_version
            ),
            "updated_at": func.now(),
        },
        # An erased account is never brought back by an import naming its placeholder.
        where=table.c.erased_at.is_(None),
        returning=[table.c.id, table.c.role, _ROLE_BEFORE],
    )
    trail.record(*_bulk_events(result))
    if any(not row.inserted for row in result.rows):
        # Roles, token versions and names may have moved: no cached auth state, and
        # no course detail naming an instructor, may keep the old.
        generations.bump(generations.AUTH, generations.COURSE)
    db.session.commit()
    return result


# The role a row had before the upsert's statement: a subquery in RETURNING reads the
# statement's snapshot, which does not include the statement's own changes.
_PRIOR = User.__table__.alias("prior")
_ROLE_BEFORE = (
    select(_PRIOR.c.role)
    # The INSERT's own row, by the target's bare name: SQLAlchemy does not correlate
    # a subquery in RETURNING and would add a second, unrelated `users` to its FROM.
    .where(_PRIOR.c.id == literal_column("users.id"))
    .scalar_subquery()
    .label("role_before")
)


def _bulk_events(result: UpsertResult) -> list[trail.Event]:
    """One event per user written, role changes apart, and one for the whole import."""
    events = [
        trail.Event(
            trail.USER_BULK_UPSERT,
            "user",
            None,
            {"created": result.inserted, "updated": result.updated},
        )
    ]
    for row in result.rows:
        if row.inserted:
            events.append(trail.Event(trail.USER_CREATE, "user", row.id, {"role": row.role}))
            continue
        events.append(trail.Event(trail.USER_UPDATE, "user", row.id, {"via": "bulk"}))
        if row.role_before is not None and row.role_before != row.role:
            change = {"from": row.role_before, "to": row.role, "via": "bulk"}
            events.append(trail.Event(trail.USER_ROLE_CHANGE, "user", row.id, change))
    return events


def list_users(role: str | None, after: tuple[datetime, int] | None, limit: int) -> list[User]:
    stmt = (
        select(User)
        .where(User.erased_at.is_(None))
        .order_by(User.created_at.desc(), User.id.desc())
        .limit(limit + 1)
    )
    if role:
        stmt = stmt.where(User.role == role)
    if after:
        stmt = stmt.where(tuple_(User.created_at, User.id) < tuple_(*after))
    return list(db.session.scalars(stmt))


def keep_an_admin_besides(user_id: int) -> None:
    """409 unless an active admin other than `user_id` remains (locks them all)."""
    _keep_an_admin(lambda admin: admin.id == user_id)


def teaches_a_course(user_id: int) -> bool:
    """Is the user named as some course's instructor (whatever their role now)?"""
    return bool(db.session.scalar(select(exists().where(Course.instructor_id == user_id))))


def change_user(actor: AuthUser, user_id: int, changes: Mapping[str, Any]) -> User:
    """PATCH /users/<id>: the rules of `check_change`, then one UPDATE.

    Changing one's own password needs the current one (a stolen token alone cannot
    lock the owner out). A new password, and a change of the active flag either way,
    revoke every token issued so far: reactivating an account does not revive them.
    """
    check_change(actor, user_id, changes)
    user = db.session.get(User, user_id)
    if user is None or user.erased_at is not None:
        abort(404, "no such user")
    if "password" in changes and actor.id == user_id:
        # A guess of the current password is a login attempt: same limits, same keys,
        # or a stolen token would be an unthrottled password oracle.
        throttle_login(user.email)
        current = changes.get("current_password")
        if not current:
            abort(422, "invalid input; see errors", {"current_password": [CURRENT_REQUIRED]})
        if not verify_password(user.password_hash, current):
            abort(422, "invalid input; see errors", {"current_password": [CURRENT_WRONG]})
    if (
        user.role == "admin"
        and user.is_active
        and (changes.get("role", "admin") != "admin" or changes.get("is_active") is False)
    ):
        keep_an_admin_besides(user_id)
    revoke = "password" in changes or changes.get("is_active", user.is_active) != user.is_active
    events = _change_events(user, changes)
    for field in ("name", "role", "is_active"):
        if field in changes:
            setattr(user, field, changes[field])
    if "password" in changes:
        user.password_hash = hash_password(changes["password"])
    if revoke:
        user.token_version = User.token_version + 1
    retired = []
    if revoke or "role" in changes:
        retired.append(generations.AUTH)
    if "name" in changes and teaches_a_course(user_id):
        retired.append(generations.COURSE)  # course details name their instructor
    trail.record(*events)
    if retired:
        generations.bump(*retired)
    db.session.commit()
    return user


def _change_events(user: User, changes: Mapping[str, Any]) -> list[trail.Event]:
    """What a PATCH does to `user` (before it is applied), by field name, never value."""
    events = []
    edited = sorted(changes.keys() & {"name", "password"})
    if edited:
        events.append(trail.Event(trail.USER_UPDATE, "user", user.id, {"fields": edited}))
    if changes.get("role", user.role) != user.role:
        change = {"from": user.role, "to": changes["role"]}
        events.append(trail.Event(trail.USER_ROLE_CHANGE, "user", user.id, change))
    if changes.get("is_active", user.is_active) != user.is_active:
        action = trail.USER_REACTIVATE if changes["is_active"] else trail.USER_DEACTIVATE
        events.append(trail.Event(action, "user", user.id))
    return events
