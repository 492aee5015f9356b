"""Field tables: one `Field` per API key, the single source for parsing, output and the OpenAPI schema.

A field knows its JSON type, default, whether it may be null, its choices, length and range and
the Django message FreeNAS gave for each kind of bad value (spec Part A §3.1). `coerce` turns a
request body into typed values (or field errors), `serialize` turns a model object into a response
object, and api/openapi.py builds the schemas from the same tables, so the three cannot drift.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

Errors = dict[str, list[str]]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a field that a create must carry.
REQUIRED: Final = _Required()

STRING = "string"
INTEGER = "integer"
BOOLEAN = "boolean"
STRING_LIST = "string_list"
OBJECT = "object"

MSG_REQUIRED = "This field is required."
MSG_INTEGER = "Enter a whole number."
MSG_STRING = "Enter a text value."
MSG_LIST = "Enter a list of values."

_INT_RE = re.compile(r"\s*[-+]?[0-9]{1,30}\s*")
_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


@dataclass(frozen=True)
class Field:
    """One key of a resource's JSON object."""

    name: str
    kind: str
    description: str
    #: model attribute read and written by default; None for keys the resource maps itself
    attr: str | None = None
    default: Any = REQUIRED
    nullable: bool = False
    #: whether responses may carry null (default: same as `nullable`)
    output_nullable: bool | None = None
    read_only: bool = False
    #: accepted on input, never returned (the extent's `disk`)
    write_only: bool = False
    choices: tuple[Any, ...] | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    #: message for a value that is not a whole number, and for one out of range (LUN ids)
    type_message: str = MSG_INTEGER
    range_message: str | None = None
    #: strip surrounding whitespace, as Django's CharField does (not for secrets)
    strip: bool = True
    #: get the output value from the model object (default: the attribute)
    output: Callable[[Any], Any] | None = None
    #: a fact of the running target, not configuration (the extent's state): left out of backups
    runtime: bool = False
    #: the model attribute a key without `attr` shows (the resource maps it itself): a live
    #: refusal about that attribute names this key (api/refusals.py)
    shows: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def null_in_output(self) -> bool:
        return self.nullable if self.output_nullable is None else self.output_nullable

    def read(self, obj: Any) -> Any:
        if self.output is not None:
            return self.output(obj)
        return getattr(obj, self.attr or self.name)


def _integer(value: Any, field: Field) -> int:
    if isinstance(value, bool):
        raise ValueError(field.type_message)
    if isinstance(value, float):
        # Django's IntegerField accepts 512.0; NaN, infinities and fractions are not whole numbers.
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(field.type_message)
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    raise ValueError(field.type_message)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE
    # Django's model BooleanField message.
    raise ValueError(f"'{value}' value must be either True or False.")


def _string(value: Any, field: Field) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(MSG_STRING)
    text = value if isinstance(value, str) else str(value)
    return text.strip() if field.strip else text


def _check_bounds(value: Any, field: Field) -> None:
    """Django's length and range messages (spec Part A §3.1), or the field's own range message."""
    limit = field.max_length
    if limit is not None and len(value) > limit:
        raise ValueError(f"Ensure this value has at most {limit} characters (it has {len(value)}).")
    low, high = field.minimum, field.maximum
    if low is not None and value < low:
        raise ValueError(field.range_message or f"Ensure this value is greater than or equal to {low}.")
    if high is not None and value > high:
        raise ValueError(field.range_message or f"Ensure this value is less than or equal to {high}.")


def parse_value(field: Field, value: Any) -> Any:
    """One non-null JSON value -> the typed value, or ValueError with the client's message."""
    if field.kind == INTEGER:
        out: Any = _integer(value, field)
    elif field.kind == BOOLEAN:
        out = _boolean(value)
    elif field.kind == STRING_LIST:
        if not isinstance(value, list):
            raise ValueError(MSG_LIST)
        out = [_string(v, field) for v in value]
    else:
        out = _string(value, field)
        if field.required and not out:
            raise ValueError(MSG_REQUIRED)
    if field.choices is not None and out not in field.choices:
        raise ValueError(f"Select a valid choice. {out} is not one of the available choices.")
    if field.kind in (INTEGER, STRING):
        _check_bounds(out, field)
    return out


def _one(field: Field, value: Any) -> Any:
    """Null clears an optional field (its default) and fails a required one (spec Part B §B.1.3)."""
    if value is None:
        if field.nullable:
            return None
        if field.required:
            raise ValueError(MSG_REQUIRED)
        return field.default
    return parse_value(field, value)


def coerce(
    fields: tuple[Field, ...], body: Mapping[str, Any], *, partial: bool
) -> tuple[dict[str, Any], Errors]:
    """Typed values for the writable fields in `body`; with partial=False also defaults and
    "required" errors for absent ones. Read-only and unknown keys are ignored (Part B §B.1.3)."""
    values: dict[str, Any] = {}
    errors: Errors = {}
    for field in fields:
        if field.read_only:
            continue
        if field.name not in body:
            if partial:
                continue
            if field.required:
                errors[field.name] = [MSG_REQUIRED]
            else:
                values[field.name] = field.default
            continue
        try:
            values[field.name] = _one(field, body[field.name])
        except ValueError as exc:
            errors[field.name] = [str(exc)]
    return values, errors


def assign(fields: tuple[Field, ...], obj: Any, values: Mapping[str, Any]) -> None:
    """Write the values of fields that map to a model attribute onto `obj`."""
    for field in fields:
        if field.attr is not None and field.name in values:
            setattr(obj, field.attr, values[field.name])


def serialize(fields: tuple[Field, ...], obj: Any) -> dict[str, Any]:
    return {f.name: f.read(obj) for f in fields if not f.write_only}
