"""Lists: limit/offset/limit=0, Content-Range, the Dojo Range header, ordering and filters."""

from __future__ import annotations

import pytest

from . import builders as b
from .conftest import Api, P


async def _targets(api: Api, count: int) -> None:
    # Created in reverse name order so that id order and name order differ.
    for i in reversed(range(count)):
        await b.target(api, f"t{i:02d}")


async def _names(api: Api, query: str) -> tuple[list[str], str]:
    response = await api.call("GET", f"{P}/target/{query}")
    assert response.status_code == 200, await response.get_data()
    return [t["iscsi_target_name"] for t in await response.get_json()], response.headers["Content-Range"]


async def test_default_page_is_20_ordered_by_name(api: Api) -> None:
    await _targets(api, 25)
    names, content_range = await _names(api, "")
    assert names == [f"t{i:02d}" for i in range(20)]
    assert content_range == "items 0-19/25"


async def test_limit_offset_and_limit_zero(api: Api) -> None:
    await _targets(api, 25)
    assert await _names(api, "?limit=5&offset=3") == ([f"t{i:02d}" for i in range(3, 8)], "items 3-7/25")
    names, content_range = await _names(api, "?limit=0")
    assert len(names) == 25 and content_range == "items 0-24/25"
    assert await _names(api, "?offset=24") == (["t24"], "items 24-24/25")
    assert await _names(api, "?offset=30") == ([], "items */25")
    assert len((await _names(api, "?limit=1000"))[0]) == 25


@pytest.mark.parametrize("query", ["?limit=-1", "?limit=abc", "?offset=-2", "?offset=x", "?limit=1.5",
                                   "?limit=" + "9" * 40])
async def test_bad_limit_or_offset_is_400(api: Api, query: str) -> None:
    response = await api.call("GET", f"{P}/target/{query}")
    assert response.status_code == 400
    assert "Invalid" in (await response.get_json())["error"]


async def test_dojo_range_header_pages_when_there_is_no_limit(api: Api) -> None:
    await _targets(api, 10)
    response = await api.call("GET", f"{P}/target/", headers={"Range": "items=2-4"})
    assert [t["iscsi_target_name"] for t in await response.get_json()] == ["t02", "t03", "t04"]
    assert response.headers["Content-Range"] == "items 2-4/10"
    limited = await api.call("GET", f"{P}/target/?limit=1", headers={"Range": "items=2-4"})
    assert len(await limited.get_json()) == 1  # limit wins
    for bad in ("items=4-2", "bytes=0-10", "items=a-b"):  # unparsable ranges are ignored (RFC 9110 §14.2)
        ignored = await api.call("GET", f"{P}/target/", headers={"Range": bad})
        assert ignored.headers["Content-Range"] == "items 0-9/10"


async def test_sort_and_order_by(api: Api) -> None:
    await _targets(api, 3)  # ids: t02=1, t01=2, t00=3
    assert (await _names(api, "?sort(-iscsi_target_name)"))[0] == ["t02", "t01", "t00"]
    assert (await _names(api, "?order_by=-iscsi_target_name"))[0] == ["t02", "t01", "t00"]
    assert (await _names(api, "?sort(id)"))[0] == ["t02", "t01", "t00"]
    assert (await _names(api, "?sort(%2Bid)"))[0] == ["t02", "t01", "t00"]
    assert (await _names(api, "?order_by=-id"))[0] == ["t00", "t01", "t02"]


async def test_sort_on_several_keys_and_nulls(api: Api) -> None:
    await b.target(api, "c", iscsi_target_alias="x")
    await b.target(api, "a")
    await b.target(api, "b", iscsi_target_alias="y")
    assert (await _names(api, "?sort(iscsi_target_alias,-iscsi_target_name)"))[0] == ["c", "b", "a"]
    assert (await _names(api, "?order_by=-iscsi_target_alias,iscsi_target_name"))[0] == ["a", "b", "c"]


@pytest.mark.parametrize("query", ["?sort(nope)", "?order_by=-nope", "?nope=1", "?iscsi_target_extent_name=x"])
async def test_unknown_sort_or_filter_key_is_400(api: Api, query: str) -> None:
    response = await api.call("GET", f"{P}/target/{query}")
    assert response.status_code == 400
    assert "nope" in (await response.get_json())["error"] or "iscsi_target_extent_name" in (
        await response.get_json()
    )["error"]


