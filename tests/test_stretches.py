"""geo/stretches.py: downloads read as one file from stretches of bytes, and gzip of a head
compressed now behind a body compressed ahead of time."""

import gzip
import io
import zlib

import numpy as np
import pytest

from geo.stretches import (
    Stretches,
    compress_head,
    compress_piece,
    crc32_combine,
    gzip_chunks,
    gzip_length,
    runs,
)


def records(n: int, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """A layer-like file `[r0,r1,...]` of records of varied lengths, and their byte ranges."""
    rng = np.random.default_rng(seed)
    parts, offsets, at = [], [], 1
    for i in range(n):
        record = b"{" + str(i).encode() + b"x" * int(rng.integers(0, 30)) + b"}"
        offsets.append((at, at + len(record)))
        parts.append(record)
        at += len(record) + 1
    return b"[" + b",".join(parts) + b"]", np.array(offsets, dtype=np.int64).reshape(-1, 2)


def expected(buffer: bytes, offsets: np.ndarray, positions, head=b"H", tail=b"T") -> bytes:
    return head + b",".join(buffer[s:e] for s, e in offsets[list(positions)].tolist()) + tail


SELECTIONS = [[], [0], [49], [0, 1, 2], [0, 2], [3, 4, 5, 9, 10, 30, 31, 49], list(range(50))]


@pytest.mark.parametrize("positions", SELECTIONS)
def test_the_stretches_read_as_the_records_joined(positions):
    buffer, offsets = records(50)
    found = runs(buffer, offsets, np.array(positions, dtype=np.int64), b",")
    body = Stretches(b"H", buffer, *found, tail=b"T")
    want = expected(buffer, offsets, positions)
    assert len(body) == len(want) and body.readall() == want
    assert b"".join(body.chunks(7)) == want
    # each run of consecutive records is one stretch
    gaps = sum(1 for a, b in zip(positions, positions[1:], strict=False) if b != a + 1)
    assert len(found[0]) == (gaps + 1 if positions else 0)


def test_any_range_reads_the_same_bytes():
    buffer, offsets = records(40, seed=3)
    positions = np.array([0, 1, 5, 6, 7, 20, 39])
    body = Stretches(b"head", buffer, *runs(buffer, offsets, positions, b","), tail=b"]}")
    want = expected(buffer, offsets, positions, b"head", b"]}")
    for start in range(0, len(want) + 2, 3):
        for size in (1, 2, 5, 64, 10_000):
            body.seek(start)
            got = _read(body, size)
            assert got == want[start : start + size], (start, size)
    body.seek(-3, io.SEEK_END)
    assert body.tell() == len(want) - 3 and _read(body, 10) == want[-3:]


def _read(body: Stretches, size: int) -> bytes:
    parts = []
    while size > 0 and (data := body.read(size)):
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def test_a_read_never_crosses_the_head_or_the_tail():
    buffer, offsets = records(5)
    body = Stretches(b"HEAD", buffer, *runs(buffer, offsets, np.arange(5), b","), tail=b"TAIL")
    chunks = list(body.chunks(1 << 20))
    assert chunks[0] == b"HEAD" and chunks[-1] == b"TAIL" and len(chunks) == 3


def test_records_not_followed_by_the_separator_are_not_stretches():
    buffer = b"[a;b;c]"
    offsets = np.array([[1, 2], [3, 4], [5, 6]])
    assert runs(buffer, offsets, np.array([0, 1]), b",") is None
    assert runs(buffer, offsets, np.array([2]), b",") is not None  # one record needs none


def test_records_with_no_separator_join_as_they_lie():
    buffer = b"id\r\na\r\nbb\r\nc\r\n"
    offsets = np.array([[4, 7], [7, 11], [11, 14]])
    body = Stretches(buffer[:4], buffer, *runs(buffer, offsets, np.array([0, 2])))
    assert body.readall() == b"id\r\na\r\nc\r\n"


@pytest.mark.parametrize("length", [0, 1, 7, 1000, 123_457])
def test_crc32_combine_is_zlibs(length):
    a = b"kpmap" * 13
    b = bytes(np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8))
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_a_gzip_of_a_fresh_head_and_a_body_compressed_in_pieces_is_one_valid_member():
    body = b"".join(b'{"id":%d,"v":"%s"},' % (i, b"x" * (i % 17)) for i in range(20_000))
    pieces = [body[i : i + 65_536] for i in range(0, len(body), 65_536)]
    deflated = b"".join(
        compress_piece(piece, 2, last=i == len(pieces) - 1) for i, piece in enumerate(pieces)
    )
    head = '{"metadata":{"generated_at":"now","title":"Peshawar – پشاور"}'.encode()
    compressed = compress_head(head)
    out = b"".join(gzip_chunks(head, compressed, deflated, zlib.crc32(body), len(body), 4096))
    assert len(out) == gzip_length(compressed, len(deflated))
    assert gzip.decompress(out) == head + body  # checks the CRC and the length
    # one member, as a browser's inflater reads it: nothing is left after the stream
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflater.decompress(out) == head + body and inflater.eof and not inflater.unused_data
