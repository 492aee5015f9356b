"""What the commands print: `--json` prints the API's JSON unchanged (a list for `list`); otherwise
human tables, one row per object, with the columns of `COLUMNS` (secrets are never shown in a
table)."""

from __future__ import annotations

import json
from typing import Any

import click

#: resource -> (header, API field) for `list`'s human table
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "target": [("ID", "id"), ("NAME", "iscsi_target_name"), ("ALIAS", "iscsi_target_alias")],
    "targetgroup": [("ID", "id"), ("TARGET", "iscsi_target"), ("PORTAL-GROUP", "iscsi_target_portalgroup"),
                    ("INITIATOR-GROUP", "iscsi_target_initiatorgroup"), ("AUTH", "iscsi_target_authtype"),
                    ("AUTH-GROUP", "iscsi_target_authgroup")],
    "extent": [("ID", "id"), ("NAME", "iscsi_target_extent_name"), ("TYPE", "iscsi_target_extent_type"),
               ("PATH", "iscsi_target_extent_path"), ("BYTES", "iscsi_target_extent_filesize"),
               ("BLOCK", "iscsi_target_extent_blocksize"), ("RO", "iscsi_target_extent_ro"),
               ("ENABLED", "iscsi_target_extent_enabled")],
    "targettoextent": [("ID", "id"), ("TARGET", "iscsi_target"), ("EXTENT", "iscsi_extent"), ("LUN", "iscsi_lunid")],
    "portal": [("ID", "id"), ("TAG", "iscsi_target_portal_tag"), ("ADDRESSES", "iscsi_target_portal_ips"),
               ("DISCOVERY-AUTH", "iscsi_target_portal_discoveryauthmethod"),
               ("COMMENT", "iscsi_target_portal_comment")],
    "authcredential": [("ID", "id"), ("TAG", "iscsi_target_auth_tag"), ("USER", "iscsi_target_auth_user"),
                       ("PEER-USER", "iscsi_target_auth_peeruser")],
    "authorizedinitiator": [("ID", "id"), ("TAG", "iscsi_target_initiator_tag"),
                            ("INITIATORS", "iscsi_target_initiator_initiators"),
                            ("NETWORKS", "iscsi_target_initiator_auth_network"),
                            ("COMMENT", "iscsi_target_initiator_comment")],
    "lustats": [("TARGET", "target"), ("LUN", "lun"), ("EXTENT", "extent"), ("READS", "read_commands"),
                ("WRITES", "write_commands"), ("OTHER", "other_commands"), ("READ", "read_bytes"),
                ("WRITTEN", "written_bytes"), ("ERRORS", "errors"), ("MEAN-LAT-US", "mean_latency_us")],
    "sessions": [("TSIH", "tsih"), ("INITIATOR", "initiator"), ("FROM", "initiator_addr"), ("TARGET", "target"),
                 ("PORTAL", "target_portal"), ("TYPE", "session_type"), ("CONNS", "connections"),
                 ("COMMANDS", "commands"), ("READ", "read_bytes"), ("WRITTEN", "written_bytes")],
}


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    text = str(value).replace("\n", ",")
    return text if text else "-"


def table(resource: str, rows: list[dict[str, Any]], extra: dict[int, dict[str, str]] | None = None) -> str:
    """Aligned columns; `extra` adds per-row columns keyed by object id (e.g. names for ids)."""
    columns = COLUMNS[resource]
    extra_headers = list(dict.fromkeys(h for values in (extra or {}).values() for h in values))
    header = [h for h, _ in columns] + extra_headers
    body = [[cell(row.get(f)) for _, f in columns] + [(extra or {}).get(row.get("id", -1), {}).get(h, "-")
                                                      for h in extra_headers] for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body])


def emit(data: Any, *, as_json: bool, human: str | None = None) -> None:
    """Print `data` as JSON (unchanged) or the `human` text."""
    if as_json:
        if data is not None:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif human is not None:
        click.echo(human)
