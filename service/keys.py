"""Stream keys: 1 to 128 characters of [A-Za-z0-9._-]; they name sessions and checkpoint files."""

from __future__ import annotations

import re

from lrr_service.core.vocabulary import ErrorCode
from lrr_service.service.errors import ServiceError

KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
KEY_RULE = "1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"


class InvalidKeyError(ServiceError, ValueError):
    """A stream key that breaks KEY_RULE; the message quotes the key and the rule."""

    code = ErrorCode.BAD_KEY


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid stream key, else raise InvalidKeyError saying why."""
    if KEY_PATTERN.fullmatch(key) is None:
        shown = key if len(key) <= 40 else key[:40] + "..."
        raise InvalidKeyError(f"invalid stream key {shown!r} ({len(key)} characters): expected {KEY_RULE}")
    return key
