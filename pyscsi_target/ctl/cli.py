"""The commands of `pyscsi-targetctl [--api URL] [--password-file FILE] [--json] NOUN VERB [ARGS]`
(issue #13 item 4), on click.

Nouns: `status`, `target`, `extent`, `lun`, `portal`, `chap`, `initiator`, `session`. Targets and
extents are named by name or id. Exit statuses: 0 done; 1 refused by the API (each field and
message on stderr); 2 usage (click); 3 the API cannot be reached. Secrets are read from files
(`--secret-file FILE`, `-` for stdin), never taken from the command line, where `ps` and the shell
history would show them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import click
from prometheus_client.parser import text_string_to_metric_families

from .. import __version__
from .http import Api, Refused
from .output import emit, table

#: `--api` default: the server's default API address (server.options.DEFAULT_API_ADDRESS)
DEFAULT_API_URL = "http://127.0.0.1:8080"
#: `--password-file` default: where the server generates the password (DEFAULT_DATA_DIR/api-password)
DEFAULT_PASSWORD_FILE = "./pyscsi-data/api-password"
#: auth methods of target groups and portals (spec Part A §2.6)
AUTH_METHODS = ("None", "CHAP", "CHAP Mutual")
#: "10G", "512M", "1TiB", "100MB" -> the API's 1024-based "10GB" ...
_SIZE = re.compile(r"^\s*(?P<n>\d+)\s*(?P<unit>[KMGTP])(?:i?B)?\s*$", re.IGNORECASE)


@dataclass
class Ctl:
    """The global options; the API client is made on first use (so `--help` needs no password)."""

    url: str
    password_file: str
    cacert: str | None
    insecure: bool
    as_json: bool
    _api: Api | None = field(default=None, repr=False)

    @property
    def api(self) -> Api:
        if self._api is None:
            if not self.url.startswith(("http://", "https://")):
                raise click.BadParameter(f"{self.url!r} is not an http:// or https:// URL", param_hint="--api")
            try:
                with open(self.password_file, encoding="utf-8") as f:
                    password = f.readline().strip()
            except OSError as exc:
                raise click.BadParameter(f"cannot read {self.password_file}: {exc.strerror}",
                                         param_hint="--password-file") from exc
            if not password:
                raise click.BadParameter(f"{self.password_file} is empty", param_hint="--password-file")
            self._api = Api(self.url, password, cacert=self.cacert, insecure=self.insecure)
        return self._api

    def show(self, resource: str, data: Any, rows: list[dict[str, Any]] | None = None,
             extra: dict[int, dict[str, str]] | None = None) -> None:
        """`data` as JSON, or `rows` (default: `data` as one row or a list) as a table."""
        if rows is None:
            rows = data if isinstance(data, list) else [data]
        emit(data, as_json=self.as_json, human=table(resource, rows, extra))

    def done(self, text: str) -> None:
        """A human confirmation for verbs whose API answer is empty (deletes)."""
        if not self.as_json:
            click.echo(text)


pass_ctl = click.make_pass_decorator(Ctl)


def lookup(api: Api, resource: str, name_field: str, ref: str, what: str) -> dict[str, Any]:
    """The object named `ref`, else the object with id `ref`; `Refused` if neither exists."""
    found = api.objects(resource, **{name_field: ref})
    if found:
        return found[0]
    if ref.isdigit():
        obj: dict[str, Any] = api.request("GET", f"/services/iscsi/{resource}/{ref}/", not_found=f"no {what} {ref}")
        return obj
    raise Refused(f"no {what} named {ref!r}")


def by_id(api: Api, resource: str, oid: int, what: str) -> dict[str, Any]:
    obj: dict[str, Any] = api.request("GET", f"/services/iscsi/{resource}/{oid}/", not_found=f"no {what} with id {oid}")
    return obj


def read_secret(source: Any) -> str:
    """The first line of a secret file, without its line ending (secrets are not stripped: spaces count)."""
    line = source.readline()
    return str(line).rstrip("\r\n")


def api_size(text: str) -> str:
    m = _SIZE.match(text)
    return f"{m['n']}{m['unit'].upper()}B" if m else text.strip()


# ---- the command line ---------------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api", "url", default=DEFAULT_API_URL, show_default=True, metavar="URL",
              help="the server's API (http://HOST:PORT or https://HOST:PORT)")
@click.option("--password-file", default=DEFAULT_PASSWORD_FILE, show_default=True, metavar="FILE",
              help="file holding the API password of root (the server's DATA_DIR/api-password)")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="PEM certificate(s) to trust for an https:// --api")
@click.option("--insecure", is_flag=True, help="https:// without verifying the certificate (testing only)")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON instead of tables")
@click.version_option(__version__, prog_name="pyscsi-targetctl")
@click.pass_context
def cli(ctx: click.Context, url: str, password_file: str, cacert: str | None, insecure: bool, as_json: bool) -> None:
    """Manage a running pyscsi-target through its v1.0 API.

    Exit status: 0 done, 1 refused by the API (the field and message on stderr), 2 usage error,
    3 the API cannot be reached."""
    ctx.obj = Ctl(url, password_file, cacert, insecure, as_json)


@cli.command()
@pass_ctl
def status(ctl: Ctl) -> None:
    """Version, service state, portals, and how many targets, extents and sessions there are."""
    api = ctl.api
    version = api.request("GET", "/system/version/")
    service = api.request("GET", "/services/services/iscsitarget/")
    portals = api.objects("portal")
    counts = {"targets": len(api.objects("target")), "extents": len(api.objects("extent")),
              "sessions": len(api.objects("sessions"))}
    data = {"version": version, "service": service, "portals": portals, "counts": counts}
    addresses = ", ".join(ip for p in portals for ip in p["iscsi_target_portal_ips"]) or "none"
    human = "\n".join([
        f"version   {version['fullversion']} at {api.url}",
        f"service   {service['srv_state']} ({'enabled' if service['srv_enable'] else 'disabled'})",
        f"portals   {addresses}",
        *(f"{k:<9} {v}" for k, v in counts.items()),
    ])
    emit(data, as_json=ctl.as_json, human=human)


# ---- targets ---------------------------------------------------------------------------------------

@cli.group()
def target() -> None:
    """iSCSI targets (each with its target group: portal group, initiator group, authentication)."""


def _target_iqns(api: Api, targets: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    basename = api.request("GET", "/services/iscsi/globalconfiguration/")["iscsi_basename"]
    out = {}
    for t in targets:
        name = t["iscsi_target_name"]
        out[t["id"]] = {"IQN": name if name.startswith(("iqn.", "eui.", "naa.")) else f"{basename}:{name}"}
    return out


@target.command("list")
@pass_ctl
def target_list(ctl: Ctl) -> None:
    """Every target, with its IQN."""
    targets = ctl.api.objects("target")
    ctl.show("target", targets, extra=None if ctl.as_json else _target_iqns(ctl.api, targets))


@target.command("create")
@click.argument("name")
@click.option("--alias", help="target alias")
@click.option("--portal-group", type=int, metavar="ID",
              help="portal (group) id the target is offered on [default: the only portal]")
@click.option("--initiator-group", type=int, metavar="ID", help="authorized initiator id allowed to log in")
@click.option("--auth-method", type=click.Choice(AUTH_METHODS), default="None", show_default=True)
@click.option("--auth-group", type=int, metavar="TAG", help="CHAP credentials tag (with --auth-method CHAP...)")
@pass_ctl
def target_create(ctl: Ctl, name: str, alias: str | None, portal_group: int | None, initiator_group: int | None,
                  auth_method: str, auth_group: int | None) -> None:
    """Create target NAME and its target group (on --portal-group, or on the only portal)."""
    api = ctl.api
    if portal_group is None:
        portals = api.objects("portal")
        if len(portals) != 1:
            raise click.UsageError(f"there are {len(portals)} portals: choose one with --portal-group ID")
        portal_group = portals[0]["id"]
    body: dict[str, Any] = {"iscsi_target_name": name}
    if alias is not None:
        body["iscsi_target_alias"] = alias
    created = api.request("POST", "/services/iscsi/target/", body)
    group = {"iscsi_target": created["id"], "iscsi_target_portalgroup": portal_group,
             "iscsi_target_initiatorgroup": initiator_group, "iscsi_target_authtype": auth_method,
             "iscsi_target_authgroup": auth_group}
    try:
        api.request("POST", "/services/iscsi/targetgroup/", group)
    except Refused:
        # nothing half-made: a target nobody can reach is removed again
        api.request("DELETE", f"/services/iscsi/target/{created['id']}/")
        raise
    ctl.show("target", created)


@target.command("delete")
@click.argument("ref", metavar="NAME|ID")
@pass_ctl
def target_delete(ctl: Ctl, ref: str) -> None:
    """Delete a target (its target groups and LUN mappings go with it; extents stay)."""
    t = lookup(ctl.api, "target", "iscsi_target_name", ref.lower(), "target")
    ctl.api.request("DELETE", f"/services/iscsi/target/{t['id']}/", not_found=f"no target {ref}")
    ctl.done(f"deleted target {t['id']} ({t['iscsi_target_name']})")


# ---- extents ----------------------------------------------------------------------------------------

@cli.group()
def extent() -> None:
    """Extents: the files and devices behind LUNs."""


@extent.command("list")
@pass_ctl
def extent_list(ctl: Ctl) -> None:
    """Every extent."""
    ctl.show("extent", ctl.api.objects("extent"))


@extent.command("create")
@click.argument("name")
@click.option("--path", metavar="FILE", help="a File extent: absolute path inside an --extent-root of the server")
@click.option("--disk", metavar="DEV", help="a Disk extent: zvol/POOL/VOL or a device under the server's --device-root")
@click.option("--rbd", metavar="POOL/IMAGE", help="an RBD extent: a Ceph image of the server's cluster")
@click.option("--size", metavar="SIZE",
              help="File or RBD size: bytes or 10G, 512M, 1T (1024-based); creates a missing file or image; "
                   "0 = its own size")
@click.option("--blocksize", type=click.Choice(["512", "1024", "2048", "4096"]), help="logical block size")
@click.option("--ro", is_flag=True, help="read-only LU")
@click.option("--comment")
@pass_ctl
def extent_create(ctl: Ctl, name: str, path: str | None, disk: str | None, rbd: str | None, size: str | None,
                  blocksize: str | None, ro: bool, comment: str | None) -> None:
    """Create extent NAME: a file (--path, --size), a device (--disk) or a Ceph RBD image (--rbd)."""
    if sum(where is not None for where in (path, disk, rbd)) != 1:
        raise click.UsageError("give one of --path FILE (a File extent), --disk DEV (a Disk extent) "
                               "or --rbd POOL/IMAGE (an RBD extent)")
    if disk is not None and size is not None:
        raise click.UsageError("--size is for File and RBD extents; a Disk extent has its device's size")
    body: dict[str, Any] = {"iscsi_target_extent_name": name}
    if disk is not None:
        body.update(iscsi_target_extent_type="Disk", iscsi_target_extent_disk=disk)
    else:
        body.update(iscsi_target_extent_type="File" if path is not None else "RBD",
                    iscsi_target_extent_path=path if path is not None else rbd)
        if size is not None:
            body["iscsi_target_extent_filesize"] = api_size(size)
    if blocksize is not None:
        body["iscsi_target_extent_blocksize"] = int(blocksize)
    if ro:
        body["iscsi_target_extent_ro"] = True
    if comment is not None:
        body["iscsi_target_extent_comment"] = comment
    ctl.show("extent", ctl.api.request("POST", "/services/iscsi/extent/", body))


@extent.command("resize")
@click.argument("ref", metavar="NAME|ID")
@click.argument("size")
@pass_ctl
def extent_resize(ctl: Ctl, ref: str, size: str) -> None:
    """Grow a File or RBD extent to SIZE (10G, 512M, 1T, bytes), live: the initiators see CAPACITY
    DATA HAS CHANGED. Shrinking is refused (it would cut off data)."""
    e = lookup(ctl.api, "extent", "iscsi_target_extent_name", ref, "extent")
    ctl.show("extent", ctl.api.request("PUT", f"/services/iscsi/extent/{e['id']}/",
                                       {"iscsi_target_extent_filesize": api_size(size)}))


@extent.command("delete")
@click.argument("ref", metavar="NAME|ID")
@pass_ctl
def extent_delete(ctl: Ctl, ref: str) -> None:
    """Delete an extent (its LUN mappings go with it; the file or device is left as it is)."""
    e = lookup(ctl.api, "extent", "iscsi_target_extent_name", ref, "extent")
    ctl.api.request("DELETE", f"/services/iscsi/extent/{e['id']}/", not_found=f"no extent {ref}")
    ctl.done(f"deleted extent {e['id']} ({e['iscsi_target_extent_name']})")


# ---- LUN mappings ----------------------------------------------------------------------------------

@cli.group()
def lun() -> None:
    """LUN mappings: which extent a target offers as which LUN."""


@lun.command("list")
@click.argument("target_ref", metavar="[TARGET]", required=False)
@pass_ctl
def lun_list(ctl: Ctl, target_ref: str | None) -> None:
    """Every mapping, or those of TARGET (name or id)."""
    api = ctl.api
    filters = {}
    if target_ref is not None:
        filters["iscsi_target"] = lookup(api, "target", "iscsi_target_name", target_ref.lower(), "target")["id"]
    mappings = api.objects("targettoextent", **filters)
    names: dict[int, dict[str, str]] = {}
    if not ctl.as_json:
        targets = {t["id"]: t["iscsi_target_name"] for t in api.objects("target")}
        extents = {e["id"]: e["iscsi_target_extent_name"] for e in api.objects("extent")}
        names = {m["id"]: {"TARGET-NAME": targets.get(m["iscsi_target"], "?"),
                           "EXTENT-NAME": extents.get(m["iscsi_extent"], "?")} for m in mappings}
    ctl.show("targettoextent", mappings, extra=names)


@lun.command("stats")
@click.argument("target_ref", metavar="[TARGET]", required=False)
@pass_ctl
def lun_stats(ctl: Ctl, target_ref: str | None) -> None:
    """Per-LUN counters since the server started (what `tgtadm --op stat` shows), read from the
    server's /metrics: commands, bytes, CHECK CONDITIONs and mean latency, of every LUN or of TARGET.
    With --json, a list of objects with the same fields (errors by sense key)."""
    rows = lu_statistics(ctl.api.metrics())
    if target_ref is not None:
        found = lookup(ctl.api, "target", "iscsi_target_name", target_ref.lower(), "target")
        iqn = _target_iqns(ctl.api, [found])[found["id"]]["IQN"]
        rows = [r for r in rows if r["target"] == iqn]
    if ctl.as_json:
        emit(rows, as_json=True)
    else:
        emit(rows, as_json=False, human=table("lustats", [{**r, "errors": sum(r["errors"].values())} for r in rows]))


def lu_statistics(text: str) -> list[dict[str, Any]]:
    """The `pyscsi_lu_*` samples of a /metrics page, one object per LU: the mapped ones by target and
    LUN, then the extents no target maps (their `target` is "" and `lun` None: an extent is served,
    and counted, as long as it is enabled)."""
    rows: dict[tuple[bool, str, int, str], dict[str, Any]] = {}
    latency: dict[tuple[bool, str, int, str], list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("pyscsi_lu_"):
                continue
            labels = sample.labels
            lun = int(labels["lun"]) if labels["lun"] else None
            key = (lun is None, labels["target"], -1 if lun is None else lun, labels["extent"])
            row = rows.setdefault(key, {"target": labels["target"], "lun": lun, "extent": labels["extent"],
                                        "read_commands": 0, "write_commands": 0, "other_commands": 0,
                                        "read_bytes": 0, "written_bytes": 0, "errors": {}})
            name, value = sample.name, int(sample.value)
            if name == "pyscsi_lu_commands_total":
                row[f"{labels['kind']}_commands"] = value
            elif name == "pyscsi_lu_read_bytes_total":
                row["read_bytes"] = value
            elif name == "pyscsi_lu_written_bytes_total":
                row["written_bytes"] = value
            elif name == "pyscsi_lu_errors_total":
                row["errors"][labels["sense_key"]] = value
            elif name in ("pyscsi_lu_command_latency_seconds_count", "pyscsi_lu_command_latency_seconds_sum"):
                latency.setdefault(key, [0.0, 0.0])[name.endswith("_sum")] = sample.value
    for key, row in rows.items():
        count, total = latency.get(key, [0.0, 0.0])
        row["mean_latency_us"] = round(total / count * 1e6, 1) if count else None
    return [rows[k] for k in sorted(rows)]


@lun.command("map")
@click.argument("target_ref", metavar="TARGET")
@click.argument("extent_ref", metavar="EXTENT")
@click.option("--lun", "lunid", type=int, metavar="N", help="LUN number [default: the lowest free one]")
@pass_ctl
def lun_map(ctl: Ctl, target_ref: str, extent_ref: str, lunid: int | None) -> None:
    """Offer EXTENT as a LUN of TARGET (both by name or id)."""
    api = ctl.api
    t = lookup(api, "target", "iscsi_target_name", target_ref.lower(), "target")
    e = lookup(api, "extent", "iscsi_target_extent_name", extent_ref, "extent")
    body: dict[str, Any] = {"iscsi_target": t["id"], "iscsi_extent": e["id"]}
    if lunid is not None:
        body["iscsi_lunid"] = lunid
    ctl.show("targettoextent", api.request("POST", "/services/iscsi/targettoextent/", body))


@lun.command("unmap")
@click.argument("target_ref", metavar="TARGET")
@click.argument("extent_ref", metavar="[EXTENT]", required=False)
@click.option("--lun", "lunid", type=int, metavar="N", help="the LUN number to unmap (instead of EXTENT)")
@pass_ctl
def lun_unmap(ctl: Ctl, target_ref: str, extent_ref: str | None, lunid: int | None) -> None:
    """Remove the mapping of EXTENT (or of LUN N) from TARGET."""
    if (extent_ref is None) == (lunid is None):
        raise click.UsageError("name the mapping by EXTENT or by --lun N")
    api = ctl.api
    t = lookup(api, "target", "iscsi_target_name", target_ref.lower(), "target")
    filters: dict[str, Any] = {"iscsi_target": t["id"]}
    if extent_ref is not None:
        filters["iscsi_extent"] = lookup(api, "extent", "iscsi_target_extent_name", extent_ref, "extent")["id"]
    else:
        filters["iscsi_lunid"] = lunid
    found = api.objects("targettoextent", **filters)
    if not found:
        raise Refused(f"target {target_ref} has no such LUN mapping")
    api.request("DELETE", f"/services/iscsi/targettoextent/{found[0]['id']}/")
    ctl.done(f"unmapped LUN {found[0]['iscsi_lunid']} of target {t['iscsi_target_name']}")


# ---- portals, CHAP credentials, authorized initiators ---------------------------------------------

@cli.group()
def portal() -> None:
    """Portals (portal groups): the addresses targets are offered on."""


@portal.command("list")
@pass_ctl
def portal_list(ctl: Ctl) -> None:
    """Every portal."""
    ctl.show("portal", ctl.api.objects("portal"))


@portal.command("create")
@click.argument("addresses", nargs=-1, required=True, metavar="IP:PORT...")
@click.option("--comment")
@click.option("--discovery-auth-method", type=click.Choice(AUTH_METHODS), help="authentication for discovery")
@click.option("--discovery-auth-group", type=int, metavar="TAG", help="CHAP credentials tag for discovery")
@pass_ctl
def portal_create(ctl: Ctl, addresses: tuple[str, ...], comment: str | None, discovery_auth_method: str | None,
                  discovery_auth_group: int | None) -> None:
    """Create a portal listening on IP:PORT (IPv6 as [ADDR]:PORT); several addresses make one group."""
    body: dict[str, Any] = {"iscsi_target_portal_ips": list(addresses)}
    if comment is not None:
        body["iscsi_target_portal_comment"] = comment
    if discovery_auth_method is not None:
        body["iscsi_target_portal_discoveryauthmethod"] = discovery_auth_method
    if discovery_auth_group is not None:
        body["iscsi_target_portal_discoveryauthgroup"] = discovery_auth_group
    ctl.show("portal", ctl.api.request("POST", "/services/iscsi/portal/", body))


@portal.command("delete")
@click.argument("oid", type=int, metavar="ID")
@pass_ctl
def portal_delete(ctl: Ctl, oid: int) -> None:
    """Delete a portal (its target groups go with it)."""
    p = by_id(ctl.api, "portal", oid, "portal")
    ctl.api.request("DELETE", f"/services/iscsi/portal/{oid}/", not_found=f"no portal with id {oid}")
    ctl.done(f"deleted portal {oid} ({', '.join(p['iscsi_target_portal_ips'])})")


@cli.group()
def chap() -> None:
    """CHAP credentials (grouped by tag)."""


@chap.command("list")
@pass_ctl
def chap_list(ctl: Ctl) -> None:
    """Every credential (tables never show secrets; --json shows what the API returns to root)."""
    ctl.show("authcredential", ctl.api.objects("authcredential"))


@chap.command("create")
@click.option("--tag", type=int, required=True, metavar="N", help="auth group tag (targets refer to it)")
@click.option("--user", required=True, help="CHAP user name")
@click.option("--secret-file", type=click.File("r"), required=True, metavar="FILE",
              help="file whose first line is the secret (12-16 characters); - reads stdin")
@click.option("--peer-user", help="mutual CHAP: the target's user name")
@click.option("--peer-secret-file", type=click.File("r"), metavar="FILE", help="mutual CHAP: the target's secret")
@pass_ctl
def chap_create(ctl: Ctl, tag: int, user: str, secret_file: Any, peer_user: str | None,
                peer_secret_file: Any) -> None:
    """Create a CHAP credential. Secrets come from files, never from the command line."""
    if (peer_user is None) != (peer_secret_file is None):
        raise click.UsageError("--peer-user and --peer-secret-file go together (mutual CHAP)")
    body: dict[str, Any] = {"iscsi_target_auth_tag": tag, "iscsi_target_auth_user": user,
                            "iscsi_target_auth_secret": read_secret(secret_file)}
    if peer_user is not None:
        body["iscsi_target_auth_peeruser"] = peer_user
        body["iscsi_target_auth_peersecret"] = read_secret(peer_secret_file)
    ctl.show("authcredential", ctl.api.request("POST", "/services/iscsi/authcredential/", body))


@chap.command("delete")
@click.argument("oid", type=int, metavar="ID")
@pass_ctl
def chap_delete(ctl: Ctl, oid: int) -> None:
    """Delete a credential."""
    c = by_id(ctl.api, "authcredential", oid, "credential")
    ctl.api.request("DELETE", f"/services/iscsi/authcredential/{oid}/", not_found=f"no credential with id {oid}")
    ctl.done(f"deleted credential {oid} ({c['iscsi_target_auth_user']}, tag {c['iscsi_target_auth_tag']})")


@cli.group()
def initiator() -> None:
    """Authorized initiators: which initiator names and networks may log in to a target group."""


@initiator.command("list")
@pass_ctl
def initiator_list(ctl: Ctl) -> None:
    """Every authorized-initiator group."""
    ctl.show("authorizedinitiator", ctl.api.objects("authorizedinitiator"))


@initiator.command("create")
@click.option("--name", "names", multiple=True, metavar="IQN",
              help="initiator name allowed (repeatable) [default: ALL]")
@click.option("--network", "networks", multiple=True, metavar="CIDR",
              help="address or network allowed (repeatable) [default: ALL]")
@click.option("--comment")
@pass_ctl
def initiator_create(ctl: Ctl, names: tuple[str, ...], networks: tuple[str, ...], comment: str | None) -> None:
    """Create an authorized-initiator group (use its id as a target's --initiator-group)."""
    body: dict[str, Any] = {"iscsi_target_initiator_initiators": "\n".join(names) or "ALL",
                            "iscsi_target_initiator_auth_network": "\n".join(networks) or "ALL"}
    if comment is not None:
        body["iscsi_target_initiator_comment"] = comment
    ctl.show("authorizedinitiator", ctl.api.request("POST", "/services/iscsi/authorizedinitiator/", body))


@initiator.command("delete")
@click.argument("oid", type=int, metavar="ID")
@pass_ctl
def initiator_delete(ctl: Ctl, oid: int) -> None:
    """Delete an authorized-initiator group (refused while a target group uses it)."""
    by_id(ctl.api, "authorizedinitiator", oid, "authorized initiator")
    ctl.api.request("DELETE", f"/services/iscsi/authorizedinitiator/{oid}/",
                    not_found=f"no authorized initiator with id {oid}")
    ctl.done(f"deleted authorized initiator {oid}")


# ---- sessions --------------------------------------------------------------------------------------

@cli.group()
def session() -> None:
    """Live iSCSI sessions."""


@session.command("list")
@pass_ctl
def session_list(ctl: Ctl) -> None:
    """Every logged-in session with its counters."""
    ctl.show("sessions", ctl.api.objects("sessions"))


@session.command("drop")
@click.argument("sid", metavar="ID")
@pass_ctl
def session_drop(ctl: Ctl, sid: str) -> None:
    """End session ID (needs a server whose API can drop sessions)."""
    try:
        ctl.api.request("DELETE", f"/services/iscsi/sessions/{sid}/")
    except Refused as exc:
        if exc.status in (404, 405):
            raise Refused(f"pyscsi-targetctl: session {sid} not dropped: the API answered HTTP {exc.status} "
                          "(no such session, or a server whose API cannot drop sessions)", status=exc.status) from exc
        raise
    ctl.done(f"dropped session {sid}")


def main() -> None:
    cli.main(prog_name="pyscsi-targetctl")
