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
