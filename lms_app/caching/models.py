"""The tenant's cache generation counters, kept in PostgreSQL."""

from __future__ import annotations

from sqlalchemy import BigInteger, Text
from sqlalchemy.orm import Mapped, mapped_column

from lms_app.db.base import TenantBase


class CacheGeneration(TenantBase):
    """One row per namespace that has ever been bumped (an absent row is generation 0).

    A write moves its namespaces' rows inside its own transaction, so an invalidation
    commits or rolls back with the change it announces: none can be lost or owed,
    whatever happens to the shared cache meanwhile (lms_app.caching.generations).
    """

    __tablename__ = "cache_generations"

    namespace: Mapped[str] = mapped_column(Text, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False)
