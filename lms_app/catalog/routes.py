"""HTTP routes of the catalog: categories, courses, lessons (writes) and search."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from lms_app.accounts.auth import auth_required, current_user
from lms_app.catalog import cached_reads, page_cache, service
from lms_app.catalog.schemas import (
    CatalogPageSchema,
    CategoryCreateSchema,
    CategoryListArgs,
    CategoryPageSchema,
    CategorySchema,
    CourseCreateSchema,
    CourseDetailSchema,
    CourseListArgs,
    CourseSchema,
    CourseUpdateSchema,
    LessonCreateSchema,
    LessonSchema,
    LessonUpdateSchema,
    SearchArgs,
    SearchPageSchema,
)
from lms_app.errors import abort
from lms_app.web import etags
from lms_app.web.blueprint import Blueprint
from lms_app.web.rendering import json_response

blp = Blueprint("catalog", __name__, url_prefix="/api/v1", description="catalog")

STAFF = ("instructor", "admin")


@blp.route("/categories")
class Categories(MethodView):
    @auth_required()
    @blp.arguments(CategoryListArgs, location="query")
    @blp.response(200, CategoryPageSchema)
    def get(self, args: dict[str, Any]):
        """Categories, by id."""
        return json_response(cached_reads.category_page_json(args["limit"], args["after"]))

    @auth_required("admin")
    @blp.arguments(CategoryCreateSchema)
    @blp.response(201, CategorySchema)
    def post(self, data: dict[str, Any]):
        """Create a category (admin); a duplicate slug is a 409."""
        return service.create_category(data)


@blp.route("/courses")
class Courses(MethodView):
    @auth_required()
    @blp.arguments(CourseListArgs, location="query")
    @blp.response(200, CatalogPageSchema)
    def get(self, args: dict[str, Any]):
        """The catalog: published courses, newest first, with the caller's progress."""
        # The hottest route: the body is assembled from the cached, pre-rendered page
        # and the live overlay (a test pins it to CatalogPageSchema's dump).
        body = page_cache.catalog_json(
            current_user().id,
            limit=args["limit"],
            after=args["after"],
            category_id=args["category_id"],
            difficulty_level=args["difficulty_level"],
        )
        return json_response(body)

    @auth_required(*STAFF)
    @blp.arguments(CourseCreateSchema)
    @blp.response(201, CourseSchema)
    def post(self, data: dict[str, Any]):
        """Create a course (instructor, admin); the caller teaches it unless an admin says."""
        course = service.create_course(data, current_user())
        return course, 201, etags.headers(course["version"])


@blp.route("/courses/<id:course_id>")
class CourseById(MethodView):
    @auth_required()
    @blp.response(200, CourseDetailSchema)
    def get(self, course_id: int):
        """A course with its category, instructor and lesson outline."""
        found = cached_reads.course_detail_json(course_id, current_user())
        if found is None:
            abort(404, "course not found")
        return etags.tagged_json(*found)

    @auth_required(*STAFF)
    @blp.arguments(CourseUpdateSchema)
    @blp.response(200, CourseSchema)
    def patch(self, data: dict[str, Any], course_id: int):
        """Update a course (its instructor, admin); with If-Match, only the version
        named by its ETag (412 otherwise)."""
        course = service.update_course(course_id, data, current_user(), etags.if_match())
        return course, 200, etags.headers(course["version"])

    @auth_required(*STAFF)
    @blp.response(204)
    def delete(self, course_id: int):
        """Archive a course (its instructor, admin): it leaves the catalog, progress stays."""
        service.archive_course(course_id, current_user(), etags.if_match())


@blp.route("/courses/<id:course_id>/lessons")
class CourseLessons(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(LessonCreateSchema)
    @blp.response(201, LessonSchema)
    def post(self, data: dict[str, Any], course_id: int):
        """Add a lesson (course instructor, admin); appended after the last one by default."""
        lesson = service.create_lesson(course_id, data, current_user())
        return lesson, 201, etags.headers(lesson["version"])


@blp.route("/lessons/<id:lesson_id>")
class LessonById(MethodView):
    @auth_required(*STAFF)
    @blp.arguments(LessonUpdateSchema)
    @blp.response(200, LessonSchema)
    def patch(self, data: dict[str, Any], lesson_id: int):
        """Update a lesson (course instructor, admin); with If-Match, only the version
        named by its ETag (412 otherwise)."""
        lesson = service.update_lesson(lesson_id, data, current_user(), etags.if_match())
        return lesson, 200, etags.headers(lesson["version"])

    @auth_required(*STAFF)
    @blp.response(204)
    def delete(self, lesson_id: int):
        """Delete a lesson without learner progress (409 otherwise: unpublish it instead)."""
        service.delete_lesson(lesson_id, current_user(), etags.if_match())


@blp.route("/search")
class Search(MethodView):
    @auth_required()
    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, SearchPageSchema)
    def get(self, args: dict[str, Any]):
        """Full-text search over published courses and their published lessons, ranked."""
        return json_response(cached_reads.search_json(args["q"], args["limit"]))
