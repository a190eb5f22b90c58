"""Where the swap area lives (mm/swapfile.c's swap_info_struct: swap_file,
bdev, prio) and /proc/swaps' line for it. The area's slots and counts are
procsim/mm/swap.py's SwapDevice; this is its place on the disks: a swap
partition (its I/O goes to the partition) or a swap file on a
filesystem (its I/O goes to the disk under that filesystem, as 6.18's
swap-over-extents maps file offsets to the block device).
"""

from __future__ import annotations

from dataclasses import dataclass

from procsim.block.genhd import BlockDevice
from procsim.mm.swap import SwapDevice

DEFAULT_SWAP_FILE = "/swapfile"
DEFAULT_PRIORITY = -2  # the first swapon without a priority (--least_priority from -1)


@dataclass(slots=True, eq=False)
class SwapArea:
    filename: str        # what swapon was given: /dev/vdb2, /swapfile
    partition: bool      # S_ISBLK: "partition", else "file"
    bdev: BlockDevice    # where its I/O goes
    prio: int = DEFAULT_PRIORITY


def swap_show(area: SwapArea, si: SwapDevice) -> str:
    """swap_show(): one line of /proc/swaps (sizes in kB: si->pages, swap_usage_in_pages)."""
    name = "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in area.filename)
    ln = len(name)
    size = si.pages * 4
    used = si.inuse_pages * 4
    kind = "partition" if area.partition else "file\t"
    return (f"{name}{' ' * (40 - ln if ln < 40 else 1)}{kind}\t{size}\t{chr(9) if size < 10000000 else ''}"
            f"{used}\t{chr(9) if used < 10000000 else ''}{area.prio}\n")


SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
