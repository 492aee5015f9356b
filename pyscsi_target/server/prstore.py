"""Persistent reservation state that must survive restarts (APTPL, SPC-4 §5.13.5.4).

One small JSON file per extent, named after the extent's NAA (stable for the extent's life, and
different for a new extent that happens to get the same id), under `<data-dir>/pr/`. Writes are
atomic and durable (write a temporary file, fsync, rename, fsync the folder) because the PERSISTENT
RESERVE OUT that changes the state must not complete before the state is safe. When the initiator
clears APTPL the file is removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: folder under the data dir
PR_DIR_NAME = "pr"
#: the state files hold registration keys: owner only
PR_FILE_MODE = 0o600


class PrStore:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / PR_DIR_NAME

    def _path(self, naa: str) -> Path:
        safe = "".join(c for c in naa.lower() if c.isalnum())
        return self.dir / f"{safe}.json"

    def saved(self) -> set[str] | None:
        """The names of the saved states (one listing for a batch of `load`s that mostly find
        nothing, issue #12), or None if the folder cannot be listed (then `load` each)."""
        try:
            return set(os.listdir(self.dir))
        except FileNotFoundError:
            return set()
        except OSError:
            return None

    def has(self, naa: str, saved: set[str]) -> bool:
        """False if `saved` (from `saved()`) shows there is no state for `naa`."""
        return self._path(naa).name in saved

    def load(self, naa: str) -> dict[str, Any] | None:
        """The saved state, None if there is none; OSError or ValueError if it cannot be read."""
        try:
            with open(self._path(naa), encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):  # unreadable is not "no reservations" (issue #10 item 11)
            raise ValueError(f"{self._path(naa)}: not a JSON object")
        return data

    def save(self, naa: str, state: dict[str, object]) -> None:
        """Called by the SCSI core before a PR OUT completes; OSError fails that command."""
        path = self._path(naa)
        if not state.get("aptpl"):
            try:
                path.unlink()
            except FileNotFoundError:
                return
            self._sync_dir()
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PR_FILE_MODE)
        try:
            os.write(fd, json.dumps(state, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
