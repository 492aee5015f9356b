"""Validation of a configuration change: the FreeNAS rules and messages as Part B adjusts them.

Stdlib only. `validate(cfg, collection, obj, ctx)` checks one created or edited object that is
already placed in `cfg` (a draft the caller owns, model/draft.py) against the rest of the
configuration, through the indexes (`Config.find`: the other objects with its name, its LUN, its
file), so it costs O(1) lookups, not a scan of the configuration (issue #12), and
normalises it in place (lower-cased target names, auto LUN ids, tags, NAA and serial, sizes).
It returns Django-style errors keyed by API field name (`"__all__"` for cross-field rules), the
body of the 409 the API answers (spec Part A §3.1/§3.2, Part B §B.2). Type, choice, length and
range checks of single values happen earlier, in the API's field tables.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import extents, kinds
from .addresses import (
    ALL,
    AddressError,
    choice_message,
    normalise_isns_servers,
    normalise_networks,
    split_tokens,
)
from .config import (
    AUTH_CHAP,
    AUTH_CHAP_MUTUAL,
    DEFAULT_BASENAME,
    AuthCredential,
    Config,
    InitiatorGroup,
    LunMapping,
    Portal,
    Target,
    TargetGroup,
)
from .edits import LUN_AUTO, LUN_MAX, LUN_MIN, lowest_free_lun, next_tag
from .text import LIST_SEPARATORS, text_problem, unsafe_char

Errors = dict[str, list[str]]

#: Where `zvol/<pool>/<vol>` and other Disk extents live (spec Part B §B.2.6).
DEFAULT_DEVICE_ROOT = "/dev"
#: iSCSI names are at most 223 bytes (RFC 3720 §3.2.6.1).
ISCSI_NAME_MAX_BYTES = 223
#: CHAP user names travel as CHAP_N values: at most 255 bytes of UTF-8 (RFC 7143 §6.1).
CHAP_NAME_MAX_BYTES = 255
#: CHAP secret length in characters: Microsoft's initiator needs 12..16 (spec Part B §B.2.8).
SECRET_MIN = 12
SECRET_MAX = 16

NON_FIELD = "__all__"
MSG_CHOICE_FK = "Select a valid choice. That choice is not one of the available choices."
MSG_NAME_CHARS = 'Use alphanumeric characters, ".", "-" and ":".'
MSG_MUTUAL = "This authentication group does not support CHAP MUTUAL"

_TARGET_NAME_RE = re.compile(r"[-a-z0-9.:]+")
# RFC 3720 §3.2.6.3: iqn.yyyy-mm.<reversed domain>[:<anything>], eui.<16 hex>, naa.<16 or 32 hex>.
_IQN_RE = re.compile(r"iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:.*)?")
_EUI_RE = re.compile(r"eui\.[0-9a-f]{16}")
_NAA_RE = re.compile(r"naa\.([0-9a-f]{16}|[0-9a-f]{32})")
_NAME_PREFIXES = ("iqn.", "eui.", "naa.")


@dataclass(frozen=True)
class ValidationContext:
    """Host facts the rules need: where File extents may live and where devices are."""

    extent_roots: tuple[str, ...]
    device_root: str = DEFAULT_DEVICE_ROOT
    #: regular files may stand in for Disk/ZVOL devices (--allow-file-devices, issue #10 item 1)
    allow_file_devices: bool = False

    @classmethod
    def of(cls, extent_roots: list[str], device_root: str, allow_file_devices: bool = False) -> ValidationContext:
        roots = tuple(os.path.abspath(r) for r in extent_roots)
        return cls(roots, os.path.abspath(device_root), allow_file_devices)

    @property
    def storage(self) -> extents.StoragePolicy:
        return extents.StoragePolicy(self.extent_roots, self.device_root, self.allow_file_devices)


def valid_iscsi_name(name: str) -> bool:
    """An RFC 3720 §3.2.6.3 name (already lower-cased) of at most 223 bytes."""
    if len(name.encode()) > ISCSI_NAME_MAX_BYTES or unsafe_char(name) is not None or " " in name:
        return False
    return any(rx.fullmatch(name) for rx in (_IQN_RE, _EUI_RE, _NAA_RE))


def _add(errors: Errors, field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


# ---- global configuration --------------------------------------------------------------------


def check_global(cfg: Config, _obj: Any, _ctx: ValidationContext) -> Errors:
    errors: Errors = {}
    gc = cfg.global_config
    gc.basename = gc.basename.strip().lower()
    if not _TARGET_NAME_RE.fullmatch(gc.basename):
        _add(errors, "iscsi_basename", MSG_NAME_CHARS)
    elif not _IQN_RE.fullmatch(gc.basename):
        _add(errors, "iscsi_basename", f"The base name must be an iqn. name, such as {DEFAULT_BASENAME}.")
    else:
        # every target's name changes with the basename: one pass, not one lookup per target
        targets = list(cfg.targets.values())
        count = Counter(cfg.target_iqn(t).lower() for t in targets)
        for target in targets:
            problem = _iqn_shape_problem(cfg, target)
            if problem is None and count[cfg.target_iqn(target).lower()] > 1:
                problem = MSG_TARGET_EXISTS
            if problem:
                _add(errors, "iscsi_basename", f'Target "{target.name}": {problem}')
    problem = text_problem(gc.isns_servers, LIST_SEPARATORS)
    if problem:
        _add(errors, "iscsi_isns_servers", problem)
        return errors
    try:
        gc.isns_servers = normalise_isns_servers(gc.isns_servers)
    except AddressError as exc:
        _add(errors, exc.field, exc.message)
    return errors


# ---- target ----------------------------------------------------------------------------------


MSG_TARGET_EXISTS = "A target with that name already exists."


def _iqn_shape_problem(cfg: Config, target: Target) -> str | None:
    iqn = cfg.target_iqn(target)
    if target.name.startswith(_NAME_PREFIXES) and not valid_iscsi_name(iqn):
        return "Names starting with iqn., eui. or naa. must be valid iSCSI names (RFC 3720 §3.2.6.3)."
    if len(iqn.encode()) > ISCSI_NAME_MAX_BYTES:
        return f"The iSCSI name {iqn} is longer than {ISCSI_NAME_MAX_BYTES} bytes."
    return None


def _iqn_problem(cfg: Config, target: Target) -> str | None:
    """What is wrong with the iSCSI name `target` would get, or None (RFC 3720 §3.2.6)."""
    problem = _iqn_shape_problem(cfg, target)
    if problem:
        return problem
    if any(oid != target.id for oid in cfg.find("target_iqn", cfg.target_iqn(target).lower())):
        return MSG_TARGET_EXISTS
    return None


def _alias_problem(cfg: Config, target: Target) -> str | None:
    alias = target.alias
    if alias is None:
        return None
    if '"' in alias:
        return extents.MSG_QUOTES
    problem = text_problem(alias)
    if problem:
        return problem
    if alias.lower() == "target":
        return "target is a reserved word, please choose a different name for this alias."
    if any(oid != target.id for oid in cfg.find("target_alias", alias)):
        return "Alias name must be unique."
    return None


def check_target(cfg: Config, target: Target, _ctx: ValidationContext) -> Errors:
    errors: Errors = {}
    target.name = target.name.strip().lower()
    if not _TARGET_NAME_RE.fullmatch(target.name):
        _add(errors, "iscsi_target_name", MSG_NAME_CHARS)
    else:
        problem = _iqn_problem(cfg, target)
        if problem:
            _add(errors, "iscsi_target_name", problem)
    target.alias = (target.alias or "").strip() or None
    problem = _alias_problem(cfg, target)
    if problem:
        _add(errors, "iscsi_target_alias", problem)
    if target.mode != "iscsi":
        # fc/both need a Fibre Channel port; this target speaks iSCSI only (spec Part B §B.2.9).
        _add(errors, "iscsi_target_mode", "Fibre Channel not enabled")
    return errors


# ---- authentication groups (shared by target groups and portals) -------------------------------


def _auth_group_errors(cfg: Config, method: str, group: int | None, field: str, required: str) -> Errors:
    """An auth tag must exist; CHAP needs a group; CHAP Mutual needs peer users (Part B §B.2.11)."""
    credentials = cfg.credentials_with_tag(group)
    if group is not None and not credentials:
        return {field: [choice_message(group)]}
    if method in (AUTH_CHAP, AUTH_CHAP_MUTUAL) and group is None:
        return {field: [required]}
    if method == AUTH_CHAP_MUTUAL and not all(c.peeruser for c in credentials):
        return {field: [MSG_MUTUAL]}
    return {}


def _used_with_mutual(cfg: Config, tag: int) -> bool:
    """The auth tag is in use with CHAP Mutual by a target group or a portal's discovery."""
    return bool(cfg.find("group_mutual_tag", tag)) or bool(cfg.find("portal_mutual_tag", tag))


