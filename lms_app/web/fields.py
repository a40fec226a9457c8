"""Marshmallow fields every schema uses, so bad input is a 422 and never a 500."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

BIGINT_MAX = 2**63 - 1


class Text(fields.String):
    """A string PostgreSQL can store: no NUL bytes, no lone surrogates, trimmed length."""

    def __init__(self, *, max_length: int | None = None, min_length: int = 0, **kwargs: Any):
        validators = list(kwargs.pop("validate", []) or [])
        if max_length is not None or min_length:
            validators.append(validate.Length(min=min_length or None, max=max_length))
        super().__init__(validate=validators, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in result:
            raise ValidationError("must not contain NUL characters")
        try:
            result.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("must be valid UTF-8 text") from None
        return result


def Id(**kwargs: Any) -> fields.Integer:
    """A row id: a positive bigint (anything larger would be a database error)."""
    return fields.Integer(strict=True, validate=validate.Range(1, BIGINT_MAX), **kwargs)


class Flag(fields.Boolean):
    """A JSON boolean only: "yes", 1 or "false" are 422s, not guesses."""

    def _deserialize(self, value, attr, data, **kwargs):
        # 1 == True in Python, so truthy/falsy sets alone would let 0 and 1 in.
        if type(value) is not bool:
            raise self.make_error("invalid")
        return value
