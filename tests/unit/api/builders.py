"""Valid request bodies for each resource, and helpers that create whole object graphs."""

from __future__ import annotations

from typing import Any

from .conftest import Api, P


async def portal(api: Api, *ips: str, **extra: Any) -> dict[str, Any]:
    body = {"iscsi_target_portal_ips": list(ips or ["0.0.0.0:3260"]), **extra}
    return dict(await api.ok("POST", f"{P}/portal/", body, status=201))


async def initiator(api: Api, **extra: Any) -> dict[str, Any]:
    return dict(await api.ok("POST", f"{P}/authorizedinitiator/", extra, status=201))


async def credential(api: Api, tag: int = 1, user: str = "user", **extra: Any) -> dict[str, Any]:
    body = {"iscsi_target_auth_tag": tag, "iscsi_target_auth_user": user,
            "iscsi_target_auth_secret": "secretsecret12", **extra}
    return dict(await api.ok("POST", f"{P}/authcredential/", body, status=201))


async def target(api: Api, name: str = "target1", **extra: Any) -> dict[str, Any]:
    body = {"iscsi_target_name": name, **extra}
    return dict(await api.ok("POST", f"{P}/target/", body, status=201))


async def group(api: Api, target_id: int, portal_id: int, **extra: Any) -> dict[str, Any]:
    body = {"iscsi_target": target_id, "iscsi_target_portalgroup": portal_id, **extra}
    return dict(await api.ok("POST", f"{P}/targetgroup/", body, status=201))


def file_extent_body(api: Api, name: str, size: Any = "1MB", **extra: Any) -> dict[str, Any]:
    return {
        "iscsi_target_extent_name": name,
        "iscsi_target_extent_type": "File",
        "iscsi_target_extent_path": str(api.roots / f"{name}.img"),
        "iscsi_target_extent_filesize": size,
        **extra,
    }


async def extent(api: Api, name: str = "ext1", **extra: Any) -> dict[str, Any]:
    return dict(await api.ok("POST", f"{P}/extent/", file_extent_body(api, name, **extra), status=201))


async def mapping(api: Api, target_id: int, extent_id: int, lunid: Any = None, **extra: Any) -> dict[str, Any]:
    body = {"iscsi_target": target_id, "iscsi_extent": extent_id, **extra}
    if lunid is not None:
        body["iscsi_lunid"] = lunid
    return dict(await api.ok("POST", f"{P}/targettoextent/", body, status=201))
