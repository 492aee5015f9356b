"""`ResetChannel`: the events between the gateways that serve one RBD image (issue #15).

Several pyscsi-target processes ("gateways") may serve the same image as the same LU
(docs/scale-out.md). A LOGICAL UNIT RESET through one of them must raise POWER ON, RESET, OR BUS
DEVICE RESET OCCURRED (29/00) on the nexuses of every gateway (SAM-5 §6.3.3: the reset is of the
logical unit, not of one port's view of it; libiscsi's MultipathIO.Reset checks it). Each gateway
keeps its unit attentions in its own memory, so the reset is told to the others through RADOS
watch/notify on a small object of the image's pool:

- the object is `pyscsi-target.lu.<image id>` (EVENTS_OBJECT_PREFIX), created empty when a gateway
  first watches it and removed with the image when the target removes one it created. The image
  id, not its name, so a rename keeps the channel and a new image of an old name gets a new one.
  Not the image's header object (`rbd_header.<id>`): librbd watches that one itself and decodes
  every notify on it as one of its own messages (image_watcher); a foreign payload there is an
  error in every librbd client of the image (ours, qemu's, krbd's), and a change of librbd's
  format could make it mean something;
- a notify carries `{"event": "reset", "sender": <id>}`, the sender being the notifying process's
  librados instance id (unique among the cluster's clients while it is connected). Every watcher
  receives every notify, its sender's own included: a gateway ignores its own, so a reset is
  never echoed back to the gateway that made it, and a receiver applies it without re-sending;
- the receiving callback (a librados thread) applies the reset directly, before it returns: the
  notify's acknowledgement then means "the unit attention is pending there", and the resetting
  gateway answers the task management function only after the notify returns, so the initiator's
  next command through any path sees the unit attention (the LU's state is thread-safe: commands
  run in worker threads anyway);
- `announce()` is blocking (the caller runs it in a worker thread) and bounded by
  RESET_NOTIFY_TIMEOUT_S for the other watchers' acknowledgements; it never raises: a failure is
  logged (a WARNING at the first of a run of failures, then DEBUG until one succeeds), because the
  local reset is done and the TMF must not fail for a cluster that does not answer;
- a watch that errors (the OSD lost our session: a network partition, an OSD restart) is
  re-established by a timer thread every WATCH_RETRY_S until it is or the extent closes. Resets
  told meanwhile were missed, so a re-established watch applies one reset locally: a spurious
  29/00 costs an initiator one retried command, a missed one breaks what a reset promises.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from .base import StorageError

#: name of an image's events object: this prefix and the image's id (`rbd info`'s "id")
EVENTS_OBJECT_PREFIX = "pyscsi-target.lu."
#: how long a reset's notify waits for the other gateways' acknowledgements, seconds
RESET_NOTIFY_TIMEOUT_S = 5.0
#: seconds between attempts to (re-)establish an events watch that failed
WATCH_RETRY_S = 5.0
#: librados' idempotent create flag (LIBRADOS_CREATE_IDEMPOTENT): creating an existing object is no error
_CREATE_IDEMPOTENT = 0

log = logging.getLogger("pyscsi_target.storage")

RemoteReset = Callable[[], None]


def events_object(image_id: str) -> str:
    return f"{EVENTS_OBJECT_PREFIX}{image_id}"


def ensure_object(ioctx: Any, oid: str) -> None:
    """Create the (empty) events object unless it exists (a watch needs an existing object)."""
    op = ioctx.create_write_op()
    try:
        op.new(_CREATE_IDEMPOTENT)
        ioctx.operate_write_op(op, oid)
    finally:
        ioctx.release_write_op(op)


class ResetChannel:
    """One image's events object, watched for resets by the other gateways, notified on ours."""

    def __init__(self, ioctx: Any, image_id: str, sender: int, name: str) -> None:
        """`ioctx`: the image's pool; `sender`: this process's librados instance id; `name`: the
        image as logs name it (pool/image)."""
        self.oid = events_object(image_id)
        self.name = name
        self._ioctx = ioctx
        self._sender = int(sender)
        self._payload = json.dumps({"event": "reset", "sender": self._sender})
        self._on_reset: RemoteReset | None = None
        self._lock = threading.Lock()
        self._watch: Any = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self._watch_warned = False
        self._notify_warned = False
        #: resets received from other gateways and applied (for logs and tests)
        self.received = 0

    @property
    def watching(self) -> bool:
        return self._watch is not None

    # ---- watching ------------------------------------------------------------------------------
    def start(self, on_reset: RemoteReset) -> None:
        """Watch for other gateways' resets, calling `on_reset()` (from a librados thread) for
        each. Blocking; never raises: a failure is logged and retried by a timer."""
        self._on_reset = on_reset
        self._establish(first=True)

    def _establish(self, *, first: bool) -> None:
        with self._lock:
            if self._closed:
                return
            old, self._watch, self._timer = self._watch, None, None
        if old is not None:  # the broken one (outside the callbacks: close() waits for them)
            try:
                old.close()
            except Exception as exc:
                log.debug("RBD image %s: closing the broken events watch: %s", self.name, exc)
        try:
            ensure_object(self._ioctx, self.oid)
            watch = self._ioctx.watch(self.oid, self._notified, self._watch_error)
        except Exception as exc:
            level = logging.DEBUG if self._watch_warned else logging.WARNING
            self._watch_warned = True
            log.log(level, "RBD image %s: cannot watch %s for resets through other gateways (%s: %s); "
                    "retrying every %.0f s", self.name, self.oid, type(exc).__name__, exc, WATCH_RETRY_S)
            self._retry_later()
            return
        with self._lock:
            if self._closed:
                keep = None
            else:
                keep, self._watch = watch, watch
        if keep is None:
            watch.close()
            return
        if not first:
            log.info("RBD image %s: events watch re-established; raising a reset's unit attention "
                     "in case another gateway's reset was missed meanwhile", self.name)
            self._apply()
        elif self._watch_warned:
            log.info("RBD image %s: watching %s for resets through other gateways", self.name, self.oid)
        self._watch_warned = False

    def _retry_later(self) -> None:
        with self._lock:
            if self._closed or self._timer is not None:
                return
            timer = self._timer = threading.Timer(WATCH_RETRY_S, self._establish, kwargs={"first": False})
            timer.daemon = True
        timer.start()

    def _watch_error(self, watch_id: int, error: int) -> None:
        """librados: the watch is gone (a librados thread: the watch cannot be closed here)."""
        log.warning("RBD image %s: events watch failed (error %s); re-establishing it in %.0f s",
                    self.name, error, WATCH_RETRY_S)
        self._retry_later()

    def _notified(self, notify_id: int, notifier_id: int, watch_id: int, data: bytes | None) -> None:
        """librados: a notify on the object (a librados thread). Returns quickly and never raises:
        the acknowledgement is sent when this returns."""
        try:
            event = json.loads(data or b"{}")
            if not isinstance(event, dict) or event.get("sender") == self._sender:
                return  # our own announcement: the local reset is done already
            if event.get("event") != "reset":
                log.debug("RBD image %s: ignoring event %r", self.name, event.get("event"))
                return
        except ValueError:
            log.debug("RBD image %s: ignoring a notify that is not an event (%d bytes)", self.name,
                      len(data or b""))
            return
        log.info("RBD image %s: reset through another gateway (librados client %s)", self.name,
                 event.get("sender"))
        self._apply()

    def _apply(self) -> None:
        on_reset = self._on_reset
        if on_reset is None:
            return
        try:
            on_reset()
            self.received += 1
        except Exception:
            log.exception("RBD image %s: applying another gateway's reset failed", self.name)

    # ---- announcing ----------------------------------------------------------------------------
    def announce(self) -> bool:
        """Tell the other gateways that the LU was reset (blocking, bounded by
        RESET_NOTIFY_TIMEOUT_S). True when every watcher acknowledged; never raises."""
        try:
            if self._closed:
                raise StorageError("the extent is closed")
            self._ioctx.notify(self.oid, self._payload, timeout_ms=int(RESET_NOTIFY_TIMEOUT_S * 1000))
        except Exception as exc:
            level = logging.DEBUG if self._notify_warned else logging.WARNING
            self._notify_warned = True
            log.log(level, "RBD image %s: the reset was done here but could not be told to the other "
                    "gateways serving it (%s: %s); their initiators see no unit attention for it",
                    self.name, type(exc).__name__, exc)
            return False
        if self._notify_warned:
            log.info("RBD image %s: resets reach the other gateways again", self.name)
        self._notify_warned = False
        return True

    def close(self) -> None:
        """Stop watching (blocking: waits for a callback that is running). Idempotent."""
        with self._lock:
            self._closed = True
            watch, self._watch = self._watch, None
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if watch is not None:
            try:
                watch.close()
            except Exception as exc:
                log.debug("RBD image %s: closing the events watch: %s", self.name, exc)


__all__ = ["EVENTS_OBJECT_PREFIX", "RESET_NOTIFY_TIMEOUT_S", "WATCH_RETRY_S", "ResetChannel", "events_object"]
