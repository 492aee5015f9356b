"""A deliberately simple model of a thin-provisioned extent, to check backends against.

Bytes live in a bytearray. Allocation is tracked per allocation unit (a block in memory, a
file-system block in files): a write maps every unit it touches; an unmap deallocates only the units
it covers completely (a partial unit is zeroed but stays mapped, as hole punching does).
"""

from __future__ import annotations


class Reference:
    def __init__(self, num_blocks: int, block_size: int, unit: int) -> None:
        self.block_size = block_size
        self.unit = unit
        self.data = bytearray(num_blocks * block_size)
        self.mapped = [False] * -(-len(self.data) // unit)

    def write(self, lba: int, payload: bytes) -> None:
        start = lba * self.block_size
        self.data[start : start + len(payload)] = payload
        for u in range(start // self.unit, -(-(start + len(payload)) // self.unit)):
            self.mapped[u] = True

    def unmap(self, lba: int, nblocks: int) -> None:
        start, end = lba * self.block_size, (lba + nblocks) * self.block_size
        self.data[start:end] = bytes(end - start)
        for u in range(-(-start // self.unit), end // self.unit):
            self.mapped[u] = False

    def block_mapped(self, lba: int) -> bool:
        first = lba * self.block_size // self.unit
        last = ((lba + 1) * self.block_size - 1) // self.unit
        return any(self.mapped[first : last + 1])

    def runs(self, lba: int, nblocks: int) -> list[tuple[int, int, bool]]:
        out: list[tuple[int, int, bool]] = []
        for b in range(lba, lba + nblocks):
            state = self.block_mapped(b)
            if out and out[-1][2] == state:
                out[-1] = (out[-1][0], out[-1][1] + 1, state)
            else:
                out.append((b, 1, state))
        return out
