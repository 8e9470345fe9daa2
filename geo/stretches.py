"""Downloads assembled from stretches of bytes the server already holds, read like one file.

A whole layer's GeoJSON download is its head (the metadata), one stretch of the layer file's
bytes and `]}`; a filtered one is the head, one stretch per run of features that lie one after
the other in the file, and `]}`. `Stretches` reads such a sequence as one seekable, read-only
file without copying it anywhere first, so one object streams a download, knows its length
before the first byte is sent, and answers byte ranges:

    body = Stretches(head, raw, starts, ends, tail=b"]}")
    len(body)             # Content-Length
    body.seek(500_000)    # a range
    body.read(1 << 20)    # the next MiB

`runs` finds the stretches of a selection in a file of records with their byte ranges, and
`gzip_chunks` sends a body compressed once ahead of time (see geo.downloads) behind a head
compressed now: gzip's format lets one deflate stream continue another, and its CRC of the
whole is computed from the two parts' CRCs (`crc32_combine`), so the body is never read for it.
"""

import io
import mmap
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from isal import isal_zlib

CHUNK_BYTES = 1 << 20
# A gzip member's header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class Stretches(io.RawIOBase):
    """`head`, then `buffer[starts[k]:ends[k]]` for each k, then `tail`, as one read-only file.

    `buffer` is anything that slices into bytes (bytes, an mmap); the stretches are not copied
    until they are read. Not thread-safe: one per response.
    """

    def __init__(
        self,
        head: bytes,
        buffer: Any,
        starts: np.ndarray,
        ends: np.ndarray,
        tail: bytes = b"",
    ):
        super().__init__()
        self.head = head
        self.tail = tail
        self.buffer = buffer
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        lengths = self.ends - self.starts
        # Where each stretch begins in the whole.
        self.begins = len(head) + np.cumsum(lengths) - lengths
        self.body_end = len(head) + int(lengths.sum())
        self.size = self.body_end + len(tail)
        self.position = 0

    def __len__(self) -> int:
        return self.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self.position = base + offset
        return self.position

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all that are left when negative or None), never across the end
        of the head or the start of the tail: the head is a chunk of its own, sent before any
        of the body is read."""
        start = self.position
        limit = self.size if size is None or size < 0 else start + size
        if start < len(self.head):
            end = min(limit, len(self.head))
            data = self.head[start:end]
        elif start < self.body_end:
            end = min(limit, self.body_end)
            parts = self._body(start, end)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        else:
            end = min(limit, self.size)
            data = self.tail[start - self.body_end : end - self.body_end]
        self.position = max(start, end)
        return data

    def readall(self) -> bytes:
        parts = []
        while data := self.read():
            parts.append(data)
        return b"".join(parts)

    def _body(self, start: int, end: int) -> list[bytes]:
        """The stretches' bytes from `start` to `end` (positions in the whole)."""
        first = int(np.searchsorted(self.begins, start, side="right")) - 1
        last = int(np.searchsorted(self.begins, end, side="left")) - 1
        buffer = self.buffer
        a = int(self.starts[first]) + start - int(self.begins[first])
        if first == last:
            return [buffer[a : a + end - start]]
        parts = [buffer[a : int(self.ends[first])]]
        middle = slice(first + 1, last)
        pairs = zip(self.starts[middle].tolist(), self.ends[middle].tolist(), strict=True)
        parts.extend([buffer[s:e] for s, e in pairs])
        b = int(self.starts[last])
        parts.append(buffer[b : b + end - int(self.begins[last])])
        return parts

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The whole, from the start, in chunks of `size` bytes."""
        self.seek(0)
        while chunk := self.read(size):
            yield chunk


def runs(
    buffer: Any, offsets: np.ndarray, positions: np.ndarray, separator: bytes = b""
) -> tuple[np.ndarray, np.ndarray] | None:
    """The stretches of `buffer` that hold the records at `positions` (ascending) one after the
    other with `separator` between them, as (starts, ends) arrays; None when the buffer does not
    hold each record followed by the separator, so they cannot be copied as they lie.

    Records are at `offsets[i] = [start, end)`. A record that follows another in the output
    brings the separator the buffer has after the other, so consecutive records, e.g. features
    0, 1, 2 of a layer file `[{f0},{f1},{f2}]`, are one stretch `{f0},{f1},{f2}`; a gap splits
    them: features 0 and 2 are `{f0},` and `{f2}`.

    >>> runs(b"[a,bb,c]", np.array([[1, 2], [3, 5], [6, 7]]), np.array([0, 2]), b",")
    (array([1, 6]), array([3, 7]))
    """
    n = len(positions)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = int(positions[0]), int(positions[-1])
    if hi - lo + 1 == n:  # ascending and one after the other: a slice, not a gather
        starts, ends = offsets[lo : hi + 1, 0], offsets[lo : hi + 1, 1].copy()
    else:
        starts, ends = offsets[positions, 0], offsets[positions, 1].copy()
    if separator and n > 1:
        width = len(separator)
        after = ends[:-1]
        if int(after.max()) + width > len(buffer):
            return None
        found = np.frombuffer(buffer, dtype=np.uint8, count=len(buffer))
        for i, byte in enumerate(separator):
            if not (found[after + i] == byte).all():
                return None
        ends[:-1] += width
    joined = starts[1:] == ends[:-1]
    first = np.concatenate(([0], np.flatnonzero(~joined) + 1))
    last = np.concatenate((first[1:] - 1, [n - 1]))
    return starts[first], ends[last]


# --- gzip of a head compressed now and a body compressed ahead of time ---------------------------


def compress_piece(data: Any, level: int, last: bool) -> bytes:
    """A raw deflate stream of `data`, ending with a final block if `last`, else byte-aligned
    by a sync flush, so that compressed pieces concatenate into one stream (as pigz does).

    Compressed by ISA-L (python-isal), whose `level` runs from 0 to 3: on GeoJSON and CSV its
    level 2 is 5-20 times as fast as zlib's default level 6, for 7% more bytes on the default
    store's attacks (38% on synthetic ones), and it lets go of the GIL as zlib does."""
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)
    end = isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH
    return compressor.compress(data) + compressor.flush(end)


