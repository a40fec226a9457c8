"""Request and response schemas of the catalog (categories, courses, lessons, search)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load, validate

from lms_app.catalog.models import DIFFICULTY_LEVELS
from lms_app.web.fields import BIGINT_MAX, Flag, Id, Text
from lms_app.web.pagination import CursorPageArgs, PageArgs, PageSchema, decode_cursor

INT4_MAX = 2**31 - 1
MAX_ESTIMATED_HOURS = 100_000
SEARCH_MAX_LIMIT = 50
SEARCH_MAX_CHARS = 200


class Stripped(Text):
    """Text trimmed of surrounding whitespace before its length is checked."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


def _difficulty(**kwargs: Any) -> fields.String:
    return Text(validate=[validate.OneOf(DIFFICULTY_LEVELS)], **kwargs)


def _thumbnail_url(**kwargs: Any) -> fields.String:
    return Text(
        max_length=2048,
        validate=[validate.URL(schemes={"http", "https"}, require_tld=False)],
        allow_none=True,
        **kwargs,
    )


# --- categories ------------------------------------------------------------------


class CategorySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    slug = fields.String()


class CategoryCreateSchema(Schema):
    name = Stripped(required=True, min_length=1, max_length=120)
    slug = Text(required=True, validate=[validate.Regexp(r"^[a-z0-9-]{1,120}\Z")])


class CategoryListArgs(PageArgs):
    """Categories page by id (they are few and have no useful time order)."""

    @post_load
    def _decode(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["after"] = decode_cursor(data["cursor"], (int,))[0] if data["cursor"] else None
        return data


class CategoryPageSchema(PageSchema):
    items = fields.List(fields.Nested(CategorySchema))


# --- courses ---------------------------------------------------------------------


def _query_id(**kwargs: Any) -> fields.Integer:
    """An id in a query string: arrives as text, so not strict like `Id()`."""
    return fields.Integer(validate=validate.Range(1, BIGINT_MAX), **kwargs)


class CourseListArgs(CursorPageArgs):
    category_id = _query_id(load_default=None)
    difficulty_level = _difficulty(load_default=None)


class CourseSummarySchema(Schema):
    """The course fields every course list shows (catalog, /me/courses)."""

    id = fields.Integer()
    title = fields.String()
    description = fields.String()
    difficulty_level = fields.String()
    estimated_hours = fields.Integer(allow_none=True)
    thumbnail_url = fields.String(allow_none=True)
    category_id = fields.Integer(allow_none=True)
    instructor_id = fields.Integer(allow_none=True)
    total_lessons = fields.Integer()
    created_at = fields.DateTime()


class CatalogItemSchema(CourseSummarySchema):
    is_enrolled = fields.Boolean()
    progress_percentage = fields.Float()


class CatalogPageSchema(PageSchema):
    items = fields.List(fields.Nested(CatalogItemSchema))


class _CourseFields(Schema):
    """Writable course fields; POST adds defaults, PATCH takes any subset."""

    title = Stripped(min_length=1, max_length=200)
    description = Text(max_length=10_000)
    category_id = Id(allow_none=True)
    difficulty_level = _difficulty()
    estimated_hours = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(0, MAX_ESTIMATED_HOURS)
    )
    thumbnail_url = _thumbnail_url()
    is_published = Flag()
    # Admins only (checked by the service): hand the course to another instructor.
    instructor_id = Id()


class CourseCreateSchema(_CourseFields):
    title = Stripped(required=True, min_length=1, max_length=200)
    description = Text(max_length=10_000, load_default="")
    difficulty_level = _difficulty(load_default="beginner")
    is_published = Flag(load_default=False)


class CourseUpdateSchema(_CourseFields):
    pass


class CourseSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    description = fields.String()
    category_id = fields.Integer(allow_none=True)
    instructor_id = fields.Integer(allow_none=True)
    difficulty_level = fields.String()
    estimated_hours = fields.Integer(allow_none=True)
    thumbnail_url = fields.String(allow_none=True)
    total_lessons = fields.Integer()
    is_published = fields.Boolean()
    is_archived = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class LessonOutlineSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    order_index = fields.Integer()
    is_published = fields.Boolean()


class InstructorSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class CourseDetailSchema(CourseSchema):
    category = fields.Nested(CategorySchema, allow_none=True)
    instructor = fields.Nested(InstructorSchema, allow_none=True)
    lessons = fields.List(fields.Nested(LessonOutlineSchema))


# --- lessons ---------------------------------------------------------------------


class _LessonFields(Schema):
    title = Stripped(min_length=1, max_length=200)
    content = Text(max_length=1_000_000)
    order_index = fields.Integer(strict=True, validate=validate.Range(0, INT4_MAX))
    is_published = Flag()


class LessonCreateSchema(_LessonFields):
    title = Stripped(required=True, min_length=1, max_length=200)
    content = Text(max_length=1_000_000, load_default="")
    is_published = Flag(load_default=True)


class LessonUpdateSchema(_LessonFields):
    pass


class LessonSchema(Schema):
    id = fields.Integer()
    course_id = fields.Integer()
    title = fields.String()
    content = fields.String()
    order_index = fields.Integer()
    is_published = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


# --- search ----------------------------------------------------------------------


class SearchArgs(Schema):
    q = Stripped(required=True, min_length=1, max_length=SEARCH_MAX_CHARS)
    limit = fields.Integer(load_default=20, validate=validate.Range(1, SEARCH_MAX_LIMIT))


class SearchItemSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    description = fields.String()
    difficulty_level = fields.String()
    category_id = fields.Integer(allow_none=True)
    total_lessons = fields.Integer()
    rank = fields.Float()


class SearchPageSchema(PageSchema):
    items = fields.List(fields.Nested(SearchItemSchema))
