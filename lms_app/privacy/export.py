"""Everything lms_app holds about one user, streamed as one JSON document.

A learner with years of activity must not be loaded into memory at once: each
section is read through a server-side cursor (`stream_results`, `yield_per`) and
written out a chunk of rows at a time. The four sections are read in one
REPEATABLE READ transaction, so they agree with each other (no progress row of an
enrolment the export does not show).

Two audit events. Before the first byte leaves, `{"stage": "started"}` is written
and committed in a transaction of its own: whatever happens to the stream after
that (the database fails mid-way, the worker is killed), the trail shows that
this person's data began to leave. At the end, in the export's own transaction,
`{"stage": "completed"}` with the number of rows of each section, and the
document's closing brace is only sent once it committed: a client never holds a
complete export the trail does not show as completed. A client that goes away
half-way gets `{"stage": "aborted"}` with the rows it was sent. The body runs after
the request context is gone (Flask pops it before the server iterates the body),
so the request id and actor are taken when the export is opened.

Never exported: the password hash and the token version (the secrets behind the
account), which are not data *about* the person.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from lms_app.accounts.models import User
from lms_app.audit.trail import USER_EXPORT, Event, current_request_id, record
from lms_app.catalog.models import Course
from lms_app.db.engines import for_schema
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity
from lms_app.tenancy.context import TenantInfo

ROWS_PER_FETCH = 1_000

USER_COLUMNS = (
    User.id,
    User.email,
    User.name,
    User.role,
    User.is_active,
    User.created_at,
    User.updated_at,
)


def _sections(user_id: int) -> list[tuple[str, Any]]:
    """(key, statement) of each list in the document, in the document's order."""
    enrollments = (
        select(
            Enrollment.id,
            Enrollment.course_id,
            Course.title.label("course_title"),
            Enrollment.status,
            Enrollment.enrolled_at,
            Enrollment.updated_at,
        )
        .join(Course, Course.id == Enrollment.course_id)
        .where(Enrollment.user_id == user_id)
        .order_by(Enrollment.id)
    )
    progress = (
        select(
            LessonProgress.id,
            LessonProgress.course_id,
            LessonProgress.lesson_id,
            LessonProgress.progress_percentage,
            LessonProgress.time_spent,
            LessonProgress.completed_at,
            LessonProgress.updated_at,
        )
        .where(LessonProgress.user_id == user_id)
        .order_by(LessonProgress.id)
    )
    activity = (
        select(
            UserActivity.id,
            UserActivity.activity_type,
            UserActivity.course_id,
            UserActivity.lesson_id,
            UserActivity.occurred_at,
        )
        .where(UserActivity.user_id == user_id)
        .order_by(UserActivity.id)
    )
    return [("enrollments", enrollments), ("progress", progress), ("activity", activity)]


class UserExport:
    """An export opened for one user: its transaction and its user row.

    `open` does everything that can still turn into an error status (the user is
    looked up, the audit event written) before the response starts; `chunks` is
    the body. `close` is registered with the response, so a body never iterated
    (a HEAD request, a client gone before the first byte) rolls back and returns
    the connection.
    """

    def __init__(
        self,
        connection: Connection,
        separately: Engine,
        user: dict[str, Any],
        user_id: int,
        actor_id: int,
    ) -> None:
        self._connection = connection
        self._separately = separately
        self._actor_id = actor_id
        self._request_id = current_request_id()
        self._user = user
        self._user_id = user_id
        self._started = False
        self._counts: dict[str, Any] = {}

    @classmethod
    def open(
        cls, engine: Engine, tenant: TenantInfo, user_id: int, actor_id: int
    ) -> UserExport | None:
        """None when the school has no such user, or only an erased one."""
        schema_engine = for_schema(engine, tenant.schema_name)
        connection = schema_engine.connect()
        try:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            connection.begin()
            row = connection.execute(
                select(*USER_COLUMNS).where(User.id == user_id, User.erased_at.is_(None))
            ).first()
            if row is None:
                connection.close()
                return None
        except BaseException:
            connection.close()
            raise
        return cls(connection, schema_engine, row._asdict(), user_id, actor_id)

    def chunks(self) -> Iterator[bytes]:
        self._started = True
        connection = self._connection
        try:
            with self._separately.begin() as elsewhere:
                self._record({"stage": "started"}, elsewhere)
            yield b'{"user":' + orjson.dumps(self._user)
            # Per statement: Connection.execution_options() would change the connection
            # itself, and the audit INSERT must not run through a named cursor.
            streaming = {"stream_results": True, "yield_per": ROWS_PER_FETCH}
            for key, stmt in _sections(self._user_id):
                yield b',"' + key.encode() + b'":['
                self._counts[key] = 0
                for rows in connection.execute(stmt, execution_options=streaming).partitions():
                    body = b",".join(orjson.dumps(row._asdict()) for row in rows)
                    yield body if self._counts[key] == 0 else b"," + body
                    self._counts[key] += len(rows)
                yield b"]"
            self._record({"stage": "completed", **self._counts, "complete": True}, connection)
            connection.commit()
            yield b"}"
        except GeneratorExit:
            # The client went away with part of the data: that part left, record it.
            if connection.in_transaction():
                detail = {"stage": "aborted", **self._counts, "complete": False}
                self._record(detail, connection)
                connection.commit()
            raise
        finally:
            connection.close()

    def _record(self, detail: dict[str, Any], connection: Connection) -> None:
        # Counts of rows sent, never their content.
        record(
            Event(USER_EXPORT, "user", self._user_id, detail),
            session=connection,
            actor_id=self._actor_id,
            request_id=self._request_id,
        )

    def close(self) -> None:
        """After the response: a body never started is rolled back (nothing left)."""
        if not self._started:
            self._connection.close()