def compress_head(head: bytes, level: int = isal_zlib.ISAL_BEST_COMPRESSION) -> bytes:
    """A head's raw deflate, byte-aligned and not final: a body's stream may follow it."""
    return compress_piece(head, level, last=False)


def gzip_length(compressed_head: bytes, body_compressed_bytes: int) -> int:
    """The length of `gzip_chunks`' output."""
    return len(GZIP_HEADER) + len(compressed_head) + body_compressed_bytes + 8


def gzip_chunks(
    head: bytes,
    compressed_head: bytes,
    body: Any,
    body_crc32: int,
    body_bytes: int,
    size: int = CHUNK_BYTES,
) -> Iterator[bytes]:
    """One gzip member holding `head` then a body whose raw deflate stream is `body` (bytes or
    an mmap of it; its uncompressed CRC-32 and length given): header, the head's deflate, the
    body's as it is, and the trailer (CRC-32 and length of the whole, mod 2**32)."""
    yield GZIP_HEADER + compressed_head
    for start in range(0, len(body), size):
        yield body[start : start + size]
    crc = crc32_combine(zlib.crc32(head), body_crc32, body_bytes)
    total = (len(head) + body_bytes) & 0xFFFFFFFF
    yield crc.to_bytes(4, "little") + total.to_bytes(4, "little")


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A + B from crc32(A), crc32(B) and len(B) (zlib's crc32_combine, which
    Python's zlib does not offer): crc1 is carried over length2 zero bytes by squaring the
    one-zero-bit operator, in GF(2).

    >>> a, b = b"kpmap ", b"downloads"
    >>> crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    True
    """
    if length2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << i for i in range(31)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # the first time: one zero byte
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


def mapped(path: Path) -> Any:
    """A file's bytes, mapped read-only: shared by every process that maps it, read from disk
    only where they are read, and given back to the page cache under memory pressure. An empty
    file's are b"" (an empty file cannot be mapped). The mapping outlives the file's name."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if not size:
            return b""
        return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
