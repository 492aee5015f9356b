"""The server's log output (issue #13 item 5): text or JSON lines on stderr, timezone-aware
timestamps, and the level an operator can change at run time.

- `text` (default): `2026-01-02T03:04:05.678+01:00 INFO pyscsi_target.audit: message`, ISO 8601
  with the local UTC offset (a log read in another timezone, or across a DST change, stays exact).
- `json`: one object per line for log shippers: `ts` (ISO 8601 with offset), `level`, `logger`,
  `message`, the structured facts a record carries (the audit log's `audit` attribute: its keys
  become fields) and `exc` with the traceback, if any.

The level: `--log-level` at start; `PUT /api/v1.0/system/loglevel/` changes it while the server
runs; SIGHUP sets it back to `--log-level` (`reset_level`; the server does not exit on SIGHUP).
Logs go to stderr only (journald, a container runtime or a supervisor collects them), so there is
no file to reopen after a rotation.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

#: `--log-format` values
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_FORMAT = "text"

#: LogRecord attributes that are not structured facts of the record (everything else is)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 with milliseconds and the local UTC offset."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return timestamp(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": timestamp(record), "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        for key, value in vars(record).items():
            if key in _STANDARD or key in out:
                continue
            if isinstance(value, dict):
                for k, v in value.items():
                    out.setdefault(k, v)
            else:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str, fmt: str = DEFAULT_LOG_FORMAT) -> None:
    """One stderr handler on the root logger with the chosen format and level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def reset_level(level: str) -> None:
    """SIGHUP: back to the start-up level (after a `PUT /system/loglevel/`)."""
    root = logging.getLogger()
    before = logging.getLevelName(root.level)
    root.setLevel(level.upper())
    logging.getLogger("pyscsi_target").log(
        max(logging.INFO, root.level), "SIGHUP received: log level %s -> %s (--log-level)", before, level.upper())
