"""`pyscsi-target config export` and `config import`: backup and restore of the configuration
(issue #10 item 12).

- export: a consistent snapshot of `<data-dir>/config.db` (model.store.read_snapshot: a read
  transaction on a read-only connection, so commits still in the WAL are included, also while a
  server runs) as the JSON document of api/backup.py. Secrets included: the output is a backup.
- import: the document is parsed and validated as a whole first (api/backup.py, the API's own
  field tables and rules, against the extent and device roots given); only then is the data
  directory locked like a server locks it (refused while a server runs on it), and the configuration
  written in one transaction. A directory that already holds a configuration is only overwritten
  with `replace=True`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..api.backup import export_document, import_document
from ..model import Config, ConfigError, ConfigStore
from ..model.store import read_snapshot
from ..model.validation import NON_FIELD, ValidationContext
from .datadir import DataDirLock, private_umask, tighten_modes
from .options import OptionsError, ServerOptions


class ImportRefused(OptionsError):
    """The import would overwrite an existing configuration without `--replace`."""


def export_json(data_dir: Path) -> str:
    """The configuration of `data_dir` as the backup document's JSON text (ends with a newline)."""
    cfg = read_snapshot(data_dir / "config.db")
    return json.dumps(export_document(cfg, __version__), indent=2, ensure_ascii=False) + "\n"


def parse_backup(text: str | bytes, options: ServerOptions) -> Config:
    """The configuration in `text` (JSON; bytes in UTF-8, -16 or -32), validated for the extent and
    device roots of `options`; ConfigError with every problem otherwise. Reads nothing in the data
    directory."""
    try:
        doc = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError({NON_FIELD: [f"Not a JSON document: {exc}"]}) from exc
    roots = [str(r) for r in options.resolved_extent_roots()]
    return import_document(doc, ValidationContext.of(roots, str(options.device_root), options.allow_file_devices))


def import_config(cfg: Config, data_dir: Path, *, replace: bool) -> None:
    """Write `cfg` (from `parse_backup`) as the configuration of `data_dir`, holding the data
    directory's lock meanwhile. Raises DataDirInUse, ImportRefused or StoreError."""
    with private_umask():
        lock = DataDirLock.acquire(data_dir)
        try:
            tighten_modes(data_dir)
            store = ConfigStore(data_dir / "config.db")
            try:
                current = store.load()
                if not replace and not current.is_empty():
                    count = sum(len(getattr(current, c)) for c in Config.COLLECTIONS)
                    raise ImportRefused(
                        f"{data_dir} already holds a configuration ({count} objects): nothing imported. "
                        "Give --replace to overwrite it."
                    )
                store.save(cfg)
            finally:
                store.close()
        finally:
            lock.release()
