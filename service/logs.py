"""Structured logging: one JSON object per line, one line per event that matters (never per frame)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

LOGGER_NAME = "lrr.service"
logger = logging.getLogger(LOGGER_NAME)

_STANDARD_RECORD_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


_PLAIN_TYPES = (str, int, float, bool, type(None), list, tuple, dict)
"""Extra fields of these types are logged; others (e.g. uvicorn's protocol objects) are dropped."""


class JsonLineFormatter(logging.Formatter):
    """Formats a record as `{"ts", "level", "logger", "event", ...fields}` on a single line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_RECORD_KEYS and isinstance(value, _PLAIN_TYPES):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)
REDACTED = "[redacted]"


class RedactTokens(logging.Filter):
    """Replaces the value of every `token=` query parameter in a message by [redacted].

    uvicorn logs each websocket handshake with its URL, and browsers can only send the API token
    as `?token=`: without this, every accepted token, and every near-miss guess, would be in the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg, record.args = _TOKEN_IN_URL.sub(rf"\1{REDACTED}", message), None
        return True


def configure_logging(level: str) -> None:
    """Route every logger (ours and uvicorn's) to stdout as JSON lines at `level` (container convention),
    with tokens in URLs redacted."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True


def log_event(event: str, level: int = logging.INFO, *, exc_info: bool = False, **fields: Any) -> None:
    """Log one structured event, e.g. `log_event("session_created", key="rig1", n_channels=64)`."""
    if logger.isEnabledFor(level):
        safe = {(f"{k}_" if k in _STANDARD_RECORD_KEYS else k): v for k, v in fields.items()}
        logger.log(level, event, extra=safe, exc_info=exc_info)