async def test_exact_match_filters(api: Api) -> None:
    await _targets(api, 3)
    await b.portal(api)
    await b.extent(api, "e1")
    await b.extent(api, "e2")
    await b.mapping(api, 1, 1)
    await b.mapping(api, 2, 2)
    await b.mapping(api, 1, 2)
    rows = await api.ok("GET", f"{P}/targettoextent/?iscsi_target=1")
    assert sorted(r["iscsi_extent"] for r in rows) == [1, 2]
    rows = await api.ok("GET", f"{P}/targettoextent/?iscsi_target=1&iscsi_extent=2")
    assert [(r["iscsi_target"], r["iscsi_extent"]) for r in rows] == [(1, 2)]
    rows = await api.ok("GET", f"{P}/targettoextent/?iscsi_target=1&iscsi_target=2")
    assert len(rows) == 3  # a repeated key matches any of its values
    assert (await _names(api, "?iscsi_target_name=t01"))[0] == ["t01"]
    assert (await _names(api, "?iscsi_target_alias=null"))[0] == ["t00", "t01", "t02"]
    assert await api.ok("GET", f"{P}/extent/?iscsi_target_extent_ro=false&iscsi_target_extent_name=e2") != []
    assert await api.ok("GET", f"{P}/extent/?iscsi_target_extent_ro=true") == []
    assert len(await api.ok("GET", f"{P}/portal/?iscsi_target_portal_ips=0.0.0.0:3260")) == 1
    assert (await api.call("GET", f"{P}/targettoextent/?iscsi_target=one")).status_code == 400
    assert (await api.call("GET", f"{P}/extent/?iscsi_target_extent_ro=perhaps")).status_code == 400


async def test_write_only_fields_are_not_filters(api: Api) -> None:
    assert (await api.call("GET", f"{P}/extent/?iscsi_target_extent_disk=zvol/tank/x")).status_code == 400


async def test_mappings_are_ordered_by_target_name_then_lun(api: Api) -> None:
    await b.target(api, "zzz")
    await b.target(api, "aaa")
    for name in ("e1", "e2", "e3"):
        await b.extent(api, name)
    await b.mapping(api, 1, 1, lunid=0)
    await b.mapping(api, 2, 2, lunid=5)
    await b.mapping(api, 2, 3, lunid=1)
    rows = await api.ok("GET", f"{P}/targettoextent/")
    assert [(r["iscsi_target"], r["iscsi_lunid"]) for r in rows] == [(2, 1), (2, 5), (1, 0)]


async def test_extents_are_ordered_by_name_and_the_others_by_id(api: Api) -> None:
    await b.extent(api, "b")
    await b.extent(api, "a")
    assert [e["iscsi_target_extent_name"] for e in await api.ok("GET", f"{P}/extent/")] == ["a", "b"]
    await b.credential(api, tag=2, user="zed")
    await b.credential(api, tag=1, user="amy")
    assert [c["id"] for c in await api.ok("GET", f"{P}/authcredential/")] == [1, 2]


async def test_sessions_list_pages_and_filters(api: Api) -> None:
    from pyscsi_target.model import SessionInfo

    api.control.live_sessions = [
        SessionInfo("iqn.1993-08.org.debian:01:b", "127.0.0.1:5001", "iqn.x:t", "127.0.0.1:3260",
                    "400001370000", 2, "Normal", 1, {"MaxBurstLength": "262144"}, 10, 4096, 512),
        SessionInfo("iqn.1993-08.org.debian:01:a", "127.0.0.1:5000", "iqn.x:t", "127.0.0.1:3260",
                    "400001370001", 1, "Normal", 2),
    ]
    rows = await api.ok("GET", f"{P}/sessions/")
    assert [r["tsih"] for r in rows] == [1, 2]
    assert rows[1]["parameters"] == {"MaxBurstLength": "262144"}
    assert rows[1]["read_bytes"] == 4096 and rows[1]["written_bytes"] == 512 and rows[1]["commands"] == 10
    assert [r["tsih"] for r in await api.ok("GET", f"{P}/sessions/?tsih=2")] == [2]
    assert (await api.call("GET", f"{P}/sessions/?parameters=x")).status_code == 400
    assert (await api.call("GET", f"{P}/sessions/?sort(parameters)")).status_code == 400


# ---- issue #12: rows kept per object version ---------------------------------------------------


def test_kept_rows_answer_exactly_what_serialising_answers() -> None:
    """The kept JSON text of a row is json.dumps of the row; a replaced object, or a runtime
    field whose value changed, is serialised again."""
    import json

    from pyscsi_target.api.fields import INTEGER, STRING, Field
    from pyscsi_target.api.listing import RowCache
    from pyscsi_target.model import Target

    problems: dict[int, str] = {}
    fields = (
        Field("id", INTEGER, "id", attr="id", read_only=True),
        Field("iscsi_target_name", STRING, "name", attr="name"),
        Field("state", STRING, "runtime", read_only=True, nullable=True, runtime=True,
              output=lambda t: problems.get(t.id)),
    )
    cache = RowCache(fields)
    objs = [Target(i, name=f"t{i}") for i in range(1, 4)]
    expected = [{"id": t.id, "iscsi_target_name": t.name, "state": None} for t in objs]
    assert json.loads(cache.json_text(objs, 3)) == expected == cache.rows(objs, 3)
    assert cache.json_text(objs, 3) == json.dumps(expected, sort_keys=True)
    problems[2] = "cannot open"
    objs[0] = Target(1, name="renamed")  # a change replaces the object
    rows = json.loads(cache.json_text(objs, 3))
    assert [r["iscsi_target_name"] for r in rows] == ["renamed", "t2", "t3"]
    assert [r["state"] for r in rows] == [None, "cannot open", None]
    assert cache.json_text([], 3) == "[]"
