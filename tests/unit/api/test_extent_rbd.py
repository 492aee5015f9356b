"""RBD extents through the API (issue #15 item 2): `"iscsi_target_extent_type": "RBD"` with the
image as `pool/image` in `iscsi_target_extent_path`; the names, the size, one image one extent.
Whether the image exists is the server's question at apply time (tests/rbd/test_rbd_server.py)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Api, P

PATH = "iscsi_target_extent_path"
SIZE = "iscsi_target_extent_filesize"
NAME_RULE = ('Name the image as pool/image: letters, digits, ".", "_" and "-", each part starting with a '
             "letter or digit, at most 100 characters.")


def rbd(name: str, image: str, **more: Any) -> dict[str, Any]:
    return {"iscsi_target_extent_name": name, "iscsi_target_extent_type": "RBD", PATH: image, **more}


async def test_an_rbd_extent_is_accepted_and_shown_as_given(api: Api) -> None:
    got = await api.ok("POST", f"{P}/extent/", rbd("r1", "rbd/vm-disk_1.a", **{SIZE: "1GB"}), status=201)
    assert (got["iscsi_target_extent_type"], got[PATH], got[SIZE]) == ("RBD", "rbd/vm-disk_1.a", str(1 << 30))
    assert got["iscsi_target_extent_naa"].startswith("0x6589cfc")


@pytest.mark.parametrize("image", ["", "image", "/rbd/image", "rbd/", "rbd/a/b", "rbd/im@snap", "rbd/.hidden",
                                   "rbd/a b", "rbd/" + "x" * 101, "../etc/passwd"])
async def test_image_names_are_pool_slash_image(api: Api, image: str) -> None:
    body = rbd("r1", image)
    errors = await api.conflict("POST", f"{P}/extent/", body)
    assert errors == {PATH: ["This field is required." if not image else NAME_RULE]}


async def test_the_size_is_whole_blocks(api: Api) -> None:
    errors = await api.conflict("POST", f"{P}/extent/", rbd("r1", "rbd/a", **{SIZE: "1000",
                                                                              "iscsi_target_extent_blocksize": 4096}))
    assert errors == {SIZE: ["File size must be a multiple of block size"]}


async def test_one_image_serves_one_extent(api: Api) -> None:
    await api.ok("POST", f"{P}/extent/", rbd("first", "rbd/shared"), status=201)
    errors = await api.conflict("POST", f"{P}/extent/", rbd("second", "rbd/shared"))
    assert errors == {PATH: ['RBD image "rbd/shared" is already used by extent "first".']}
    await api.ok("POST", f"{P}/extent/", rbd("third", "other/shared"), status=201)  # another pool


async def test_the_openapi_document_names_the_type_and_the_image_field(api: Api) -> None:
    doc = await api.ok("GET", "/api/v1.0/openapi.json")
    fields = doc["components"]["schemas"]["Extent"]["properties"]
    assert fields["iscsi_target_extent_type"]["enum"] == ["File", "Disk", "ZVOL", "RBD"]
    assert "RBD: the image as pool/image" in fields[PATH]["description"]
