"""`RbdBackend`: an extent that is a Ceph RBD image (issue #15), and `RbdCluster`, the connection.

Ceph's own Python bindings (`rados`, `rbd`, Debian's python3-rados/python3-rbd) are imported here
only, and only when a cluster is first connected: a target without RBD extents never loads them.

I/O on the event loop is asynchronous (`Backend.asynchronous`): READ and WRITE start librbd's
`aio_read`/`aio_write` and librbd calls the completion back on one of its own threads; the caller
(the server) hands it to its event loop. No thread is taken per command. The synchronous methods
(`read`, `write`, `flush`, ...) are librbd's blocking calls, for commands that run in worker
threads anyway (SYNCHRONIZE CACHE, UNMAP, WRITE SAME, COMPARE AND WRITE under the LU's lock).

Mapping of the SCSI semantics onto librbd (Ceph 16, pacific):
- FUA / write-through: the write, then `flush` (`aio_flush` chained from the write's completion);
- UNMAP: `discard`, with `rbd_skip_partial_discard = false` so that a range that is not whole
  objects is zeroed (pacific's default skips it, and reads would not return zeroes);
- WRITE SAME: the generic path (pacific's Python binding has no `writesame`), with
  `rbd_discard_on_zeroed_write_same = false` set anyway so a future `writesame` of zeroes keeps
  blocks mapped as SBC-4's WRITE SAME without UNMAP asks;
- COMPARE AND WRITE: the SCSI core's generic path under the LU lock (the binding has no
  `compare_and_write`);
- GET LBA STATUS: `diff_iterate(whole_object=True)` from the image's creation: allocation at
  the granularity of RADOS objects (4 MiB by default, the image's `order`);
- resize: `Image.resize`.
The binding takes only `bytes` for writes, so Data-Out is copied once into a bytes object.

Resets across the gateways serving one image travel on the image's events object (rbd_events.py):
`watch_resets(callback)` and `announce_reset()`, both blocking, both never failing the caller.
"""

from __future__ import annotations

import errno as _errno
import importlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._common import ClosedGuard, blocks_in, byte_view, check_block_size, check_pattern
from .base import (
    Backend,
    Buffer,
    FlushFailed,
    MediumError,
    NoSpace,
    ReadOnly,
    StorageError,
    WouldBlock,
)
from .rbd_events import RemoteReset, ResetChannel, events_object

#: librbd options every connection sets (see the module docstring for why)
CLIENT_OPTIONS = {
    # no client-side cache: several gateways may serve one image (docs/scale-out.md), and a
    # gateway's cached blocks would be stale after another's write; durability is then plain
    "rbd_cache": "false",
    "rbd_skip_partial_discard": "false",
    "rbd_discard_on_zeroed_write_same": "false",
    # an operation the cluster does not answer fails (ETIMEDOUT: a MEDIUM ERROR sense) instead of
    # hanging forever; tcmu-runner's rbd handler sets the same with its osd_op_timeout
    "rados_osd_op_timeout": "30",
    "rados_mon_op_timeout": "30",
}
#: seconds a connection attempt to the monitors may take (rados `connect(timeout=)`)
CONNECT_TIMEOUT_S = 10.0
#: objects of images the target creates: 2**22 = 4 MiB, librbd's default
DEFAULT_ORDER = 22


class ClusterUnavailable(StorageError):
    """The Ceph cluster could not be reached (or its bindings are not installed)."""


class ImageMissing(StorageError):
    """The RBD image (or its pool) does not exist."""


def _bindings() -> tuple[Any, Any]:
    try:
        return importlib.import_module("rados"), importlib.import_module("rbd")
    except ImportError as exc:
        raise ClusterUnavailable(
            "the Ceph Python bindings (python3-rados, python3-rbd) are not importable: make ceph-deps"
        ) from exc


def _error(code: int, what: str) -> StorageError:
    """A librbd return code (negative errno) as a StorageError."""
    code = abs(code)
    if code == _errno.ENOSPC or code == _errno.EDQUOT:
        return NoSpace(f"{what}: no space in the pool")
    if code == _errno.ENOENT:
        return ImageMissing(f"{what}: image not found")
    if code == _errno.EROFS:
        return ReadOnly(f"{what}: read-only")
    return MediumError(f"{what}: {_errno.errorcode.get(code, code)}")


def _wrap(exc: Exception, what: str) -> StorageError:
    return _error(getattr(exc, "errno", None) or _errno.EIO, what)


