"""What every operation can answer, declared in /openapi.json.

flask-smorest documents a route's own responses (200/201/204, 422 for its arguments)
and a catch-all `default`. The answers that come from the layers around a view
(tenant resolution, the bearer token, the body reader, the database) are the same
for whole classes of operations; they are declared here, once, after the blueprints
are registered, so a client generated from the document, or a fuzzer, knows every
status it can meet. The few conflicts a service raises are listed by operation.

apispec keeps the operations in `APISpec._paths`; flask-smorest offers no hook for
responses shared by many routes, so they are added there.
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Api

METHODS = frozenset({"get", "put", "post", "patch", "delete", "head", "options"})

TENANT_HEADER = {
    "in": "header",
    "name": "X-Tenant",
    "required": False,
    "description": (
        "The school's slug (lower-case letters, digits, underscores; case and surrounding "
        "space are ignored); not needed on the school's own subdomain of SERVER_NAME."
    ),
    # No pattern: the header is read case-insensitively and trimmed, which a pattern
    # would misstate.
    "schema": {"type": "string"},
}

# Raised by services, operation by operation.
SPECIFIC: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/api/v1/auth/token"): {
        "401": "Wrong e-mail or password (or an account that may not log in).",
        "429": "Too many login attempts from this address; see Retry-After.",
    },
    ("post", "/api/v1/users"): {"409": "An account with this e-mail exists."},
    ("patch", "/api/v1/users/{user_id}"): {
        "409": "You cannot demote or deactivate yourself, nor leave the school without an "
        "active admin.",
        "429": "Too many guesses of current_password; see Retry-After.",
    },
    ("post", "/api/v1/users/bulk"): {
        "409": "The list demotes you, sets your own password, or leaves the school without "
        "an active admin.",
    },
    ("post", "/api/v1/users/{user_id}/erase"): {
        "409": "You cannot erase your own account, nor the school's last active admin.",
    },
    ("post", "/api/v1/categories"): {"409": "A category with this slug exists."},
    ("post", "/api/v1/courses/{course_id}/enrollments"): {
        "409": "The course is archived (or, for its instructor, not published yet).",
    },
    ("delete", "/api/v1/lessons/{lesson_id}"): {
        "409": "Learners have progress on this lesson: unpublish it instead.",
    },
    ("post", "/platform/tenants"): {"409": "A school with this slug exists."},
}


# Writes that take If-Match (lms_app.web.etags), and the operations whose success
# carries an ETag.
CONDITIONAL = frozenset(
    {
        ("patch", "/api/v1/courses/{course_id}"),
        ("delete", "/api/v1/courses/{course_id}"),
        ("patch", "/api/v1/lessons/{lesson_id}"),
        ("delete", "/api/v1/lessons/{lesson_id}"),
    }
)
TAGGED = frozenset(
    {
        ("get", "/api/v1/courses/{course_id}"),
        ("patch", "/api/v1/courses/{course_id}"),
        ("post", "/api/v1/courses"),
        ("get", "/api/v1/lessons/{lesson_id}"),
        ("patch", "/api/v1/lessons/{lesson_id}"),
        ("post", "/api/v1/courses/{course_id}/lessons"),
    }
)
IF_MATCH_HEADER = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": (
        "The ETag of the version you edited (or `*`): the write happens only if that is "
        "still the current version, else 412. Without it the write happens as always."
    ),
    "schema": {"type": "string"},
}
ETAG_HEADER = {
    "description": "The version of the course or lesson, for If-Match.",
    "schema": {"type": "string"},
}
STALE = "The ETag in If-Match is not the current version: read it again, then retry."


def _conditional(method: str, path: str, operation: dict[str, Any]) -> None:
    if (method, path) in CONDITIONAL:
        operation.setdefault("parameters", []).append(IF_MATCH_HEADER)
        operation["responses"].setdefault("412", _error(STALE))
    if (method, path) in TAGGED:
        for code, response in operation["responses"].items():
            if code.startswith("2"):
                response.setdefault("headers", {})["ETag"] = ETAG_HEADER


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _shared_answers(path: str, operation: dict[str, Any]) -> dict[str, str]:
    answers: dict[str, str] = {}
    platform, tenant = path.startswith("/platform/"), path.startswith("/api/v1/")
    if tenant:
        answers["400"] = "No or malformed school (X-Tenant), or a malformed request."
        answers["403"] = "The school is suspended, or your role may not do this."
        answers["404"] = "No such school, or no such record in it."
    if operation.get("security") != [] and (tenant or platform):
        answers["401"] = (
            "Platform API key required." if platform else "Missing, invalid or expired token."
        )
    if platform and "{slug}" in path:
        answers["404"] = "No such school."
    if "requestBody" in operation:
        answers["400"] = answers.get("400", "Malformed request.") + " Malformed or missing JSON."
        answers["413"] = "The body is larger than MAX_CONTENT_LENGTH."
        answers["415"] = "The body is not JSON (send Content-Type: application/json)."
    if tenant or platform:
        answers["503"] = "The database is busy or out of reach; see Retry-After."
    return answers


def complete(api: Api) -> None:
    for path, operations in api.spec._paths.items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            answers = {**_shared_answers(path, operation), **SPECIFIC.get((method, path), {})}
            for code, description in answers.items():
                responses.setdefault(code, _error(description))
            _conditional(method, path, operation)
            # Every status is now listed: a catch-all would hide an undocumented one.
            responses.pop("default", None)
            if path.startswith("/api/v1/"):
                operation.setdefault("parameters", []).append(TENANT_HEADER)
