"""The kernel's bitmap print formats: %*pb (mask) and %*pbl (list), spec §0.3."""

from __future__ import annotations


def mask_str(bits: int, nbits: int) -> str:
    """Hex chunks of 32 bits, most significant first; the top chunk has
    only as many digits as its bit count needs."""
    nchunks = (nbits + 31) // 32
    top_bits = nbits % 32 or 32
    parts = []
    for i in range(nchunks - 1, -1, -1):
        chunk = (bits >> (32 * i)) & 0xFFFFFFFF
        width = (top_bits + 3) // 4 if i == nchunks - 1 else 8
        parts.append(format(chunk, "x").rjust(width, "0"))
    return ",".join(parts)


def list_str(bits: int) -> str:
    """Ascending runs joined by commas; a run of two or more is 'a-b'."""
    out = []
    i = 0
    while bits >> i:
        if not (bits >> i) & 1:
            # skip a run of zeros in one step
            low = (bits >> i) & -(bits >> i)
            i += low.bit_length() - 1
            continue
        start = i
        while (bits >> i) & 1:
            i += 1
        out.append(str(start) if i - 1 == start else f"{start}-{i - 1}")
    return ",".join(out)


def parse_list(text: str, nbits: int) -> int:
    """Parse '0-3,8' into a bitmask; ValueError on anything malformed."""
    bits = 0
    text = text.strip()
    if not text:
        return 0
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        a = int(lo)
        # "1-" is malformed (bitmap_parselist: EINVAL), not the single bit 1
        b = int(hi) if dash else a
        if a < 0 or b < a or b >= nbits:
            raise ValueError(f"cpu range {part!r} out of 0-{nbits - 1}")
        bits |= ((1 << (b - a + 1)) - 1) << a
    return bits


def iter_bits(bits: int):
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low
