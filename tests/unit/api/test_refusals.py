"""Live refusals name model attributes; the API answers with the wire field (issue #14 item 5)."""

from __future__ import annotations

import pytest

from pyscsi_target.api.refusals import describe, refusal_errors, wire_field
from pyscsi_target.model import ApplyError


@pytest.mark.parametrize(("collection", "attr", "field"), [
    ("extents", "filesize", "iscsi_target_extent_filesize"),
    ("extents", "path", "iscsi_target_extent_path"),
    ("extents", "disk", "iscsi_target_extent_disk"),
    ("portals", "ips", "iscsi_target_portal_ips"),
    ("mappings", "lunid", "iscsi_lunid"),
    ("global", "basename", "iscsi_basename"),
    ("service", "enabled", "srv_enable"),
])
def test_every_attribute_the_server_refuses_maps_to_its_wire_field(collection: str, attr: str, field: str) -> None:
    assert wire_field(collection, attr) == field


@pytest.mark.parametrize(("collection", "attr"), [
    (None, None),  # the change as a whole
    ("extents", None),
    ("extents", "naa"),  # read-only: a client cannot change it, so a refusal cannot name it
    ("extents", "no_such_attribute"),
    ("no_such_collection", "path"),
])
def test_refusals_no_key_shows_are_non_field_errors(collection: str | None, attr: str | None) -> None:
    assert wire_field(collection, attr) == "__all__"


def test_the_body_and_the_line_read_as_a_409_does() -> None:
    message = "Cannot listen on 127.0.0.1:3260: Address already in use"
    exc = ApplyError(message, "portals", 1, "ips")
    assert refusal_errors(exc) == {"iscsi_target_portal_ips": [message]}
    assert describe(exc) == f"iscsi_target_portal_ips: {message}"
    assert "portals 1 ips" in str(exc)  # the model's own wording names the object
