"""`Mapping`: a shared mapping of a file that holds no descriptor of its own (issue #10 item 11).

Python 3.11's `mmap.mmap` dup()s the descriptor it maps (`trackfd=False` exists only from 3.13),
so every mapped extent cost two descriptors and 500 extents exhausted `ulimit -n 800`. Here
mmap(2), msync(2), madvise(2) and munmap(2) are called through ctypes on the backend's own
descriptor. The bytes are exported as a numpy array over the mapped address; memoryviews of it
keep that array alive, and the range is unmapped when the array goes (`weakref.finalize`): after
`close()` and the release of the last view, so a view being sent never points at unmapped memory
(what `mmap.mmap`'s export counter guaranteed).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref

import numpy as np

_libc = ctypes.CDLL(None, use_errno=True)
_c_mmap = _libc.mmap
_c_mmap.restype = ctypes.c_void_p
_c_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_c_munmap = _libc.munmap
_c_munmap.restype = ctypes.c_int
_c_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_c_msync = _libc.msync
_c_msync.restype = ctypes.c_int
_c_msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_c_madvise = _libc.madvise
_c_madvise.restype = ctypes.c_int
_c_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

#: msync(2) flag: write back and wait (Linux value, <sys/mman.h>)
MS_SYNC = 4
_MAP_FAILED = ctypes.c_void_p(-1).value


def _raise_errno() -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))


def _unmap(address: int, length: int) -> None:
    _c_munmap(address, length)


class Mapping:
    """`length` bytes of `fd` from offset 0, MAP_SHARED; `view` is a byte memoryview of them."""

    def __init__(self, fd: int, length: int, writable: bool) -> None:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        address = _c_mmap(None, length, prot, mmap.MAP_SHARED, fd, 0)
        if address is None or address == _MAP_FAILED:
            _raise_errno()
        assert address is not None
        self.address: int = address
        self.length = length
        raw = (ctypes.c_ubyte * length).from_address(address)
        array = np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8)
        self._finalizer = weakref.finalize(array, _unmap, address, length)
        self._array: np.ndarray | None = array
        self.view = memoryview(array.data)

    def flush(self, offset: int, length: int) -> None:
        """msync(MS_SYNC) of the range (`offset` page-aligned), as mmap.mmap.flush()."""
        if _c_msync(self.address + offset, length, MS_SYNC) != 0:
            _raise_errno()

    def madvise(self, advice: int) -> None:
        if _c_madvise(self.address, self.length, advice) != 0:
            _raise_errno()

    def close(self) -> bool:
        """Drop this object's hold; True if the range is unmapped now, False if views still
        being sent keep it until they are released."""
        self.view.release()
        self._array = None
        return not self._finalizer.alive

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


def is_mapped_view(view: memoryview) -> bool:
    """True if `view` shows bytes of a `Mapping` (not a private copy)."""
    obj = view.obj
    return isinstance(obj, np.ndarray) and isinstance(getattr(obj.base, "obj", None), ctypes.Array)
