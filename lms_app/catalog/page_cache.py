"""The catalog as served: the shared page cached per tenant, the overlay always live.

The page (course rows and next cursor) is the same for every user of a school, so
it is cached once per tenant under the catalog generation (bumped by every course
or lesson write that can change it) and stored already rendered: one JSON fragment
per course, missing only the caller's two fields. A request then costs one cache
round trip (none while this process's copy is fresh), the overlay statement, and
string joins; a miss costs the one statement that reads the page together with the
caller's overlay. `is_enrolled` and `progress_percentage` are never cached: they
come from the database every time.

The body equals CatalogPageSchema's dump of `queries.catalog_page` (tested).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import current_app

from lms_app.caching.generations import CATALOG
from lms_app.caching.reads import cached_read
from lms_app.catalog import queries

# Part of every page key: bump it whenever RenderedPage changes shape, so a deploy
# never reads values cached by the previous release.
PAGE_FORMAT = 2

# Page sizes whose pages are shared through the cache: the default and the round
# numbers clients use. Any other size is served uncached (still one statement).
CACHED_PAGE_SIZES = frozenset({10, 20, 25, 50, 100})

# (course id, total_lessons, '{"field":value,...' without its closing brace)
Fragment = tuple[int, int, str]
# The rendered items, their courses' unpublished lesson ids, the next cursor.
RenderedPage = tuple[list[Fragment], list[int], str | None]


def catalog_json(
    user_id: int,
    *,
    limit: int,
    after: tuple[datetime, int] | None,
    category_id: int | None,
    difficulty_level: str | None,
) -> str:
    filters: dict[str, Any] = {
        "limit": limit,
        "after": after,
        "category_id": category_id,
        "difficulty_level": difficulty_level,
    }
    settings = current_app.config["LMS_SETTINGS"]
    if not settings.cache_catalog_pages or limit not in CACHED_PAGE_SIZES:
        # Rendered once, as a whole: per-item fragments only pay off when reused.
        items, next_cursor = queries.catalog_page(user_id, **filters)
        return current_app.json.dumps(
            {"items": items, "next_cursor": next_cursor}, separators=(",", ":")
        )

    # On a miss the page is read together with this user's overlay (one statement);
    # on a hit only the overlay is read.
    fresh_overlay: dict[int, tuple[bool, int]] = {}
    # A page found in the cache was stored only because it was shareable; a page this
    # request loads says so itself.
    shareable = True

    def load() -> RenderedPage:
        nonlocal shareable
        items, next_cursor, reachable = queries.catalog_rows(
            **filters, user_id=user_id, probe_cursor=True
        )
        for item in items:
            fresh_overlay[item["id"]] = (item.pop("is_enrolled"), item.pop("completed"))
        # Only pages a client reaches by following next_cursor are stored: any other
        # position is served all the same, from the database, but may not fill the
        # cache (a student inventing cursors would otherwise store a page for each).
        shareable = reachable and (category_id is None or bool(items))
        return _render_page(items, next_cursor)

    fragments, unpublished, next_cursor = cached_read(
        CATALOG,
        _page_key(**filters),
        settings.cache_ttl.course_list,
        load,
        keep=lambda _page: shareable,
    )
    if fresh_overlay or not fragments:
        overlay = fresh_overlay
    else:
        course_ids = [course_id for course_id, _, _ in fragments]
        overlay = queries.user_overlay(user_id, course_ids, unpublished)
    items = []
    for course_id, total_lessons, fragment in fragments:
        enrolled, progress = queries.overlay_fields(overlay, course_id, total_lessons)
        items.append(
            f'{fragment},"is_enrolled":{"true" if enrolled else "false"},'
            f'"progress_percentage":{progress!r}}}'
        )
    return f'{{"items":[{",".join(items)}],"next_cursor":{json.dumps(next_cursor)}}}'


def _page_key(
    *,
    limit: int,
    after: tuple[datetime, int] | None,
    category_id: int | None,
    difficulty_level: str | None,
) -> str:
    # Cursors arrive in UTC (lms_app.web.pagination): one key per instant.
    cursor = f"{after[0].isoformat()}/{after[1]}" if after else "-"
    return f"v{PAGE_FORMAT}:{limit}:{cursor}:{category_id or '-'}:{difficulty_level or '-'}"


def _render_page(items: list[dict[str, Any]], next_cursor: str | None) -> RenderedPage:
    unpublished = [i for item in items for i in item.pop("unpublished_lesson_ids")]
    dumps = current_app.json.dumps
    # Each item is a non-empty JSON object: drop its closing brace to append to it.
    fragments = [
        (item["id"], item["total_lessons"], dumps(item, separators=(",", ":"))[:-1])
        for item in items
    ]
    return fragments, unpublished, next_cursor
