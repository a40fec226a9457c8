"""`flask --app wsgi tenants ...` and `flask --app wsgi db-upgrade`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup
from tqdm import tqdm

from lms_app.caching import generations
from lms_app.extensions import db
from lms_app.tenancy.backup import export_tenant
from lms_app.tenancy.provisioning import (
    NewTenant,
    TenantExists,
    TenantNotFound,
    create_tenant,
    drop_tenant,
    list_tenants,
)
from lms_app.tenancy.resolver import forget_dropped, forget_tenant
from lms_app.tenancy.restore import restore_tenant
from lms_app.tenancy.snapshots import SnapshotError
from lms_app.tenancy.upgrade import upgrade_all

tenants_cli = AppGroup("tenants", help="Create, list, drop, export and restore schools (tenants).")


@tenants_cli.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The school's display name.")
@click.option("--admin-email", required=True)
@click.option("--admin-password", required=True, help="At least 10 characters.")
@click.option("--admin-name", default="Administrator", show_default=True)
def create_command(
    slug: str, name: str, admin_email: str, admin_password: str, admin_name: str
) -> None:
    """Create SLUG: schema, tables, indexes and its first admin, all or nothing."""
    started = time.perf_counter()
    try:
        tenant = create_tenant(
            db.engine, NewTenant(slug, name, admin_email, admin_password, admin_name)
        )
    except TenantExists as exc:
        raise click.ClickException(f"tenant already exists: {exc}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    forget_tenant(slug)
    elapsed = (time.perf_counter() - started) * 1000
    click.echo(f"created tenant {tenant.slug} (schema {tenant.schema_name}) in {elapsed:.0f} ms")


@tenants_cli.command("retire-caches")
def retire_caches_command() -> None:
    """Retire every cached value of every school (after a rolling deploy whose old
    processes kept their invalidations elsewhere, or after writing to the tables by
    hand). One statement per school; values expire on their TTL."""
    rows = list_tenants(db.engine)
    for tenant in tqdm(rows, desc="retire caches", unit="tenant", file=sys.stderr):
        generations.bump_committed(tenant, *generations.ALL)
    click.echo(f"retired the cached values of {len(rows)} tenant(s)")


@tenants_cli.command("list")
def list_command() -> None:
    """List every tenant."""
    rows = list_tenants(db.engine)
    for t in rows:
        click.echo(f"{t.slug:<42} {t.status:<10} {t.schema_name:<44} {t.name}")
    click.echo(f"{len(rows)} tenant(s)", err=True)


@tenants_cli.command("drop")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Confirm: the school's data is deleted for good.")
def drop_command(slug: str, yes: bool) -> None:
    """Drop SLUG and its schema with every row in it."""
    if not yes:
        raise click.ClickException("refusing to drop without --yes")
    try:
        dropped = drop_tenant(db.engine, slug)
    except TenantNotFound:
        raise click.ClickException(f"no tenant {slug!r}") from None
    forget_dropped(dropped)
    click.echo(f"dropped tenant {slug}")


class BarProgress:
    """snapshots.Progress as tqdm bars on stderr (stdout keeps the one-line result)."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def begin(self, label: str, total: int, unit: str) -> None:
        scale = unit in ("B", "rows")
        self._bar = tqdm(
            total=total or None,
            desc=label,
            unit=unit or "it",
            unit_scale=scale,
            unit_divisor=1024 if unit == "B" else 1000,
            file=sys.stderr,
        )

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def end(self) -> None:
        if self._bar is not None:
            # An estimate (export's row count) ends at what was really done.
            self._bar.total = self._bar.n
            self._bar.refresh()
            self._bar.close()
            self._bar = None


@tenants_cli.command("export")
@click.argument("slug")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
def export_command(slug: str, file: Path) -> None:
    """Write a consistent snapshot of SLUG (rows and migration revision) to FILE."""
    try:
        report = export_tenant(db.engine, slug, file, BarProgress())
    except TenantNotFound:
        raise click.ClickException(f"no tenant {slug!r}") from None
    except OSError as exc:  # the directory is missing or not writable, the disk full
        raise click.ClickException(f"cannot write {file}: {exc.strerror or exc}") from None
    click.echo(
        f"exported {slug} at revision {report.manifest.revision}: {report.rows} rows in "
        f"{len(report.manifest.tables)} tables, {report.bytes} bytes, {report.seconds:.1f} s"
    )


@tenants_cli.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "slug", required=True, help="The new school's slug (must be free).")
@click.option("--name", default=None, help="Its display name (default: the snapshot's).")
def restore_command(file: Path, slug: str, name: str | None) -> None:
    """Restore FILE as a new school SLUG next to the live one, migrated to head.

    All or nothing: on any error no schema and no registry row are left behind."""
    try:
        report = restore_tenant(db.engine, file, slug, name, BarProgress())
    except TenantExists:
        raise click.ClickException(f"tenant already exists: {slug}") from None
    except SnapshotError as exc:
        raise click.ClickException(f"cannot restore {file}: {exc}") from None
    except ValueError as exc:  # slug or name
        raise click.ClickException(str(exc)) from None
    forget_tenant(slug)
    tenant = report.tenant
    click.echo(
        f"restored {report.manifest.slug} (revision {report.manifest.revision}) as {tenant.slug} "
        f"(schema {tenant.schema_name}, now at {report.head}): {report.rows} rows, "
        f"{report.seconds:.1f} s ("
        + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in report.phases.items())
        + ")"
    )


@click.command("db-upgrade")
@click.option("--jobs", "-j", default=2, show_default=True, type=click.IntRange(1, 64))
def db_upgrade_command(jobs: int) -> None:
    """Migrate the public registry, then every tenant to head (in parallel)."""
    bar: tqdm | None = None

    def on_start(pending: int) -> None:
        nonlocal bar
        bar = tqdm(total=pending, unit="tenant", desc="tenants", file=sys.stderr, leave=True)

    def on_progress(slug: str, error: str | None) -> None:
        assert bar is not None
        bar.update(1)
        if error:
            bar.write(f"FAILED {slug}: {error}")

    url = db.engine.url.render_as_string(hide_password=False)
    report = upgrade_all(db.engine, url, jobs=jobs, on_progress=on_progress, on_start=on_start)
    if bar is not None:
        bar.close()
    click.echo(
        f"head {report.head}: {len(report.upgraded)} upgraded, {report.skipped} already at head, "
        f"{len(report.failed)} failed, {report.total} total in {report.seconds:.2f} s"
    )
    if report.failed:
        for slug, error in sorted(report.failed.items()):
            click.echo(f"failed: {slug}: {error}", err=True)
        sys.exit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(tenants_cli)
    app.cli.add_command(db_upgrade_command)
