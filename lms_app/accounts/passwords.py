"""Password hashing (werkzeug scrypt) and the e-mail form we store."""

from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password, method="scrypt")


def verify_password(password_hash: str | None, password: str) -> bool:
    return password_hash is not None and check_password_hash(password_hash, password)


def normalize_email(email: str) -> str:
    """E-mail is unique per tenant case-insensitively: we store it lower-case."""
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 254 or any(c.isspace() for c in email):
        raise ValueError("not a valid e-mail address")
    return email