# ---- target group ----------------------------------------------------------------------------


def check_targetgroup(cfg: Config, group: TargetGroup, _ctx: ValidationContext) -> Errors:
    errors: Errors = {}
    if group.target not in cfg.targets:
        _add(errors, "iscsi_target", MSG_CHOICE_FK)
    if group.portalgroup not in cfg.portals:
        _add(errors, "iscsi_target_portalgroup", MSG_CHOICE_FK)
    if group.initiatorgroup is not None and group.initiatorgroup not in cfg.initiators:
        _add(errors, "iscsi_target_initiatorgroup", MSG_CHOICE_FK)
    problem = text_problem(group.initialdigest)
    if problem:
        _add(errors, "iscsi_target_initialdigest", problem)
    if group.authgroup == -1:  # FreeNAS's "no group" on input
        group.authgroup = None
    required = "Authentication group is required for CHAP and CHAP Mutual"
    field = "iscsi_target_authgroup"
    errors.update(_auth_group_errors(cfg, group.authtype, group.authgroup, field, required))
    if any(
        gid != group.id and cfg.targetgroups[gid].portalgroup == group.portalgroup
        for gid in cfg.find("group_target", group.target)
    ):
        _add(errors, NON_FIELD, "iSCSI Group with this Target and Portal Group ID already exists.")
    return errors


