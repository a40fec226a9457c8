"""`flask --app wsgi seed-demo` and `flask --app wsgi demo` (seed, then serve)."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from werkzeug.serving import run_simple

from lms_app.caching import generations
from lms_app.demo.seed import (
    DEFAULT_COURSES,
    DEFAULT_STUDENTS,
    DEMO_ADMIN_EMAIL,
    DEMO_ADMIN_PASSWORD,
    DEMO_INSTRUCTOR_PASSWORD,
    DEMO_SLUG,
    DEMO_STUDENT_PASSWORD,
    SeedReport,
    instructor_email,
    seed_demo,
    student_email,
)
from lms_app.extensions import db
from lms_app.tenancy.resolver import forget_tenant
from lms_app.tenancy.slugs import InvalidSlug, validate_slug

slug_option = click.option(
    "--slug", default=DEMO_SLUG, show_default=True, help="The demo tenant's slug."
)
students_option = click.option(
    "--students", default=DEFAULT_STUDENTS, show_default=True, type=click.IntRange(0, 100_000)
)
courses_option = click.option(
    "--courses", default=DEFAULT_COURSES, show_default=True, type=click.IntRange(0, 10_000)
)


def _seed(slug: str, students: int, courses: int) -> SeedReport:
    try:
        validate_slug(slug)
    except InvalidSlug as exc:
        raise click.BadParameter(str(exc), param_hint="--slug") from None
    report = seed_demo(db.engine, slug, students, courses, progress=True)
    if report.created_tenant:
        forget_tenant(slug)
    if not report.already_seeded:
        # The seed writes straight to the tables: retire what the caches hold.
        generations.bump_committed(report.tenant, *generations.ALL)
    counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
    if report.already_seeded:
        click.echo(f"tenant {slug} already seeded, nothing to do ({counts})")
    else:
        click.echo(f"seeded tenant {slug} in {report.seconds:.1f} s: {counts}")
    if report.tenant.status != "active":
        click.echo(f"warning: tenant {slug} is {report.tenant.status}", err=True)
    return report


@click.command("seed-demo")
@with_appcontext
@slug_option
@students_option
@courses_option
def seed_demo_command(slug: str, students: int, courses: int) -> None:
    """Create and fill one demo school; running it again changes nothing."""
    _seed(slug, students, courses)


@click.command("demo")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@slug_option
@students_option
@courses_option
def demo_command(host: str, port: int, slug: str, students: int, courses: int) -> None:
    """Seed the demo school (if needed) and serve the API on HOST:PORT."""
    report = _seed(slug, students, courses)
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    base = f"http://{url_host}:{port}"
    lines = [
        "",
        f"lms_app demo: {report.tenant.name} ({slug})",
        f"  URL            {base}",
        f"  tenant header  X-Tenant: {slug}",
        f"  admin login    {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}",
        f"  instructor     {instructor_email(1)} / {DEMO_INSTRUCTOR_PASSWORD}",
        f"  student login  {student_email(1)} / {DEMO_STUDENT_PASSWORD}",
        "",
        "try:",
        f"  curl -H 'X-Tenant: {slug}' {base}/api/v1/tenant",
    ]
    if any(rule.rule == "/api/v1/auth/token" for rule in current_app.url_map.iter_rules()):
        lines.append(
            f"  curl -H 'X-Tenant: {slug}' -H 'Content-Type: application/json' "
            f"""-d '{{"email": "{student_email(1)}", "password": "{DEMO_STUDENT_PASSWORD}"}}' """
            f"{base}/api/v1/auth/token"
        )
    lines += [f"  curl {base}/healthz", "", "Ctrl+C to stop.", ""]
    click.echo("\n".join(lines))
    # Not app.run(): under the `flask` command Flask ignores app.run() on purpose
    # (FLASK_RUN_FROM_CLI). run_simple is what app.run() would call.
    run_simple(
        host,
        port,
        current_app._get_current_object(),  # type: ignore[attr-defined]
        use_reloader=False,
        use_debugger=False,
        threaded=True,
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(demo_command)
