"""The kernel's bitmap print formats: %*pb and %*pbl (spec §0.3, seed-mechanisms §1.2)."""

import pytest

from procsim.bitmap import iter_bits, list_str, mask_str, parse_list


def bits(*idx: int) -> int:
    out = 0
    for i in idx:
        out |= 1 << i
    return out


def span(a: int, b: int) -> int:
    """Bits a..b inclusive."""
    return ((1 << (b - a + 1)) - 1) << a


# spec §0.3, mask format table
@pytest.mark.parametrize("nbits, mask, printed", [
    (2, bits(0, 1), "3"),
    (2, bits(1), "2"),
    (8, bits(3, 5), "28"),
    (12, 0, "000"),
    (16, span(0, 3) | bits(8), "010f"),
    (36, bits(0, 35), "8,00000001"),
    (64, span(0, 63), "ffffffff,ffffffff"),
    (1024, bits(0), "00000000," * 31 + "00000001"),
])
def test_mask_spec_table(nbits, mask, printed):
    assert mask_str(mask, nbits) == printed


# seed-mechanisms §1.2: nr_cpu_ids x {empty, {3,5}, all}
@pytest.mark.parametrize("nbits, empty, three_five, full", [
    (4, "0", None, "f"),
    (8, "00", "28", "ff"),
    (12, "000", "028", "fff"),
    (36, "0,00000000", "0,00000028", "f,ffffffff"),
    (64, "00000000,00000000", "00000000,00000028", "ffffffff,ffffffff"),
])
def test_mask_seed_table(nbits, empty, three_five, full):
    assert mask_str(0, nbits) == empty
    if three_five is not None:
        assert mask_str(bits(3, 5), nbits) == three_five
    assert mask_str((1 << nbits) - 1, nbits) == full


def test_mask_chunk_widths():
    # a multiple of 32 bits: the top chunk is a full 8 digits
    assert mask_str(bits(32), 64) == "00000001,00000000"
    assert mask_str(bits(0), 32) == "00000001"
    # 33 bits: a one-digit top chunk
    assert mask_str(bits(32), 33) == "1,00000000"
    assert mask_str(0, 1) == "0"
    assert mask_str(1, 1) == "1"
    # lower-case hex
    assert mask_str(span(0, 7) << 8, 16) == "ff00"


@pytest.mark.parametrize("mask, printed", [
    (0, ""),
    (bits(0, 1), "0-1"),               # not "0,1"
    (span(0, 3) | bits(8), "0-3,8"),
    (bits(0, 2) | span(4, 7), "0,2,4-7"),
    (bits(3, 5), "3,5"),
    (bits(3), "3"),
    (bits(1), "1"),
    (span(0, 63), "0-63"),
    (bits(0, 1023), "0,1023"),
    (bits(5, 6, 9, 10, 11, 40), "5-6,9-11,40"),
])
def test_list(mask, printed):
    assert list_str(mask) == printed


@pytest.mark.parametrize("mask", [0, 1, bits(3, 5), span(0, 3) | bits(8), bits(0, 2) | span(4, 7),
                                  span(0, 4095), bits(4095), bits(1, 2, 3, 100, 101, 4000)])
def test_parse_list_roundtrip(mask):
    assert parse_list(list_str(mask), 4096) == mask
    assert list(iter_bits(mask)) == [i for i in range(4096) if mask >> i & 1]


@pytest.mark.parametrize("text", ["8", "0-8", "3-1", "-1", "a", "1,,2", "1-"])
def test_parse_list_rejects(text):
    with pytest.raises(ValueError):
        parse_list(text, 8)
