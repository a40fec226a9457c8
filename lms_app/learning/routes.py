"""HTTP routes of learning: enrollments, lesson progress, my courses (API.md)."""

from __future__ import annotations

from typing import Any

from flask import Response

from lms_app.accounts.auth import auth_required, current_user
from lms_app.learning import schemas, service
from lms_app.web import etags
from lms_app.web.blueprint import Blueprint
from lms_app.web.fast_dump import compile_dump, respond
from lms_app.web.pagination import CursorPageArgs

blp = Blueprint("learning", __name__, url_prefix="/api/v1", description="learning")

STAFF = ("admin", "instructor")

# The hot routes' bodies, dumped without marshmallow's per-value machinery (the
# schemas in @blp.response still document them; tests compare the two).
_ENROLLMENT = compile_dump(schemas.EnrollmentSchema())
_PROGRESS = compile_dump(schemas.LessonProgressSchema())
_COURSE_PROGRESS = compile_dump(schemas.CourseProgressSchema())
_MY_COURSES = compile_dump(schemas.MyCoursesPageSchema())


@blp.get("/lessons/<id:lesson_id>")
@auth_required()
@blp.response(200, schemas.LessonWithProgressSchema)
def get_lesson(lesson_id: int) -> Response:
    """A lesson with the current user's progress (enrolled learners and course staff)."""
    return etags.tagged_json(*service.lesson_json(current_user(), lesson_id))


@blp.post("/courses/<id:course_id>/enroll")
@auth_required()
@blp.response(201, schemas.EnrollmentSchema)
@blp.alt_response(200, schema=schemas.EnrollmentSchema, description="already enrolled")
def enroll(course_id: int) -> Response:
    """Enroll yourself in a published course: 201 when this call enrolled you, else 200."""
    enrollment, created = service.enroll_self(current_user(), course_id)
    return respond(_ENROLLMENT, enrollment, 201 if created else 200)


@blp.post("/courses/<id:course_id>/enrollments")
@auth_required(*STAFF)
@blp.arguments(schemas.BulkEnrollSchema)
@blp.response(200, schemas.BulkEnrollResultSchema)
def bulk_enroll(body: dict[str, Any], course_id: int) -> dict[str, int]:
    """Enroll up to 10,000 users; unknown ids reject the call and nothing is written."""
    return service.bulk_enroll(current_user(), course_id, body["user_ids"])


@blp.get("/courses/<id:course_id>/enrollments")
@auth_required(*STAFF)
@blp.arguments(schemas.EnrollmentListArgsSchema, location="query")
@blp.response(200, schemas.EnrollmentPageSchema)
def list_enrollments(args: dict[str, Any], course_id: int) -> dict[str, Any]:
    """A course's enrollments, newest first, with user and progress (keyset pages)."""
    return service.enrollment_page(current_user(), course_id, args)


@blp.delete("/courses/<id:course_id>/enrollments/<id:user_id>")
@auth_required()
@blp.response(204)
def drop_enrollment(course_id: int, user_id: int) -> None:
    """Drop an enrollment (course staff, or the learner themself); progress is kept."""
    service.drop_enrollment(current_user(), course_id, user_id)


@blp.put("/lessons/<id:lesson_id>/progress")
@auth_required()
@blp.arguments(schemas.ProgressUpdateSchema)
@blp.response(200, schemas.LessonProgressSchema)
def put_progress(body: dict[str, Any], lesson_id: int) -> Response:
    """Record progress: never goes down, time_spent adds up, completed_at is set once."""
    progress = service.record_progress(
        current_user(), lesson_id, body["progress_percentage"], body["time_spent"]
    )
    return respond(_PROGRESS, progress)


@blp.post("/progress/batch")
@auth_required()
@blp.arguments(schemas.ProgressBatchSchema)
@blp.response(200, schemas.ProgressBatchResultSchema)
def progress_batch(body: dict[str, Any]) -> dict[str, int]:
    """Up to 1,000 progress updates, all or nothing (per-item errors on 422)."""
    return {"updated": service.record_progress_batch(current_user(), body["updates"])}


@blp.get("/courses/<id:course_id>/progress")
@auth_required()
@blp.arguments(schemas.CourseProgressArgsSchema, location="query")
@blp.response(200, schemas.CourseProgressSchema)
def course_progress(args: dict[str, Any], course_id: int) -> Response:
    """Progress in a course; course staff may pass ?user_id= for a learner's."""
    return respond(
        _COURSE_PROGRESS, service.course_progress(current_user(), course_id, args["user_id"])
    )


@blp.get("/me/courses")
@auth_required()
@blp.arguments(CursorPageArgs, location="query")
@blp.response(200, schemas.MyCoursesPageSchema)
def my_courses(args: dict[str, Any]) -> Response:
    """The current user's courses (not dropped), newest enrollment first, with progress."""
    return respond(_MY_COURSES, service.my_courses_page(current_user(), args))