class RbdCluster:
    """One connection to one Ceph cluster (a `rados.Rados`), shared by every RBD extent of the
    process, with one I/O context per pool. `connect()` blocks (a worker thread)."""

    def __init__(self, conffile: str | None = None, client_id: str | None = None) -> None:
        self.conffile = conffile
        self.client_id = client_id
        self._rados: Any = None
        self._ioctx: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._rados is not None

    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect if not connected. Raises ClusterUnavailable naming the reason (never a key)."""
        with self._lock:
            if self._rados is not None:
                return
            rados, _ = _bindings()
            try:
                handle = rados.Rados(conffile=self.conffile or "", rados_id=self.client_id)
            except rados.Error as exc:
                raise ClusterUnavailable(f"Ceph configuration {self.conffile!r}: {exc}") from exc
            try:
                for key, value in CLIENT_OPTIONS.items():
                    handle.conf_set(key, value)
                # connect(timeout=) of pacific's binding does not bound the wait for the monitors
                # (300 s measured): client_mount_timeout does
                handle.conf_set("client_mount_timeout", str(max(1, int(timeout))))
                handle.connect()
            except rados.Error as exc:
                handle.shutdown()
                raise ClusterUnavailable(self._connect_failure(exc)) from exc
            self._rados = handle

    def _connect_failure(self, exc: Exception) -> str:
        """Why connecting failed, in words (never the key: librados reads the keyring itself, and
        its errors name the keyring's path at most). cephx's two failures get their own words:
        librados says "object not found" for a missing keyring and "permission denied" for a key
        the monitors refuse."""
        user = f"client.{self.client_id or 'admin'}"
        where = self.conffile or "default conf"
        code = getattr(exc, "errno", None)
        if code == _errno.ENOENT:
            return (f"cannot connect to the Ceph cluster ({where}) as {user}: no keyring with its key "
                    f"(the conf's `keyring` setting, or /etc/ceph/ceph.{user}.keyring)")
        if code in (_errno.EACCES, _errno.EPERM):
            return (f"cannot connect to the Ceph cluster ({where}) as {user}: the monitors refused it "
                    f"(cephx: a wrong key, or no such user)")
        return f"cannot reach the Ceph cluster ({where}): {type(exc).__name__}: {exc}"

    def ioctx(self, pool: str) -> Any:
        with self._lock:
            if self._rados is None:
                raise ClusterUnavailable("not connected to the Ceph cluster")
            ctx = self._ioctx.get(pool)
            if ctx is None:
                rados, _ = _bindings()
                try:
                    ctx = self._rados.open_ioctx(pool)
                except rados.ObjectNotFound as exc:
                    raise ImageMissing(f"pool {pool!r} does not exist") from exc
                except rados.Error as exc:
                    raise _wrap(exc, f"pool {pool!r}") from exc
                self._ioctx[pool] = ctx
            return ctx

    def pool_id(self, pool: str) -> int:
        return int(self.ioctx(pool).get_pool_id())

    def create_image(self, pool: str, image: str, size: int, order: int = DEFAULT_ORDER) -> None:
        """Create a thin image of `size` bytes (librbd's default features)."""
        _, rbd = _bindings()
        try:
            rbd.RBD().create(self.ioctx(pool), image, size, order=order)
        except rbd.ImageExists:
            return
        except rbd.Error as exc:
            raise _wrap(exc, f"{pool}/{image}") from exc

    def remove_image(self, pool: str, image: str) -> None:
        """Remove the image and its events object (rbd_events.py)."""
        rados, rbd = _bindings()
        ctx = self.ioctx(pool)
        try:
            with rbd.Image(ctx, image, read_only=True) as handle:
                image_id = str(handle.id())
        except rbd.ImageNotFound:
            return
        except rbd.Error as exc:
            raise _wrap(exc, f"{pool}/{image}") from exc
        try:
            rbd.RBD().remove(ctx, image)
        except rbd.ImageNotFound:
            return
        except rbd.Error as exc:
            raise _wrap(exc, f"{pool}/{image}") from exc
        try:
            ctx.remove_object(events_object(image_id))
        except rados.ObjectNotFound:
            pass
        except rados.Error as exc:
            raise _wrap(exc, f"{pool}/{image} events object") from exc

    def image_exists(self, pool: str, image: str) -> bool:
        _, rbd = _bindings()
        try:
            rbd.Image(self.ioctx(pool), image, read_only=True).close()
        except rbd.ImageNotFound:
            return False
        except ImageMissing:
            return False
        return True

    def open(self, pool: str, image: str, block_size: int, read_only: bool) -> RbdBackend:
        """Open the image as a backend (blocking). Raises ImageMissing, ClusterUnavailable, StorageError."""
        _, rbd = _bindings()
        ctx = self.ioctx(pool)
        try:
            handle = rbd.Image(ctx, image, read_only=read_only)
        except rbd.ImageNotFound as exc:
            raise ImageMissing(f"RBD image {pool}/{image} does not exist") from exc
        except rbd.Error as exc:
            raise _wrap(exc, f"{pool}/{image}") from exc
        try:
            image_id = str(handle.id())
            name = f"{pool}/{image}"
            events = ResetChannel(ctx, image_id, self._rados.get_instance_id(), name)
            return RbdBackend(handle, block_size, read_only, name=name,
                              identity=(int(ctx.get_pool_id()), image_id), events=events)
        except BaseException:
            handle.close()
            raise

    def close(self) -> None:
        with self._lock:
            for ctx in self._ioctx.values():
                ctx.close()
            self._ioctx.clear()
            if self._rados is not None:
                self._rados.shutdown()
                self._rados = None


ReadDone = Callable[[memoryview | StorageError], None]
WriteDone = Callable[[StorageError | None], None]


class RbdBackend(Backend):
    """An open RBD image. `identity` is (pool id, image id): the same image under any name."""

    asynchronous = True

    def __init__(self, image: Any, block_size: int, read_only: bool, *, name: str,
                 identity: tuple[int, str], events: ResetChannel | None = None) -> None:
        self.block_size = check_block_size(block_size)
        self.read_only = read_only
        self.name = name
        self.identity = identity
        self._image = image
        self._size = int(image.size())
        self._object_size = int(image.stat()["obj_size"])
        self._closed = ClosedGuard(f"RBD image {name}")
        #: the image's events between gateways (rbd_events.py); None: this process only
        self.events = events

    @property
    def num_blocks(self) -> int:
        return self._size // self.block_size

    @property
    def supports_unmap(self) -> bool:
        return True

    @property
    def unmap_granularity(self) -> int:
        """The image's object size: a discard of part of an object zeroes it, the object stays."""
        return self._object_size

    def _range(self, lba: int, nblocks: int) -> tuple[int, int]:
        self._closed.check()
        self._check(lba, nblocks)
        return lba * self.block_size, nblocks * self.block_size

    def _writable(self) -> None:
        self._closed.check()
        if self.read_only:
            raise ReadOnly(f"RBD image {self.name} is read-only")

    def _payload(self, lba: int, data: Buffer) -> tuple[int, bytes]:
        """(byte offset, the data as bytes: the binding takes nothing else) of a checked write."""
        self._writable()
        view = byte_view(data)
        off, _ = self._range(lba, blocks_in(view, self.block_size))
        return off, view.tobytes()

    # ---- synchronous (worker threads) ---------------------------------------------------------
    def read(self, lba: int, nblocks: int) -> memoryview:
        off, length = self._range(lba, nblocks)
        if not length:
            return memoryview(b"")
        try:
            return memoryview(self._image.read(off, length))
        except Exception as exc:
            raise _wrap(exc, f"read {self.name}") from exc

    def write(self, lba: int, data: Buffer) -> None:
        off, payload = self._payload(lba, data)
        if not payload:
            return
        try:
            self._image.write(payload, off)
        except Exception as exc:
            raise _wrap(exc, f"write {self.name}") from exc

    def write_nowait(self, lba: int, data: Buffer) -> None:
        """A librbd write may wait on the network: never on the event loop (use write_async)."""
        raise WouldBlock

    def flush(self, lba: int = 0, nblocks: int = 0) -> None:
        self._closed.check()
        self._check(lba, nblocks)
        try:
            self._image.flush()
        except Exception as exc:
            raise FlushFailed(f"flush {self.name}: {exc}") from exc

    def unmap(self, lba: int, nblocks: int) -> None:
        self._writable()
        off, length = self._range(lba, nblocks)
        if length:
            try:
                self._image.discard(off, length)
            except Exception as exc:
                raise _wrap(exc, f"discard {self.name}") from exc

    def write_same(self, lba: int, nblocks: int, block: Buffer) -> None:
        """The generic path (pacific's binding has no `writesame`), after the pattern's checks."""
        self._writable()
        super().write_same(lba, nblocks, check_pattern(block, self.block_size))

    def _extents(self, off: int, length: int) -> list[tuple[int, int]]:
        """Byte extents of allocated objects overlapping [off, off+length)."""
        out: list[tuple[int, int]] = []

        def seen(start: int, size: int, exists: bool) -> int:
            if exists:
                out.append((start, size))
            return 0

        try:
            self._image.diff_iterate(off, length, None, seen, include_parent=True, whole_object=True)
        except Exception as exc:
            raise _wrap(exc, f"allocation of {self.name}") from exc
        return sorted(out)

    def allocation(self, lba: int, nblocks: int) -> Iterator[tuple[int, int, bool]]:
        off, length = self._range(lba, nblocks)
        if not length:
            return iter([])
        bs = self.block_size
        runs: list[tuple[int, int, bool]] = []
        pos, end = lba, lba + nblocks

        def add(start: int, stop: int, mapped: bool) -> None:
            if stop <= start:
                return
            if runs and runs[-1][2] == mapped and runs[-1][0] + runs[-1][1] == start:
                runs[-1] = (runs[-1][0], runs[-1][1] + stop - start, mapped)
            else:
                runs.append((start, stop - start, mapped))

        for start, size in self._extents(off, length):
            first = max(pos, start // bs)
            last = min(end, -(-(start + size) // bs))
            add(pos, first, False)
            add(first, last, True)
            pos = max(pos, last)
        add(pos, end, False)
        return iter(runs)

    def allocated_bytes(self) -> int:
        if not self._size:
            return 0
        self._closed.check()
        return sum(min(self._size, s + n) - s for s, n in self._extents(0, self._size))

    def resize(self, size_bytes: int) -> None:
        self._writable()
        if not isinstance(size_bytes, int) or size_bytes < 0:
            raise StorageError(f"size {size_bytes!r} must be a non-negative integer")
        try:
            self._image.resize(size_bytes)
        except Exception as exc:
            raise _wrap(exc, f"resize {self.name}") from exc
        self._size = size_bytes

    # ---- other gateways serving the image (rbd_events.py) --------------------------------------
    def watch_resets(self, on_reset: RemoteReset) -> None:
        """Call `on_reset()` (from a librados thread) when another gateway serving this image
        resets its LU. Blocking; never raises (a watch that cannot be set up is retried)."""
        if self.events is not None:
            self.events.start(on_reset)

    def announce_reset(self) -> bool:
        """Tell the other gateways serving this image that its LU was reset (blocking, bounded:
        rbd_events.RESET_NOTIFY_TIMEOUT_S). True when all acknowledged; never raises."""
        return self.events.announce() if self.events is not None else True

    def close(self) -> None:
        if not self._closed.closed:
            self._closed.closed = True
            if self.events is not None:
                self.events.close()
            self._image.close()

    # ---- asynchronous (the event loop): completions on librbd's threads -----------------------
    def read_async(self, lba: int, nblocks: int, done: ReadDone) -> None:
        """Start the read; `done` gets the data or the StorageError, from a librbd thread."""
        off, length = self._range(lba, nblocks)
        name = self.name

        def complete(comp: Any, data: bytes | None) -> None:
            rv = comp.get_return_value()
            if rv < 0:
                done(_error(rv, f"read {name}"))
            elif data is None or len(data) != length:  # librbd returns short reads past EOF only
                done(memoryview((data or b"").ljust(length, b"\0")))
            else:
                done(memoryview(data))

        try:
            self._image.aio_read(off, length, complete)
        except Exception as exc:
            raise _wrap(exc, f"read {name}") from exc

    def write_async(self, lba: int, data: Buffer, fua: bool, done: WriteDone) -> None:
        """Start the write (and with `fua` a flush after it); `done` gets None or the StorageError,
        from a librbd thread."""
        off, payload = self._payload(lba, data)
        image, name = self._image, self.name

        def flushed(comp: Any) -> None:
            rv = comp.get_return_value()
            done(FlushFailed(f"flush {name}: {_errno.errorcode.get(-rv, rv)}") if rv < 0 else None)

        def written(comp: Any) -> None:
            rv = comp.get_return_value()
            if rv < 0:
                done(_error(rv, f"write {name}"))
            elif fua:
                try:
                    image.aio_flush(flushed)
                except Exception as exc:
                    done(_wrap(exc, f"flush {name}"))
            else:
                done(None)

        try:
            image.aio_write(payload, off, written)
        except Exception as exc:
            raise _wrap(exc, f"write {name}") from exc


__all__ = ["ClusterUnavailable", "ImageMissing", "RbdBackend", "RbdCluster"]
