"""`flask --app wsgi audit prune`: enforce AUDIT_RETENTION_DAYS in every school."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from config.settings import AUDIT_RETENTION_FLOOR_DAYS
from lms_app.audit.retention import prune_tenant
from lms_app.extensions import db
from lms_app.tenancy.provisioning import list_tenants

audit_cli = AppGroup("audit", help="The audit trail.")


@audit_cli.command("prune")
@click.option(
    "--retention-days",
    type=click.IntRange(min=AUDIT_RETENTION_FLOOR_DAYS),
    default=None,
    help="Keep this many days (default: AUDIT_RETENTION_DAYS).",
)
@click.option("--tenant", "slug", default=None, help="One school only (default: every school).")
def prune_command(retention_days: int | None, slug: str | None) -> None:
    """Delete audit events older than the retention period (run it daily)."""
    days = retention_days or current_app.config["LMS_SETTINGS"].audit_retention_days
    tenants = [t for t in list_tenants(db.engine) if slug is None or t.slug == slug]
    if slug is not None and not tenants:
        raise click.ClickException(f"no tenant {slug!r}")
    failed = 0
    total = 0
    for tenant in tenants:
        try:
            total += prune_tenant(db.engine, tenant, days).deleted
        except Exception as exc:  # one school's failure must not stop the others
            failed += 1
            click.echo(f"failed: {tenant.slug}: {type(exc).__name__}", err=True)
    click.echo(
        f"pruned {total} audit event(s) older than {days} days in {len(tenants) - failed} "
        f"school(s), {failed} failed"
    )
    if failed:
        sys.exit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(audit_cli)
