"""The bulk-write helper: array literals survive any text, and the counts are right."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Text, func, select

from lms_app.accounts.models import User
from lms_app.db.arrays import array_param
from lms_app.db.upsert import excluded, upsert
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope

NASTY = [
    "plain",
    "",
    "with space",
    'quote"d',
    "back\\slash",
    "comma,brace}{",
    "NULL",
    "ünïcødé ✓",
    None,
]


def roundtrip(app, values, item_type):
    with app.app_context():
        stmt = select(array_param("values", item_type))
        return db.session.execute(stmt, {"values": values}).scalar_one()


def test_text_array_literal_roundtrips(app) -> None:
    assert roundtrip(app, NASTY, Text()) == NASTY


def test_int_and_timestamp_array_literals_roundtrip(app) -> None:
    assert roundtrip(app, [1, 2**62, None], BigInteger()) == [1, 2**62, None]
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert roundtrip(app, [moment], DateTime(timezone=True)) == [moment]


def test_upsert_counts_inserts_updates_and_skips(app, make_tenant) -> None:
    tenant = make_tenant()
    table = User.__table__
    rows = [
        {"email": f"u{i}@example.test", "name": NASTY[i % 8], "role": "student"} for i in range(25)
    ]
    with app.app_context(), tenant_scope(tenant):
        first = upsert(db.session, table, rows, conflict=["email"], chunk_rows=10)
        assert (first.inserted, first.updated, first.unchanged) == (25, 0, 0)
        again = upsert(db.session, table, rows, conflict=["email"])
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 25)
        renamed = [{**row, "name": "Renamed"} for row in rows[:5]] + [
            {"email": "new@example.test", "name": "New", "role": "student"}
        ]
        result = upsert(
            db.session,
            table,
            renamed,
            conflict=["email"],
            update={"name": excluded(table, "name")},
        )
        assert (result.inserted, result.updated) == (1, 5)
        db.session.commit()
        names = db.session.scalars(
            select(User.name).where(User.email.in_([r["email"] for r in renamed]))
        ).all()
        assert sorted(names) == ["New"] + ["Renamed"] * 5
        stored = dict(
            db.session.execute(select(User.email, User.name).where(User.email.like("u%"))).all()
        )
        assert stored["u6@example.test"] == NASTY[6] and stored["u7@example.test"] == NASTY[7]
        assert db.session.scalar(select(func.count()).select_from(User)) == 27  # + admin


def test_constants_are_sent_once_for_every_row(app, make_tenant) -> None:
    tenant = make_tenant()
    table = User.__table__
    with app.app_context(), tenant_scope(tenant):
        result = upsert(
            db.session,
            table,
            [{"email": f"c{i}@example.test", "name": f"C{i}"} for i in range(3)],
            conflict=["email"],
            constants={"role": "instructor"},
        )
        db.session.commit()
        roles = db.session.scalars(select(User.role).where(User.email.like("c%"))).all()
    assert result.inserted == 3 and roles == ["instructor"] * 3
