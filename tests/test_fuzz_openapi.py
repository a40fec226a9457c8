"""Fuzz every operation of /openapi.json with schemathesis, as every kind of caller.

The property: whatever a client sends, the answer is never a 5xx and is what the
document says it will be (a documented status, the documented content type, a body
matching the documented schema, the error shape included), and invalid input is never
accepted. Callers without valid credentials (no token; another school's admin token
with this school's X-Tenant) get a 401 from every operation that declares security.

One test per caller and group of routes; every operation of the group runs inside it as
a subtest (`SUBFAILED ... (label='PATCH /api/v1/courses/{course_id}')`). Each test gets
a school of its own (a tenant seeded through the API), so what an admin's run archives
or rewrites never reaches a student's run, and a result does not depend on which xdist
worker ran what before it. Cases are derandomized with a fixed seed: the same code gives
the same requests. A failure report ends with a curl command reproducing the request
(the token in it belongs to the test run; any valid token of that role will do).

Budget: LMS_FUZZ_EXAMPLES (default 25) random cases per operation and caller, plus the
coverage phase's fixed boundary and invalid cases. LMS_FUZZ_SEED picks other cases.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lms_app.extensions import db
from lms_app.tenancy.context import TenantInfo
from tests import servers
from tests.conftest import make_app, worker_id
from tests.fuzz_support import (
    MAX_EXAMPLES,
    SEED,
    Caller,
    School,
    anonymous_caller,
    foreign_admin_caller,
    hint_path_parameters,
    locked_out_check,
    platform_caller,
    seed_school,
    user_caller,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # Only judges negative cases: invalid input must not be accepted (2xx).
    negative_data_rejection,
]


# --- an app, a database and schools of its own ----------------------------------------------


# Session scope: xdist may hand a worker this module's tests between other modules' ones,
# and a module-scoped database would be made and dropped again each time.
@pytest.fixture(scope="session")
def fuzz_database_url(admin_database_url: str) -> Iterator[str]:
    """A database for this module alone: the platform operations create, suspend and drop
    tenants in the registry, which other modules of the same worker list and migrate."""
    name = f"lms_fuzz_{worker_id()}"
    yield servers.recreate_database(admin_database_url, name)
    servers.drop_database(admin_database_url, name)


@pytest.fixture(scope="session")
def app(fuzz_database_url: str, redis_url: str, tmp_path_factory) -> Iterator[Flask]:
    """Overrides conftest's session app for this module (and so its make_tenant)."""
    fuzz_app = make_app(fuzz_database_url, redis_url, tmp_path_factory.mktemp("fuzz"))
    yield fuzz_app
    with fuzz_app.app_context():
        for engine in db.engines.values():
            engine.dispose()  # before the database is dropped


@pytest.fixture
def school(app: Flask, make_tenant) -> School:
    # Function scope on purpose: one school per test (about 0.4 s), dropped with the module.
    return seed_school(app, make_tenant(name="Fuzz School"))


@pytest.fixture
def caller(request, app: Flask, school: School, make_tenant) -> Caller:
    name = request.param
    if name == "anonymous":
        return anonymous_caller(school)
    if name == "platform":
        return platform_caller(school)
    if name == "other_school_admin":
        home: TenantInfo = make_tenant(name="Another School")
        return foreign_admin_caller(app, school, home)
    return user_caller(app, school, name, getattr(school, name))


@pytest.fixture
def fuzz_schema(request, app: Flask, school: School, caller: Caller):
    # schemathesis 4.32's from_fixture() reads and rewrites `item._nodeid`, which pytest
    # 9.2 no longer has (node ids live in `_id`): give it the attribute it expects.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    config = schemathesis.Config.from_dict(
        {
            # schemathesis derives each operation's Hypothesis seed from this one (an
            # explicit seed wins over derandomize, which stays as the fallback).
            "seed": SEED,
            "generation": {
                # Valid and invalid requests, drawn side by side. (Separate negative runs
                # fail in 4.32's from_fixture() on operations nothing can be negated in:
                # its SkipTest is not the one the lazy runner catches.)
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",  # no example database: CI and laptops agree
                # The caller decides the Authorization header, not the fuzzer.
                "with-security-parameters": False,
            },
            "checks": {
                # schemathesis's list plus 413: API.md answers a body over
                # MAX_CONTENT_LENGTH with 413, and a 1,000,001-character lesson is one.
                "negative_data_rejection": {
                    "expected-statuses": [
                        *("400", "401", "403", "404", "405", "406", "409", "413"),
                        *("415", "422", "428", "429", "5xx"),
                    ]
                }
            },
            # Test credentials only: show failing requests exactly as sent, passwords included.
            "output": {"sanitization": {"enabled": False}},
            "phases": {
                # Systematic boundary and invalid values of every parameter and field
                # (cheap: no Hypothesis search). A caller locked out at the door gets a
                # 401 whatever it sends, so for those the random cases prove enough.
                "coverage": {"enabled": not caller.locked_out},
                "examples": {"enabled": False},  # the document has no examples
                "stateful": {"enabled": False},  # not run by the pytest integration
            },
            "operations": [public_operations(caller)],
        }
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)
    hints = {**school.ids, "slug": [school.tenant.slug]}
    hint_path_parameters(schema, hints, {**school.delete_ids, "slug": [school.tenant.slug]})
    return schema


def public_operations(caller: Caller) -> dict:
    """Operations without security (POST /auth/token, GET /tenant, /healthz...) ignore who
    asks: the anonymous caller covers them fully (each login attempt costs a scrypt),
    the others skip them."""
    public = {"include-by": "/security == []"}
    if caller.name == "anonymous":
        return {**public, "phases": {"coverage": {"enabled": True}}}
    return {**public, "enabled": False}


tenant_operations = schemathesis.pytest.from_fixture("fuzz_schema").include(path_regex=r"^/api/v1/")
platform_operations = schemathesis.pytest.from_fixture("fuzz_schema").include(
    path_regex=r"^/platform/"
)
untenanted_operations = schemathesis.pytest.from_fixture("fuzz_schema").exclude(
    path_regex=r"^/(api/v1|platform)/"
)


def call_and_check(app: Flask, case, caller: Caller) -> None:
    response = case.call(headers=caller.headers())
    caller.saw(response.status_code)
    extra = [locked_out_check(app)] if caller.locked_out else []
    case.validate_response(response, checks=CHECKS, additional_checks=extra)


@pytest.mark.parametrize(
    "caller",
    ["anonymous", "student", "instructor", "admin", "other_school_admin"],
    indirect=True,
)
@tenant_operations.parametrize()
def test_tenant_operations(app, case, caller):
    call_and_check(app, case, caller)


@pytest.mark.parametrize("caller", ["anonymous", "platform"], indirect=True)
@platform_operations.parametrize()
def test_platform_operations(app, case, caller):
    call_and_check(app, case, caller)


@pytest.mark.parametrize("caller", ["anonymous"], indirect=True)
@untenanted_operations.parametrize()
def test_untenanted_operations(app, case, caller):
    call_and_check(app, case, caller)
