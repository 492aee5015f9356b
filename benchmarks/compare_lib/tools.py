"""Finding or building the external programs the comparison drives.

fio must carry its `libiscsi` ioengine (Debian's fio binary is built without it), so we build it
from Debian's own fio source package: the same steps as the project's
`shared/tools/build-fio-libiscsi`, re-done here so that `benchmarks/compare` works from a clean
clone. The build is cached (default `~/.cache/fio-libiscsi`) and reused when it still lists the
engine. tgt (`tgtd`, `tgtadm`), istgt and libiscsi's `iscsi-perf` come from Debian packages, installed
with the repository's `scripts/apt-install` when missing. Everything here needs root for apt-get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
APT_INSTALL = REPO_ROOT / "scripts" / "apt-install"

#: Debian packages fio's configure needs to enable the libiscsi engine (fio's `configure`
#: probes `libiscsi` with pkg-config; zlib and libaio are fio's usual build dependencies).
FIO_BUILD_PACKAGES = ("build-essential", "pkg-config", "libiscsi-dev", "zlib1g-dev", "libaio-dev")
#: Where the fio build is cached unless told otherwise (shared with shared/tools/build-fio-libiscsi).
DEFAULT_FIO_PREFIX = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fio-libiscsi"
#: Debian mirror the deb-src entry points at (the same host the machine's binary sources use).
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: Keyring that signs Debian's archive (package debian-archive-keyring).
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: Upper bound for one apt-get / configure / make step, seconds (a cold fio build takes ~2 min on 2 cores).
STEP_TIMEOUT_S = 1200


class ToolError(RuntimeError):
    """A required program is missing and could not be installed or built (the message says why)."""


def fio_has_libiscsi(fio: Path | str) -> bool:
    """True if `fio --enghelp` lists the libiscsi ioengine."""
    try:
        out = subprocess.run([str(fio), "--enghelp"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.strip() == "libiscsi" for line in out.splitlines())


def find_fio(prefix: Path = DEFAULT_FIO_PREFIX) -> Path | None:
    """An already usable fio with libiscsi: `$FIO`, the cached build, then fio on PATH."""
    candidates = [os.environ.get("FIO"), str(prefix / "bin" / "fio"), shutil.which("fio")]
    for cand in candidates:
        if cand and Path(cand).is_file() and fio_has_libiscsi(cand):
            return Path(cand)
    return None


def apt_install(*packages: str) -> None:
    """Install Debian packages with scripts/apt-install (runs apt-get update only if needed)."""
    res = subprocess.run([str(APT_INSTALL), *packages], capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    if res.returncode != 0:
        raise ToolError(f"apt-get install {' '.join(packages)} failed: {res.stderr.strip()[-500:]}")


def _run(argv: list[str], cwd: Path, what: str) -> None:
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip()[-800:]
        raise ToolError(f"{what} failed (exit {res.returncode}): {tail}")


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise ToolError("cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release)")


def _fetch_fio_source(work: Path) -> Path:
    """Download Debian's fio source package with a private deb-src list; return the source dir."""
    apt_dir = work / "apt"
    (apt_dir / "lists" / "partial").mkdir(parents=True)
    (apt_dir / "src.sources").write_text(
        f"Types: deb-src\nURIs: {DEBIAN_MIRROR}\nSuites: {_codename()}\nComponents: main\n"
        f"Signed-By: {DEBIAN_KEYRING}\n"
    )
    opts = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={apt_dir}",
            "-o", f"Dir::State::Lists={apt_dir / 'lists'}"]
    _run(["apt-get", *opts, "update", "-q"], work, "apt-get update (deb-src)")
    _run(["apt-get", *opts, "source", "--download-only", "-q", "fio"], work, "apt-get source fio")
    tarballs = sorted(work.glob("fio_*.orig.tar.*"))
    if not tarballs:
        raise ToolError("apt-get source fio produced no fio_*.orig.tar.* tarball")
    _run(["tar", "-xf", str(tarballs[0]), "-C", str(work)], work, "unpacking fio source")
    dirs = [d for d in work.glob("fio-*") if d.is_dir()]
    if not dirs:
        raise ToolError("fio source tarball did not unpack into fio-*/")
    return dirs[0]


def _compile_fio(src: Path, prefix: Path) -> None:
    _run(["./configure", f"--prefix={prefix}", "--enable-libiscsi"], src, "fio configure")
    if "CONFIG_LIBISCSI=y" not in (src / "config-host.mak").read_text():
        raise ToolError("fio's configure did not enable libiscsi (is libiscsi-dev installed?)")
    _run(["make", f"-j{os.cpu_count() or 1}"], src, "fio make")
    _run(["make", "install"], src, "fio make install")


def build_fio(prefix: Path = DEFAULT_FIO_PREFIX) -> Path:
    """Build fio with libiscsi from Debian's source package into `prefix`; return its path."""
    apt_install(*FIO_BUILD_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="fio-build-") as tmp:
        src = _fetch_fio_source(Path(tmp))
        _compile_fio(src, prefix)
    fio = prefix / "bin" / "fio"
    if not fio_has_libiscsi(fio):
        raise ToolError(f"{fio} was built but does not list the libiscsi engine")
    return fio


def ensure_fio(prefix: Path = DEFAULT_FIO_PREFIX) -> Path:
    """A fio with libiscsi: found (see find_fio) or built once into the cache."""
    return find_fio(prefix) or build_fio(prefix)


def ensure_programs(*names: str, package: str) -> dict[str, Path]:
    """Paths of `names`, installing Debian `package` first if any is missing."""
    if any(shutil.which(n) is None for n in names):
        apt_install(package)
    found = {n: shutil.which(n) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise ToolError(f"{', '.join(missing)} still missing after installing {package}")
    return {n: Path(p) for n, p in found.items() if p is not None}


def ensure_tgt() -> dict[str, Path]:
    """tgtd and tgtadm (Debian package tgt)."""
    return ensure_programs("tgtd", "tgtadm", package="tgt")


def ensure_istgt() -> dict[str, Path]:
    """istgt (Debian package istgt: the FreeBSD/FreeNAS userspace target, issue #17's reference)."""
    return ensure_programs("istgt", package="istgt")


def ensure_iscsi_perf() -> Path:
    """libiscsi's iscsi-perf (Debian package libiscsi-bin)."""
    return ensure_programs("iscsi-perf", package="libiscsi-bin")["iscsi-perf"]
