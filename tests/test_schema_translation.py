"""The remembered schema translation gives each tenant its own schema, every time."""

from __future__ import annotations

from sqlalchemy import event, select

from lms_app.accounts.models import User
from lms_app.db.engines import for_schema
from lms_app.extensions import db


def test_each_schema_gets_its_own_translation(app, make_tenant) -> None:
    first, second = make_tenant(), make_tenant()
    stmt = select(User.id).where(User.id == 1)
    with app.app_context():
        for engine in db.engines.values():
            assert engine.dialect.identifier_preparer._render_schema_translates.lms_remembered
            sent: list[str] = []

            def on_execute(conn, cursor, statement, *args, _sent=sent):
                _sent.append(statement)

            event.listen(engine, "before_cursor_execute", on_execute)
            try:
                order = (first, second, first, second)  # the second round is remembered
                for tenant in order:
                    with for_schema(engine, tenant.schema_name).connect() as connection:
                        connection.execute(stmt).all()
            finally:
                event.remove(engine, "before_cursor_execute", on_execute)
            for tenant, sql in zip(order, sent, strict=True):
                assert f"{tenant.schema_name}.users" in sql
            assert sent[0] == sent[2] and sent[1] == sent[3] and sent[0] != sent[1]
