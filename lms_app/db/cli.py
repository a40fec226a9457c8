"""`flask --app wsgi db-report`: the top statements by mean and by total time."""

from __future__ import annotations

import json

import click
from flask import Flask

from lms_app.db.statement_stats import server_top
from lms_app.extensions import db


@click.command("db-report")
@click.option("--top", default=10, show_default=True, help="statements per list")
def db_report(top: int) -> None:
    """Top statements from pg_stat_statements (every process since its last reset).

    A command runs in a fresh process, so its own statistics are empty: each
    worker's since it started are at GET /platform/slow-queries (platform key).
    """
    report = server_top(db.engine, top)
    if not report["available"]:
        click.echo(
            f"pg_stat_statements is not available ({report['reason']}): add it to"
            " shared_preload_libraries and CREATE EXTENSION pg_stat_statements; each"
            " worker's own figures are at GET /platform/slow-queries"
        )
        return
    click.echo(json.dumps(report, indent=2))


def init_app(app: Flask) -> None:
    app.cli.add_command(db_report)
