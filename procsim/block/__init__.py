"""Block devices (block/): the machine's disks and partitions (genhd.py),
the bios the memory model submits to them and the per-device service-time
model that times them (blk_core.py), writeback of dirty page cache
(writeback.py) and the swap area's place on a disk (swapfile.py)."""
