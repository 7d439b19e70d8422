"""Stream keys on the server: the rule of core/keys.py, refused with `bad_key`."""

from __future__ import annotations

from lrr_service.core.keys import KEY_PATTERN, KEY_RULE, key_problem
from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.errors import ServiceError

__all__ = ["KEY_PATTERN", "KEY_RULE", "InvalidKeyError", "validate_key"]


class InvalidKeyError(ServiceError, ValueError):
    """A stream key that breaks KEY_RULE; the message quotes the key and the rule."""

    code = ErrorCode.BAD_KEY


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid stream key, else raise InvalidKeyError saying why."""
    problem = key_problem(key)
    if problem is not None:
        raise InvalidKeyError(problem)
    return key
