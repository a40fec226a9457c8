"""Erasing a user's personal data (GDPR art. 17), in one transaction.

What goes: the name and e-mail (replaced by a placeholder that is random, so it
says nothing about the person and cannot be matched to them), the password hash,
every token (token version moved, account deactivated), and the activity log.
`users.name` is the only free text a learner writes in lms_app today (lessons,
courses and categories are written by staff); a column a learner writes that is
added later must be cleared here too (tests/test_privacy_erase.py searches every
text and JSON column of the schema for the old name and e-mail).

What stays, anonymous: the user row's id, role and dates, the enrolments and the
lesson progress, so a course's enrolment counts, completion rates and time spent
add up to the same figures after the erasure as before it. The audit trail keeps
its rows (they hold ids and counts only).
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import delete, func, select, update

from lms_app.accounts import service as accounts
from lms_app.accounts.auth import AuthUser
from lms_app.accounts.models import User
from lms_app.audit.trail import USER_ERASE, Event, record
from lms_app.caching import generations
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity

ERASED_NAME = "Erased user"
# RFC 2606 reserves .invalid: the placeholder can never be someone's address.
ERASED_DOMAIN = "erased.invalid"
SELF_ERASURE = "you cannot erase your own account"
CONFIRM_MISMATCH = "does not match the user's current e-mail"


def placeholder_email() -> str:
    """Unique (96 random bits) and derived from nothing about the person."""
    return f"erased-{secrets.token_hex(12)}@{ERASED_DOMAIN}"


def erase_user(actor: AuthUser, user_id: int, confirm: str) -> dict[str, Any]:
    """POST /users/<id>/erase: 404 unknown, 409 yourself, 422 wrong `confirm`;
    an erased user answers the same as the first time (idempotent)."""
    if actor.id == user_id:
        abort(409, SELF_ERASURE)
    found = db.session.execute(select(User.role, User.is_active).where(User.id == user_id)).first()
    if found is None:
        abort(404, "no such user")
    if found.role == "admin" and found.is_active:
        # Locks the active admins in id order first (the target among them), as every
        # demotion does, so this cannot deadlock with one.
        accounts.keep_an_admin_besides(user_id)
    user = db.session.execute(
        select(User.email, User.erased_at).where(User.id == user_id).with_for_update()
    ).one()
    if user.erased_at is not None:
        return {"id": user_id, "erased": True}
    if confirm.strip().lower() != user.email:
        abort(422, "invalid input; see errors", {"confirm": [CONFIRM_MISMATCH]})

    activity_deleted = db.session.execute(
        delete(UserActivity).where(UserActivity.user_id == user_id)
    ).rowcount
    kept = db.session.execute(
        select(
            select(func.count())
            .where(Enrollment.user_id == user_id)
            .scalar_subquery()
            .label("enrollments"),
            select(func.count())
            .where(LessonProgress.user_id == user_id)
            .scalar_subquery()
            .label("progress"),
        )
    ).one()
    teaches = accounts.teaches_a_course(user_id)
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            email=placeholder_email(),
            name=ERASED_NAME,
            password_hash=None,
            is_active=False,
            # Every token names the version it was issued under: all fail from now.
            token_version=User.token_version + 1,
            erased_at=func.now(),
            updated_at=func.now(),
        )
    )
    record(
        Event(
            USER_ERASE,
            "user",
            user_id,
            {
                "activity_deleted": activity_deleted,
                "enrollments_kept": kept.enrollments,
                "progress_kept": kept.progress,
            },
        )
    )
    # Auth state (role, active flag, token version) is cached; course details name
    # their instructor. Retired in this transaction, so no process keeps the old.
    generations.bump(generations.AUTH, *([generations.COURSE] if teaches else []))
    db.session.commit()
    return {"id": user_id, "erased": True}
