"""List endpoints: paging, ordering and filtering of serialized objects (spec Part B §B.1.4).

- `limit` (default 20; 0 = all, no cap) and `offset`; without `limit`, a Dojo `Range: items=a-b`
  header selects the page. Every list answer carries `Content-Range: items a-b/total`
  (`items */total` for an empty page).
- `?sort(-f1,f2)` (Dojo form) and `?order_by=-f1,f2` sort by response fields; a stable sort on top
  of the resource's default order.
- Any other key must be a response field: an exact-match filter (`?iscsi_target=3`); `null`
  matches null; a list field matches when it contains the value; repeating a key matches any.
- `format=json` is accepted; anything else, or an unknown key, is 400 `{"error": ...}`.

Issue #12: a query that only pages (no filter, no sort) is cut before anything is serialised
(`plain_window`), and rows are serialised once per object version (`RowCache`): a list of 20 at
10,000 objects serialises 20, and `limit=0` serialises only what changed since the last list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from .fields import BOOLEAN, INTEGER, OBJECT, STRING_LIST, Field
from .http import BadRequest

#: FreeNAS/tastypie default page size (spec Part A §1.3).
DEFAULT_LIMIT = 20

_SORT_KEY = re.compile(r"sort\((.*)\)")
_RANGE = re.compile(r"\s*items=(\d{1,18})-(\d{1,18})\s*")
_NUMBER = re.compile(r"\d{1,18}")
_PAGING = ("limit", "offset", "format", "order_by")


@dataclass
class Page:
    items: list[dict[str, Any]]
    offset: int
    total: int

    @property
    def content_range(self) -> str:
        if not self.items:
            return f"items */{self.total}"
        return f"items {self.offset}-{self.offset + len(self.items) - 1}/{self.total}"


def check_format(args: MultiDict[str, str]) -> None:
    """`?format=json` is the only format served (spec Part A §1.4)."""
    fmt = args.get("format")
    if fmt is not None and fmt != "json":
        raise BadRequest(f"The format '{fmt}' is not supported; only json is served.")


def _natural(args: MultiDict[str, str], name: str) -> int | None:
    text = args.get(name)
    if text is None:
        return None
    if not _NUMBER.fullmatch(text.strip()):
        raise BadRequest(f"Invalid {name} '{text}' provided. Please provide a positive integer >= 0.")
    return int(text)


def _window(args: MultiDict[str, str], range_header: str | None) -> tuple[int, int | None]:
    """(offset, limit or None for all). An unparsable Range header is ignored (RFC 9110 §14.2)."""
    limit = _natural(args, "limit")
    offset = _natural(args, "offset") or 0
    if limit is None and range_header is not None:
        match = _RANGE.fullmatch(range_header)
        if match and int(match.group(2)) >= int(match.group(1)):
            first, last = int(match.group(1)), int(match.group(2))
            return first, last - first + 1
    if limit is None:
        limit = DEFAULT_LIMIT
    return offset, (limit or None)


def _sort_keys(args: MultiDict[str, str]) -> list[str]:
    keys: list[str] = []
    for key, value in args.items(multi=True):
        match = _SORT_KEY.fullmatch(key)
        if match:
            keys += match.group(1).split(",")
        elif key == "order_by":
            keys += value.split(",")
    # "+" in a query string decodes to a space: both mean ascending.
    return [k.strip(" +") if not k.strip().startswith("-") else k.strip() for k in keys if k.strip(" +")]


def _filter_value(field: Field, text: str) -> Any:
    if field.kind == OBJECT:
        raise BadRequest(f"The '{field.name}' field does not allow filtering.")
    if text == "null" and field.null_in_output:
        return None
    if field.kind == INTEGER:
        if not re.fullmatch(r"-?\d{1,18}", text):
            raise BadRequest(f"Invalid value '{text}' for the '{field.name}' filter.")
        return int(text)
    if field.kind == BOOLEAN:
        if text.lower() not in ("true", "false", "1", "0"):
            raise BadRequest(f"Invalid value '{text}' for the '{field.name}' filter.")
        return text.lower() in ("true", "1")
    return text


def _matches(field: Field, value: Any, wanted: list[Any]) -> bool:
    if field.kind == STRING_LIST:
        return any(w in value for w in wanted)
    return value in wanted


def _filters(fields: Mapping[str, Field], args: MultiDict[str, str]) -> dict[str, list[Any]]:
    filters: dict[str, list[Any]] = {}
    for key in args:
        if key in _PAGING or _SORT_KEY.fullmatch(key):
            continue
        field = fields.get(key)
        if field is None:
            raise BadRequest(f"Unknown query parameter '{key}'.")
        filters[key] = [_filter_value(field, v) for v in args.getlist(key)]
    return filters


def _sorted(fields: Mapping[str, Field], rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    for key in reversed(keys):
        name = key.lstrip("-")
        field = fields.get(name)
        if field is None or field.kind == OBJECT:
            raise BadRequest(f"Cannot sort by '{name}'.")
        rows = sorted(rows, key=lambda r: (r[name] is None, r[name]), reverse=key.startswith("-"))
    return rows


def plain_window(
    fields: tuple[Field, ...], args: MultiDict[str, str], range_header: str | None
) -> tuple[int, int | None] | None:
    """(offset, limit or None) when the query only pages: the caller cuts its objects, already in
    default order, before serialising them. None when it filters or sorts (then `paginate`).
    Refuses what `paginate` refuses."""
    by_name = {f.name: f for f in fields if not f.write_only}
    check_format(args)
    if _filters(by_name, args) or _sort_keys(args):
        return None
    return _window(args, range_header)


@dataclass
class _Row:
    obj: Any
    static: dict[str, Any]
    #: the runtime fields' values the JSON text was made with, and that text
    runtime: tuple[Any, ...] | None = None
    text: str = ""


class RowCache:
    """Serialised rows of one resource, kept per object: configuration objects are replaced,
    never changed, when a change is applied (model/draft.py), so a row is valid while its object
    is the one served. Fields read from the live target (`Field.runtime`) are read every time;
    the row's JSON text is kept with the runtime values it was made with."""

    def __init__(self, fields: tuple[Field, ...]) -> None:
        self.static = tuple(f for f in fields if not f.write_only and not f.runtime)
        self.runtime = tuple(f for f in fields if not f.write_only and f.runtime)
        self._rows: dict[int, _Row] = {}

    def _row(self, obj: Any) -> _Row:
        row = self._rows.get(obj.id)
        if row is None or row.obj is not obj:
            row = self._rows[obj.id] = _Row(obj, {f.name: f.read(obj) for f in self.static})
        return row

    def _prune(self, total: int) -> None:
        if len(self._rows) > 2 * total + 64:  # deleted objects' rows
            self._rows.clear()

    def rows(self, objects: Iterable[Any], total: int) -> list[dict[str, Any]]:
        """The rows of `objects` (of a collection holding `total` objects)."""
        self._prune(total)
        out = []
        for obj in objects:
            row = self._row(obj).static
            if self.runtime:
                row = {**row, **{f.name: f.read(obj) for f in self.runtime}}
            out.append(row)
        return out

    def json_text(self, objects: Iterable[Any], total: int) -> str:
        """`json.dumps(self.rows(objects, total), sort_keys=True)`, from the rows' kept texts."""
        self._prune(total)
        parts = []
        for obj in objects:
            row = self._row(obj)
            runtime = tuple(f.read(obj) for f in self.runtime)
            if row.runtime != runtime or not row.text:
                values = {**row.static, **{f.name: v for f, v in zip(self.runtime, runtime, strict=True)}}
                row.text, row.runtime = json.dumps(values, sort_keys=True), runtime
            parts.append(row.text)
        return "[" + ", ".join(parts) + "]"


def paginate(
    fields: tuple[Field, ...], rows: list[dict[str, Any]], args: MultiDict[str, str], range_header: str | None
) -> Page:
    """Filter, sort and cut `rows` (already in default order) as the query asks."""
    by_name = {f.name: f for f in fields if not f.write_only}
    check_format(args)
    filters = _filters(by_name, args)
    offset, limit = _window(args, range_header)
    rows = [r for r in rows if all(_matches(by_name[k], r[k], w) for k, w in filters.items())]
    rows = _sorted(by_name, rows, _sort_keys(args))
    end = None if limit is None else offset + limit
    return Page(rows[offset:end], offset, len(rows))
