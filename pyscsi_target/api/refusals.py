"""A live refusal (`model.ApplyError`) as the client sees it: a 409 body naming the wire field.

The server names what it could not apply in model terms (collection, object id, model attribute,
issue #14 item 5); the field tables are the one place that knows which API key shows which model
attribute (`Field.attr`, or `Field.shows` for keys a resource maps itself), so the translation
lives here, next to them. A refusal of the change as a whole, or of an attribute no key shows,
is a non-field error (`__all__`).
"""

from __future__ import annotations

from ..model.control import ApplyError
from ..model.validation import NON_FIELD
from . import tables
from .fields import Errors, Field
from .resources import RESOURCES

#: Config collection (and "global", "service") -> its field table
_TABLES: dict[str, tuple[Field, ...]] = {res.collection: res.fields for res in RESOURCES} | {
    "service": tables.SERVICE,
}


def wire_field(collection: str | None, attr: str | None) -> str:
    """The API key that shows model attribute `attr` of the `collection`'s objects."""
    if collection is None or attr is None:
        return NON_FIELD
    for field in _TABLES.get(collection, ()):
        if attr in (field.attr, field.shows) and not field.read_only:
            return field.name
    return NON_FIELD


def refusal_errors(exc: ApplyError) -> Errors:
    """The 409 body of a refused apply: {API field: [message]}."""
    return {wire_field(exc.collection, exc.attr): [exc.message]}


def describe(exc: ApplyError) -> str:
    """One line, as a `ConfigError` with the same body reads: "<field>: <message>"."""
    return "; ".join(f"{k}: {' '.join(v)}" for k, v in refusal_errors(exc).items())
