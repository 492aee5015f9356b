"""The audit log of the management API (issue #13 item 5): logger `pyscsi_target.audit`, INFO.

One line per changed object of every configuration change the API applied: who (the Basic user),
from which address, what (collection and id, created / updated / deleted) and, field by field,
old → new, with the CHAP secrets masked; one line per failed API login (address and user name,
never the password); one line per change of the log level. Each line also carries its facts as
the record's `audit` attribute, which the JSON log format (`--log-format json`) writes out as
fields.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..model.config import Config
from ..model.draft import Draft
from .auth import basic_credentials

log = logging.getLogger("pyscsi_target.audit")

#: model attributes whose values never reach the log (AuthCredential.secret / .peersecret)
SECRET_ATTRS = frozenset({"secret", "peersecret"})
MASK = "********"

#: the levels `PUT /system/loglevel/` accepts (logging's names)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: the configuration's singletons, audited like one object each
SINGLETONS = ("global_config", "service")

Change = dict[str, tuple[Any, Any]]


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _shown(attr: str, value: Any) -> Any:
    if attr in SECRET_ATTRS and value is not None:
        return MASK if value else ""
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


def diff_objects(old: Any, new: Any) -> Change:
    """attribute -> (old, new) for every attribute that differs; secrets masked (a changed secret
    shows as a change from the mask to the mask, so that the change itself is audited)."""
    before = _fields(old) if old is not None else {}
    after = _fields(new) if new is not None else {}
    out: Change = {}
    for name in sorted(before.keys() | after.keys()):
        if before.get(name) != after.get(name):
            out[name] = (_shown(name, before.get(name)), _shown(name, after.get(name)))
    return out


def config_changes(old: Config, new: Config) -> list[tuple[str, int | None, str, Change]]:
    """(collection, id or None for a singleton, action, field changes) for every changed object.
    A draft of `old` (the API's changes, issue #12) is compared by its changed ids only, O(change);
    call this before the draft is committed (committing folds it into `old`)."""
    out: list[tuple[str, int | None, str, Change]] = []
    for name in SINGLETONS:
        change = diff_objects(getattr(old, name), getattr(new, name))
        if change:
            out.append((name, None, "updated", change))
    for collection in Config.COLLECTIONS:
        before: dict[int, Any] = getattr(old, collection)
        after: dict[int, Any] = getattr(new, collection)
        if isinstance(new, Draft) and new.base is old:
            ids = sorted(new.changes(collection))
        else:
            ids = sorted(before.keys() | after.keys())
        for oid in ids:
            a, b = before.get(oid), after.get(oid)
            if a == b:
                continue
            action = "created" if a is None else "deleted" if b is None else "updated"
            out.append((collection, oid, action, diff_objects(a, b)))
    return out


def _render(change: Change) -> str:
    return ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in change.items())


def log_config_change(user: str, address: str, changes: list[tuple[str, int | None, str, Change]]) -> None:
    """One audit line per changed object (`changes`: `config_changes` of the applied change)."""
    for collection, oid, action, change in changes:
        what = collection if oid is None else f"{collection} {oid}"
        log.info("config change by %s from %s: %s %s: %s", user, address, what, action, _render(change),
                 extra={"audit": {"event": "config_change", "user": user, "address": address,
                                  "collection": collection, "id": oid, "action": action,
                                  "changes": {k: list(v) for k, v in change.items()}}})


def log_failed_login(address: str, user: str | None) -> None:
    log.info("API login failed from %s (user %r)", address, user,
             extra={"audit": {"event": "api_login_failed", "address": address, "user": user}})


def log_level_change(user: str, address: str, old: str, new: str) -> None:
    log.info("log level changed by %s from %s: %s -> %s", user, address, old, new,
             extra={"audit": {"event": "log_level", "user": user, "address": address, "old": old, "new": new}})


def basic_user(header: str | None) -> str | None:
    """The user name of HTTP Basic credentials (RFC 7617), for the audit line; None if none."""
    pair = basic_credentials(header)
    return None if pair is None else pair[0].decode("utf-8", "replace")
