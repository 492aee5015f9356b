"""server/logging_setup.py: timezone-aware timestamps, one JSON object per line with the record's
structured facts, and the SIGHUP reset of the level."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from pyscsi_target.server.logging_setup import JsonFormatter, TextFormatter, reset_level


def _record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("pyscsi_target.audit", logging.INFO, __file__, 1, "change %s", ("x",), None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_text_timestamps_carry_the_utc_offset() -> None:
    line = TextFormatter().format(_record())
    stamp, level, logger, message = line.split(" ", 3)
    assert datetime.fromisoformat(stamp).tzinfo is not None
    assert (level, logger, message) == ("INFO", "pyscsi_target.audit:", "change x")


def test_json_lines_have_the_fields_and_the_structured_facts() -> None:
    out = json.loads(JsonFormatter().format(_record(audit={"user": "root", "id": 3})))
    assert datetime.fromisoformat(out["ts"]).tzinfo is not None
    assert (out["level"], out["logger"], out["message"]) == ("INFO", "pyscsi_target.audit", "change x")
    assert (out["user"], out["id"]) == ("root", 3)


def test_sighup_resets_the_level() -> None:
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.DEBUG)
        reset_level("warning")
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)
