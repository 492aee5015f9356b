"""api/audit.py: configuration changes field by field, secrets masked; failed logins."""

from __future__ import annotations

import logging

import pytest

from pyscsi_target.api.audit import MASK, config_changes
from pyscsi_target.model import AuthCredential, Config

from .conftest import Api, P, basic


def test_changes_are_field_by_field_and_secrets_masked() -> None:
    old = Config()
    old.auths[1] = AuthCredential(1, tag=1, user="a", secret="s3cret-secret")
    new = old.copy()
    new.auths[1].secret = "other-secret1"
    new.auths[2] = AuthCredential(2, tag=2, user="b", secret="x" * 12, peersecret="y" * 12)
    del new.auths[1]
    new.service.enabled = False
    changes = config_changes(old, new)
    assert ("service", None, "updated", {"enabled": (True, False)}) in changes
    [(_, _, action, deleted)] = [c for c in changes if c[1] == 1]
    assert action == "deleted" and deleted["secret"] == (MASK, None)
    [(_, _, action, created)] = [c for c in changes if c[1] == 2]
    assert action == "created" and created["peersecret"] == (None, MASK) and created["user"] == (None, "b")


async def test_api_changes_and_failed_logins_are_audited(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pyscsi_target.audit")
    body = {"iscsi_target_auth_tag": 1, "iscsi_target_auth_user": "u", "iscsi_target_auth_secret": "abcdefghijkl"}
    await api.ok("POST", f"{P}/authcredential/", body, status=201)
    response = await api.call("GET", f"{P}/target/", headers=basic("root", "wrong"))
    assert response.status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "pyscsi_target.audit"]
    assert any(line.startswith("config change by root from ") and "auths 1 created" in line
               and MASK in line for line in lines), lines
    assert any(line.startswith("API login failed from ") and "'root'" in line for line in lines), lines
    assert not any("abcdefghijkl" in line or "wrong" in line for line in lines)
