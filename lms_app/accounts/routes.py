"""POST /auth/token, GET /me, /users."""

from __future__ import annotations

from flask.views import MethodView

from lms_app.accounts import service
from lms_app.accounts.auth import auth_required, current_user
from lms_app.accounts.models import User
from lms_app.accounts.schemas import (
    BulkResult,
    TokenRequest,
    TokenResponse,
    UserBulkRequest,
    UserCreate,
    UserListArgs,
    UserPage,
    UserPatch,
    UserSchema,
)
from lms_app.accounts.throttle import throttle_login
from lms_app.errors import abort
from lms_app.extensions import db
from lms_app.web.blueprint import Blueprint
from lms_app.web.pagination import page

blp = Blueprint("accounts", __name__, url_prefix="/api/v1", description="Auth and users")


@blp.route("/auth/token", methods=["POST"])
@blp.arguments(TokenRequest)
@blp.response(200, TokenResponse)
@blp.doc(security=[])
def issue_token(data):
    throttle_login(data["email"])
    issued = service.login(data["email"], data["password"])
    if issued is None:
        abort(401, "invalid e-mail or password")
    token, ttl = issued
    return {"access_token": token, "token_type": "bearer", "expires_in": ttl}


@blp.route("/me")
@auth_required()
@blp.response(200, UserSchema)
def me():
    return _get_user_or_404(current_user().id)


@blp.route("/users")
class Users(MethodView):
    @auth_required("admin")
    @blp.arguments(UserListArgs, location="query")
    @blp.response(200, UserPage)
    def get(self, args):
        rows = service.list_users(args.get("role"), args["after"], args["limit"])
        items, next_cursor = page(rows, args["limit"], lambda u: (u.created_at, u.id))
        return {"items": items, "next_cursor": next_cursor}

    @auth_required("admin")
    @blp.arguments(UserCreate)
    @blp.response(201, UserSchema)
    def post(self, data):
        try:
            return service.create_user(data)
        except service.EmailTaken:
            abort(409, "a user with this e-mail already exists")


@blp.route("/users/bulk", methods=["POST"])
@auth_required("admin")
@blp.arguments(UserBulkRequest)
@blp.response(200, BulkResult)
def bulk_users(data):
    result = service.bulk_upsert_users(current_user(), data["users"])
    return {"created": result.inserted, "updated": result.updated}


def _get_user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.erased_at is not None:  # erased: gone, as far as the API goes
        abort(404, "no such user")
    return user


@blp.route("/users/<id:user_id>")
class UserById(MethodView):
    @auth_required()
    @blp.response(200, UserSchema)
    def get(self, user_id):
        service.check_change(current_user(), user_id, {})  # reading: self or admin
        return _get_user_or_404(user_id)

    @auth_required()
    @blp.arguments(UserPatch)
    @blp.response(200, UserSchema)
    def patch(self, changes, user_id):
        return service.change_user(current_user(), user_id, changes)