# ---- target to extent ------------------------------------------------------------------------


def check_mapping(cfg: Config, mapping: LunMapping, _ctx: ValidationContext) -> Errors:
    errors: Errors = {}
    if mapping.target not in cfg.targets:
        _add(errors, "iscsi_target", MSG_CHOICE_FK)
    if mapping.extent not in cfg.extents:
        _add(errors, "iscsi_extent", MSG_CHOICE_FK)
    if errors:
        return errors
    if mapping.lunid == LUN_AUTO:
        free = lowest_free_lun(cfg, mapping.target, mapping.id)
        if free is None:
            return {"iscsi_lunid": [f"No free LUN ID on this target ({LUN_MIN}-{LUN_MAX} are all in use)."]}
        mapping.lunid = free
    if not LUN_MIN <= mapping.lunid <= LUN_MAX:
        _add(errors, "iscsi_lunid", f"LUN ID must be a positive integer and lower than {LUN_MAX + 1}")
    others = [cfg.mappings[mid] for mid in sorted(cfg.find("mapping_target", mapping.target)) if mid != mapping.id]
    if any(m.lunid == mapping.lunid for m in others):
        _add(errors, "iscsi_lunid", "LUN ID is already being used for this target.")
    if any(m.extent == mapping.extent for m in others):
        _add(errors, "iscsi_target", "Extent is already in this target.")
    return errors


# ---- auth credential -------------------------------------------------------------------------


def _secret_problem(secret: str, label: str) -> str | None:
    problem = text_problem(secret)
    if problem:
        return problem
    if not SECRET_MIN <= len(secret) <= SECRET_MAX:
        return f"{label} must be between {SECRET_MIN} and {SECRET_MAX} characters."
    return None


def check_auth(cfg: Config, cred: AuthCredential, _ctx: ValidationContext) -> Errors:
    errors: Errors = {}
    for field, value in (("user", cred.user), ("peeruser", cred.peeruser)):
        problem = text_problem(value)
        if problem is None and len(value.encode()) > CHAP_NAME_MAX_BYTES:
            problem = f"At most {CHAP_NAME_MAX_BYTES} bytes of UTF-8 (an iSCSI text value, RFC 7143 §6.1)."
        if problem:
            _add(errors, "iscsi_target_auth_" + field, problem)
    if any(aid != cred.id and cfg.auths[aid].user == cred.user for aid in cfg.find("auth_tag", cred.tag)):
        # issue #10: two secrets for one user would both log in; one secret twice is a copy that
        # a later edit turns into that. Users compare exactly, as CHAP_N does (protocol/chap.py).
        _add(errors, "iscsi_target_auth_user", f"This user already has a credential in auth group {cred.tag}.")
    problem = _secret_problem(cred.secret, "Secret")
    if problem:
        _add(errors, "iscsi_target_auth_secret", problem)
    if cred.peeruser and not cred.peersecret:
        _add(errors, "iscsi_target_auth_peersecret", "The peer secret is required if you set a peer user.")
    elif cred.peersecret and not cred.peeruser:
        _add(errors, "iscsi_target_auth_peeruser", "The peer user is required if you set a peer secret.")
    elif cred.peersecret:
        problem = _secret_problem(cred.peersecret, "Peer Secret")
        if cred.peersecret == cred.secret:
            problem = "The peer secret cannot be the same as user secret."
        if problem:
            _add(errors, "iscsi_target_auth_peersecret", problem)
    if not cred.peeruser and _used_with_mutual(cfg, cred.tag):
        _add(
            errors,
            "iscsi_target_auth_peeruser",
            f"Auth group {cred.tag} is used with CHAP Mutual, which needs a peer user on every credential.",
        )
    return errors


