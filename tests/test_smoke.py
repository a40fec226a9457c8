from sqlalchemy import select

from lms_app.accounts.models import User
from lms_app.extensions import db
from lms_app.tenancy.context import tenant_scope


def test_tenant_admin_exists(app, make_tenant, client):
    tenant = make_tenant()
    with app.app_context(), tenant_scope(tenant):
        emails = db.session.scalars(select(User.email)).all()
    assert emails == [f"admin@{tenant.slug}.test"]
    r = client.get("/api/v1/tenant", headers={"X-Tenant": tenant.slug})
    assert r.status_code == 200 and r.json["slug"] == tenant.slug


def test_readyz_checks_every_pool_and_the_cache(client, database_url, tmp_path):
    from tests.conftest import make_app

    assert client.get("/readyz").get_json() == {"status": "ready"}
    no_redis = make_app(database_url, "redis://127.0.0.1:9/0", tmp_path)
    r = no_redis.test_client().get("/readyz")
    assert r.status_code == 503
    assert set(r.get_json()["failed"]) == {"redis"}
    with no_redis.app_context():
        for engine in db.engines.values():
            engine.dispose()
