"""The data directory as a service owns it (issue #10 items 4, 8, 11): one process at a time,
private modes, and enough file descriptors.

- `DataDirLock.acquire`: an exclusive `flock(2)` on `<data-dir>/lock`, held for the life of the
  process (or of `config import`), taken before anything else in the directory is written. A second
  server on the same directory fails at once with `DataDirInUse`, naming the holder's pid, which the
  holder wrote into the lock file after locking. flock locks belong to the open file description, so
  the kernel drops the lock when the holder exits, even after SIGKILL: no stale lock to clean up.
- `private_umask` and `tighten_modes`: the directory holds CHAP secrets in clear (config.db and its
  WAL) and the API password, so it is 0700 and every file in it 0600. New files get that from the
  umask while the server runs; files and folders left with wider modes by older versions are
  tightened at start-up, one WARNING line each.
- `raise_fd_limit`: the soft RLIMIT_NOFILE raised to the hard limit (every extent and connection
  holds descriptors; systemd's and most shells' soft limit is 1024), logged as one INFO line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import resource
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from .options import OptionsError

log = logging.getLogger("pyscsi_target")

#: the lock file inside the data directory (holds the pid of the process that holds the lock)
LOCK_FILE_NAME = "lock"
#: mode of the data directory and of every folder in it: owner only (secrets inside, issue #10 item 4)
DATA_DIR_MODE = 0o700
#: mode of every file in the data directory: owner read/write only
DATA_FILE_MODE = 0o600
#: the serve path's umask: new files 0600, new folders 0700
PRIVATE_UMASK = 0o077
#: longest pid text read back from a lock file, bytes
PID_TEXT_MAX_BYTES = 32


class DataDirInUse(OptionsError):
    """Another process holds the data directory's lock."""


class DataDirLock:
    """An exclusive lock on one data directory; `release()` (or process exit) gives it up."""

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Create the directory (0700) if needed, lock it, write our pid. Blocking but instant:
        never waits for the holder (LOCK_NB). Raises `DataDirInUse` or OSError."""
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        path = data_dir / LOCK_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, DATA_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            who = f"pid {holder}" if holder else "another process"
            raise DataDirInUse(
                f"data directory {data_dir} is in use by {who} (lock {path}); stop that server first"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(data_dir, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, PID_TEXT_MAX_BYTES, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class _UmaskUsers:
    """The umask is process-wide, and in-process servers (tests) may overlap without nesting: the
    first user sets it, the last one restores what was there before."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.saved = 0

    def enter(self) -> None:
        with self.lock:
            if self.count == 0:
                self.saved = os.umask(PRIVATE_UMASK)
            self.count += 1

    def leave(self) -> None:
        with self.lock:
            self.count -= 1
            if self.count == 0:
                os.umask(self.saved)


_UMASK_USERS = _UmaskUsers()


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files the process creates meanwhile are 0600 and folders 0700 (unless created with an
    explicit narrower mode); the umask from before is back once no block uses it any more."""
    _UMASK_USERS.enter()
    try:
        yield
    finally:
        _UMASK_USERS.leave()


def tighten_modes(data_dir: Path) -> list[tuple[Path, int, int]]:
    """Make `data_dir` and every folder in it 0700 and every regular file 0600 (never wider than
    before: a 0400 file stays 0400). Symbolic links are not followed. Each change is logged as a
    WARNING and returned as (path, old mode, new mode)."""
    changed: list[tuple[Path, int, int]] = []

    def fix(path: Path, mode: int, wanted: int) -> None:
        old = stat.S_IMODE(mode)
        if old != wanted:
            os.chmod(path, wanted, follow_symlinks=False)
            changed.append((path, old, wanted))
            log.warning("%s had mode %04o, readable by others (it may hold secrets): changed to %04o",
                        path, old, wanted)

    fix(data_dir, os.lstat(data_dir).st_mode, DATA_DIR_MODE)
    for folder, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                fix(path, mode, DATA_DIR_MODE)
            elif stat.S_ISREG(mode):
                fix(path, mode, stat.S_IMODE(mode) & DATA_FILE_MODE)
    return changed


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; log and return the descriptors available."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a hard limit above fs.nr_open
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, hard, exc)
            hard = soft
    def shown(limit: int) -> str:
        return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)

    log.info("file descriptors available: %s (soft RLIMIT_NOFILE %s -> %s, the hard limit)",
             shown(hard), shown(soft), shown(hard))
    return hard


@contextlib.contextmanager
def claimed(data_dir: Path) -> Iterator[DataDirLock]:
    """What `serve` does before it writes anything: private umask, the lock, modes tightened, the
    descriptor budget raised. The lock and the umask last until the block ends."""
    with private_umask():
        lock = DataDirLock.acquire(data_dir)
        try:
            tighten_modes(data_dir)
            raise_fd_limit()
            yield lock
        finally:
            lock.release()
