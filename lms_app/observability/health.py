"""Liveness and readiness: no tenant, no auth."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from lms_app.extensions import cache, db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    failed: dict[str, str] = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        failed["database"] = type(exc).__name__
    if current_app.config.get("CACHE_TYPE") == "RedisCache":
        try:
            cache.cache._write_client.ping()
        except Exception as exc:
            failed["redis"] = type(exc).__name__
    if failed:
        return jsonify(status="unavailable", failed=failed), 503
    return jsonify(status="ready")
