"""Request and response shapes of auth, /me and /users."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates

from lms_app.accounts.models import ROLES
from lms_app.accounts.passwords import MIN_PASSWORD_LENGTH, normalize_email
from lms_app.web.fields import Flag, Text
from lms_app.web.pagination import CursorPageArgs, PageSchema

MAX_BULK_USERS = 5_000
# scrypt is slow on purpose (~50 ms a hash): passwords in one bulk request are capped.
MAX_BULK_PASSWORDS = 100


class EmailField(Text):
    """E-mail, stored lower-case (unique per tenant, case-insensitive)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=254, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_email(raw)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def Password(**kwargs) -> Text:
    return Text(min_length=MIN_PASSWORD_LENGTH, max_length=200, load_only=True, **kwargs)


class TokenRequest(Schema):
    email = Text(required=True, max_length=254)
    password = Text(required=True, max_length=200, load_only=True)


class TokenResponse(Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class UserCreate(Schema):
    email = EmailField(required=True)
    name = Text(required=True, min_length=1, max_length=120)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    password = Password(required=True)


class UserBulkItem(Schema):
    email = EmailField(required=True)
    name = Text(required=True, min_length=1, max_length=120)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    password = Password(load_default=None)


class UserBulkRequest(Schema):
    users = fields.List(
        fields.Nested(UserBulkItem),
        required=True,
        validate=validate.Length(min=1, max=MAX_BULK_USERS),
    )

    @validates("users")
    def _no_duplicates(self, users, **_):
        # Items that failed their own validation arrive here without their bad fields.
        emails = [u["email"] for u in users if "email" in u]
        seen: set[str] = set()
        dupes = sorted({e for e in emails if e in seen or seen.add(e)})
        if dupes:
            raise ValidationError(f"duplicate e-mails in this request: {', '.join(dupes[:20])}")
        with_password = sum(1 for u in users if u.get("password"))
        if with_password > MAX_BULK_PASSWORDS:
            raise ValidationError(
                f"at most {MAX_BULK_PASSWORDS} users with a password per request "
                "(password hashing is deliberately slow); send the rest without one"
            )


class BulkResult(Schema):
    created = fields.Integer()
    updated = fields.Integer()


class UserPatch(Schema):
    name = Text(min_length=1, max_length=120)
    role = fields.String(validate=validate.OneOf(ROLES))
    password = Password()
    # Required with `password` when users change their own.
    current_password = Text(max_length=200, load_only=True)
    is_active = Flag()


class UserListArgs(CursorPageArgs):
    role = fields.String(validate=validate.OneOf(ROLES))


class UserPage(PageSchema):
    items = fields.List(fields.Nested(UserSchema))
