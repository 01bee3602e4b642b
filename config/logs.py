"""Logging set-up: ``LOG_LEVEL`` and ``LOG_FORMAT`` (text or JSON lines).

``LOG_FORMAT=json`` writes one JSON object per line through python-json-logger (a well-kept
formatter, instead of hand-escaping): ``time``, ``level``, ``logger``, ``message`` and every
``extra`` field given at the call (``userId``, ``connId``, ``code``, ``reason``,
``durationS`` on socket lines). Text lines show those extras as ``key=value`` at the end.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging", "EXTRA_FIELDS"]

#: ``extra`` fields our log calls use (shown in text mode too).
EXTRA_FIELDS = ("userId", "connId", "code", "reason", "durationS", "status", "errorCode")

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _TextFormatter(logging.Formatter):
    """The classic text line, plus ``key=value`` for each of :data:`EXTRA_FIELDS` present."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={getattr(record, k)!s}" for k in EXTRA_FIELDS if hasattr(record, k)]
        return f"{line} [{' '.join(extras)}]" if extras else line


def configure_logging(level: str = "info", fmt: str = "text", stream: Any = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (default stderr) as ``fmt``.

    Args:
        level: a :data:`config.settings.LOG_LEVELS` name.
        fmt: ``text`` or ``json``.
        stream: a text stream (tests pass a buffer).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(_TextFormatter(_TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
