"""Import every model so both metadatas are complete (migrations, tests)."""

from lms_app.accounts.models import User
from lms_app.audit.models import AuditEvent
from lms_app.caching.models import CacheGeneration
from lms_app.catalog.models import Category, Course, Lesson
from lms_app.db.base import PublicBase, TenantBase
from lms_app.learning.models import Enrollment, LessonProgress, UserActivity
from lms_app.tenancy.models import Tenant

__all__ = [
    "AuditEvent",
    "CacheGeneration",
    "Category",
    "Course",
    "Enrollment",
    "Lesson",
    "LessonProgress",
    "PublicBase",
    "Tenant",
    "TenantBase",
    "User",
    "UserActivity",
]