# ---- authorized initiator --------------------------------------------------------------------


def _normalise_initiators(text: str) -> str:
    out: list[str] = []
    for token in split_tokens(text):
        if token.upper() == ALL:
            out.append(ALL)
        elif valid_iscsi_name(token.lower()):
            out.append(token)
        else:
            raise ValueError(f'"{token}" is not an iSCSI name (iqn., eui. or naa., RFC 3720 §3.2.6.3).')
    return "\n".join(out) or ALL


def check_initiator(cfg: Config, group: InitiatorGroup, _ctx: ValidationContext) -> Errors:
    errors: Errors = {}
    if group.tag <= 0:  # a new group: FreeNAS numbering (spec Part A §2.3)
        group.tag = next_tag([g for g in cfg.initiators.values() if g.id != group.id])
    problem = text_problem(group.comment)
    if problem:
        _add(errors, "iscsi_target_initiator_comment", problem)
    problem = text_problem(group.initiators, LIST_SEPARATORS)
    if problem:
        _add(errors, "iscsi_target_initiator_initiators", problem)
    else:
        try:
            group.initiators = _normalise_initiators(group.initiators)
        except ValueError as exc:
            _add(errors, "iscsi_target_initiator_initiators", str(exc))
    problem = text_problem(group.auth_network, LIST_SEPARATORS)
    if problem:
        _add(errors, "iscsi_target_initiator_auth_network", problem)
        return errors
    try:
        group.auth_network = normalise_networks(group.auth_network)
    except AddressError as exc:
        _add(errors, exc.field, exc.message)
    return errors


# ---- portal ----------------------------------------------------------------------------------


def check_portal(cfg: Config, portal: Portal, _ctx: ValidationContext) -> Errors:
    errors: Errors = {}
    if portal.tag <= 0:  # a new portal: FreeNAS numbering (spec Part A §2.8)
        portal.tag = next_tag([p for p in cfg.portals.values() if p.id != portal.id])
    problem = text_problem(portal.comment)
    if problem:
        _add(errors, "iscsi_target_portal_comment", problem)
    if not portal.ips:
        _add(errors, "iscsi_target_portal_ips", "At least one listen entry is required.")
    taken = [(a.host, a.port) for p in cfg.portals.values() if p.id != portal.id for a in p.ips]
    mine = [(a.host, a.port) for a in portal.ips]
    if len(set(mine)) != len(mine) or set(mine) & set(taken):
        _add(errors, NON_FIELD, "This IP and port are already in use.")
    if portal.discoveryauthgroup == -1:  # FreeNAS's "no group" on input
        portal.discoveryauthgroup = None
    required = "This field is required if discovery method is set to CHAP or CHAP Mutual."
    errors.update(
        _auth_group_errors(
            cfg,
            portal.discoveryauthmethod,
            portal.discoveryauthgroup,
            "iscsi_target_portal_discoveryauthgroup",
            required,
        )
    )
    return errors


# ---- dispatch --------------------------------------------------------------------------------


def check_extent(cfg: Config, ext: extents.Extent, ctx: ValidationContext) -> Errors:
    return kinds.check_extent(cfg, ext, ctx.storage)


_CHECKS: dict[str, Callable[[Config, Any, ValidationContext], Errors]] = {
    "global": check_global,
    "portals": check_portal,
    "initiators": check_initiator,
    "auths": check_auth,
    "targets": check_target,
    "targetgroups": check_targetgroup,
    "extents": check_extent,
    "mappings": check_mapping,
}


def validate(cfg: Config, collection: str, obj: Any, ctx: ValidationContext) -> Errors:
    """Normalise `obj` (already in `cfg`) and return the errors of the change; {} if it is valid.

    `collection` is a `Config.COLLECTIONS` name, or "global" for the global configuration.
    """
    return _CHECKS[collection](cfg, obj, ctx)
