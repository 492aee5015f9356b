"""Build the guest of the Linux-initiator tests (issue #16): a Debian kernel and an initramfs holding
open-iscsi, multipath-tools, e2fsprogs, util-linux and busybox, all taken from Debian packages.

The packages are fetched with `apt-get download` (never installed on the host), unpacked with
`dpkg-deb -x`, and the initramfs is assembled here in Python: the kernel modules the checks need
(with their dependencies, read from each module's `.modinfo`, loaded by /init in dependency order),
the user-space tools and exactly the shared libraries they link (resolved with `ldd` against the
unpacked tree; a library not found there fails the build), the guest scripts of this directory.

The result is cached under ~/.cache/pyscsi-target/guest/<key>, where the key hashes the packages'
versions, this file and the guest scripts; a build happens in a temporary directory renamed into
place, so a cache entry is complete or absent. Run `python -m tests.linux_initiator.build` to
build (or find) it and print its directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: guest-side files copied into the initramfs (their bytes are part of the cache key)
GUEST_FILES = {"init": "init", "checks.sh": "checks.sh"}
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pyscsi-target" / "guest"
#: the kernel metapackage; its Depends names the real image package (linux-image-6.x-amd64)
KERNEL_META = "linux-image-amd64"
#: Debian packages whose files go into the guest: the tools and every library they link
PACKAGES = (
    "busybox-static", "open-iscsi", "multipath-tools", "e2fsprogs", "util-linux",
    # libraries of the above (bookworm names)
    "libc6", "libisns0", "libopeniscsiusr", "libkmod2", "libssl3", "libmount1", "libblkid1",
    "libselinux1", "libpcre2-8-0", "libsystemd0", "libcap2", "libgcrypt20", "libgpg-error0",
    "liblz4-1", "liblzma5", "libzstd1", "libudev1", "libdevmapper1.02.1", "libaio1", "libjson-c5",
    "liburcu8", "libedit2", "libbsd0", "libmd0", "libtinfo6", "libext2fs2",
    "libcom-err2", "libss2", "libuuid1", "libsmartcols1", "zlib1g", "libcrypt1", "libcap-ng0",
    "libgcc-s1",
)
#: libraries loaded with dlopen(), which `ldd` cannot see: glibc's pthread_cancel needs libgcc_s
#: (multipathd cancels its threads on shutdown and aborts without it)
DLOPENED = ("lib/x86_64-linux-gnu/libgcc_s.so.1",)
#: executables copied into /sbin of the guest (path inside the unpacked packages)
TOOLS = (
    "sbin/iscsiadm", "sbin/iscsid", "sbin/multipath", "sbin/multipathd", "sbin/mke2fs",
    "sbin/e2fsck", "sbin/fstrim", "sbin/blkdiscard",
)
#: kernel modules the checks need; their dependencies are added from `.modinfo`
MODULES = (
    "virtio_pci", "virtio_net", "crc32c_generic", "iscsi_tcp", "sd_mod", "dm-multipath",
    "dm-round-robin", "dm-service-time", "ext4",
)
#: seconds apt-get may take for one call
APT_TIMEOUT_S = 600


class BuildError(RuntimeError):
    """The guest cannot be built here (no apt, a package or library missing, ...)."""


@dataclass(frozen=True)
class Guest:
    """A built guest: the kernel and the base initramfs (gzip-compressed newc cpio)."""

    root: Path

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.gz"

    @property
    def busybox(self) -> Path:
        """The static busybox, also used on the host as the per-connection relay of guestfwd."""
        return self.root / "busybox"

    @property
    def versions(self) -> str:
        return (self.root / "versions").read_text()


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} is not available: {exc}") from exc
    if done.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def _candidates(names: list[str]) -> dict[str, str]:
    """package -> candidate version, from apt's lists (`apt-get update` once if one is missing)."""
    def show() -> dict[str, str]:
        try:
            out = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True,
                                 text=True, timeout=APT_TIMEOUT_S).stdout
        except FileNotFoundError as exc:
            raise BuildError(f"apt-cache is not available: {exc}") from exc
        found: dict[str, str] = {}
        for stanza in out.split("\n\n"):
            pkg = re.search(r"^Package: (\S+)", stanza, re.M)
            ver = re.search(r"^Version: (\S+)", stanza, re.M)
            if pkg and ver:
                found.setdefault(pkg.group(1), ver.group(1))
        return found

    found = show()
    if set(names) - set(found):
        _run(["apt-get", "update", "-q"])
        found = show()
    missing = sorted(set(names) - set(found))
    if missing:
        raise BuildError(f"apt knows no candidate for: {', '.join(missing)}")
    return found


def kernel_package() -> str:
    """The real kernel image package the metapackage depends on."""
    _candidates([KERNEL_META])
    out = _run(["apt-cache", "show", "--no-all-versions", KERNEL_META])
    m = re.search(r"^Depends:.*?(linux-image-[0-9][^\s,]*-amd64)", out, re.M)
    if m is None:
        raise BuildError(f"{KERNEL_META} names no linux-image-*-amd64 package")
    return m.group(1)


def cache_key(versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(versions):
        h.update(f"{name}={versions[name]}\n".encode())
    h.update(Path(__file__).read_bytes())
    for src in sorted(GUEST_FILES):
        h.update((HERE / src).read_bytes())
    return h.hexdigest()[:16]


def ensure_guest() -> Guest:
    """The cached guest for the current package versions, built first if absent."""
    names = [kernel_package(), *PACKAGES]
    versions = _candidates(names)
    root = CACHE_ROOT / cache_key(versions)
    if (root / "versions").exists():
        return Guest(root)
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT, prefix=".build-") as tmp:
        work = Path(tmp)
        _build(work, names, versions)
        out = work / "out"
        try:
            out.rename(root)
        except OSError:
            if not (root / "versions").exists():  # not a concurrent build that finished first
                raise
    return Guest(root)


