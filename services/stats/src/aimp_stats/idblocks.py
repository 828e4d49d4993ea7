"""A data-skipping index for call lookups by id (pure): sorted CRC-32s per ingest batch.

Each ingest batch stores the sorted, de-duplicated CRC-32 of every request id and
trace id it holds (4 bytes each). A lookup binary-searches every block and reads
raw rows only from blocks that may hold the id (a CRC-32 match; the row itself is
then compared), so ingest never maintains a random-key index.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable


def id_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def encode_block(ids: Iterable[str]) -> bytes:
    hashes = array("I", sorted({id_hash(i) for i in ids if i}))
    if sys.byteorder == "big":  # pragma: no cover
        hashes.byteswap()
    return hashes.tobytes()


def block_may_hold(block: bytes, wanted: int) -> bool:
    hashes = array("I")
    hashes.frombytes(block)
    if sys.byteorder == "big":  # pragma: no cover
        hashes.byteswap()
    at = bisect_left(hashes, wanted)
    return at < len(hashes) and hashes[at] == wanted
