"""Stream keys: 1 to 128 characters of [A-Za-z0-9._-]. They name sessions, URL path segments and files.

One rule for the server (which refuses a bad key with `bad_key`) and the clients (which refuse it
before connecting, with the same message).
"""

from __future__ import annotations

import re

KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
KEY_RULE = "1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"


def key_problem(key: str) -> str | None:
    """Why `key` is not a valid stream key (quoting it and the rule), or None if it is one."""
    if KEY_PATTERN.fullmatch(key) is not None:
        return None
    shown = key if len(key) <= 40 else key[:40] + "..."
    return f"invalid stream key {shown!r} ({len(key)} characters): expected {KEY_RULE}"