# ---- the build ---------------------------------------------------------------------------------


def _download(debs: Path, names: list[str], versions: dict[str, str]) -> None:
    debs.mkdir()
    os.chmod(debs, 0o777)  # apt-get download drops to the _apt user when it can
    _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
          *[f"{n}={versions[n]}" for n in names]], cwd=debs)


def _unpack(debs: Path, tree: Path) -> None:
    tree.mkdir()
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(tree)])


def _modinfo_depends(ko: Path) -> list[str]:
    """The `depends=` field of a module's .modinfo section (names with '-' or '_' as written)."""
    m = re.search(rb"\0depends=([^\0]*)\0", ko.read_bytes())
    if m is None or not m.group(1):
        return []
    return m.group(1).decode().split(",")


def _module_order(moddir: Path) -> list[Path]:
    """MODULES and their dependencies, each after the modules it depends on."""
    by_name: dict[str, Path] = {}
    for ko in moddir.rglob("*.ko"):
        by_name[ko.stem.replace("-", "_")] = ko
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        ko = by_name.get(key)
        if ko is None:
            raise BuildError(f"kernel module {name} is not in the kernel package")
        for dep in _modinfo_depends(ko):
            visit(dep)
        order.append(ko)

    for name in MODULES:
        visit(name)
    return order


def _libraries(tree: Path, binaries: list[Path]) -> set[Path]:
    """Every shared library the binaries load, as paths inside `tree` by soname (the loader's `--list`
    with the tree's library directories first; a library resolved outside the tree is an error)."""
    libdirs = [tree / "lib/x86_64-linux-gnu", tree / "usr/lib/x86_64-linux-gnu", tree / "lib"]
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(map(str, libdirs))}
    loader = tree / "lib64/ld-linux-x86-64.so.2"
    found: set[Path] = {loader}
    for binary in binaries:
        done = subprocess.run([str(loader), "--list", str(binary)], capture_output=True, text=True,
                              env=env, timeout=60)
        if "not a dynamic executable" in done.stdout + done.stderr:
            continue
        if done.returncode != 0:
            raise BuildError(f"ldd {binary} failed: {done.stderr.strip()}")
        for line in done.stdout.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m is None:
                continue
            if m.group(2) == "not":
                raise BuildError(f"{binary.name} needs {m.group(1)}, which no listed package provides")
            path = Path(m.group(2))
            if tree not in path.parents:
                raise BuildError(f"{binary.name} needs {m.group(1)}, found only on the host at {path}")
            found.add(path)
    return found


class Cpio:
    """A newc cpio archive written in memory, deterministic (mtime 0, fixed inode numbers)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        raw = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        self.buf.write(b"\0" * (-(110 + len(raw)) % 4) + data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self._entry(d, 0o40755, b"")

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, 0o120777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"")
        return self.buf.getvalue()


def _build(work: Path, names: list[str], versions: dict[str, str]) -> None:
    debs, tree, out = work / "debs", work / "tree", work / "out"
    _download(debs, names, versions)
    _unpack(debs, tree)
    out.mkdir()
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"expected one kernel image in {names[0]}, found {kernels}")
    kver = kernels[0].name.removeprefix("vmlinuz-")
    shutil.copyfile(kernels[0], out / "vmlinuz")
    shutil.copyfile(tree / "bin/busybox", out / "busybox")
    os.chmod(out / "busybox", 0o755)

    cpio = Cpio()
    for d in ("dev", "proc", "sys", "run", "tmp", "etc/iscsi", "var/lib/iscsi", "var/lock", "mnt"):
        cpio.dir(d)
    cpio.file("bin/busybox", (tree / "bin/busybox").read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    for src, dst in GUEST_FILES.items():
        cpio.file(dst, (HERE / src).read_bytes(), 0o755)
    binaries = [tree / t for t in TOOLS]
    for b in binaries:
        if not b.exists():
            raise BuildError(f"{b.relative_to(tree)} is in none of the packages")
        cpio.file(f"sbin/{b.name}", b.read_bytes(), 0o755)
    plugins = sorted((tree / "lib/multipath").glob("*.so"))  # checkers and prioritizers, dlopen()ed
    for p in plugins:
        cpio.file(f"lib/multipath/{p.name}", p.read_bytes())
    dlopened = [tree / lib for lib in DLOPENED]
    for lib in sorted(_libraries(tree, binaries + plugins + dlopened) | set(dlopened)):
        # stored under the soname the loader looks for, with the bytes of the file it points to
        cpio.file(str(lib.relative_to(tree)), lib.resolve().read_bytes(), 0o755)
    order = _module_order(tree / "lib/modules" / kver)
    for ko in order:
        cpio.file(f"lib/modules/{ko.name}", ko.read_bytes())
    cpio.file("lib/modules/order", "".join(f"{ko.name}\n" for ko in order).encode())
    with gzip.GzipFile(out / "initrd.gz", "wb", compresslevel=6, mtime=0) as gz:
        gz.write(cpio.finish())
    (out / "versions").write_text("".join(f"{n}={versions[n]}\n" for n in sorted(versions)))


def main() -> int:
    try:
        guest = ensure_guest()
    except BuildError as exc:
        print(f"cannot build the guest: {exc}", file=sys.stderr)
        return 1
    print(guest.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
