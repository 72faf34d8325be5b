"""The per-segment index: block offsets, time bounds and field-value hashes.

Each segment ``N.seg`` has a sidecar ``N.idx`` that lists its blocks (runs of
whole frames holding about :data:`BLOCK_EVENTS` events) with their seq range,
minimum and maximum event time, and a sorted set of 32-bit hashes of the
``actor``, ``action``, ``target`` and ``outcome`` values they contain. Event
times are not ordered inside a segment, so every skip decision uses per-block
minimum and maximum times, never the first or last event.

The index is derived data. It records how many bytes of the segment it covers;
a reader that finds the segment longer reads the rest, and a missing or damaged
index file is rebuilt from the segment.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from pathlib import Path

import crc32c
import msgspec

from journal.event import EventFields
from journal.segment import write_all

INDEX_MAGIC = b"AJIDX\x00\x00\x01"
INDEX_SUFFIX = ".idx"
#: A block closes at the first frame boundary after this many events.
BLOCK_EVENTS = 128
#: A block also closes after this many uncompressed payload bytes.
BLOCK_RAW_BYTES = 256 * 1024
#: Fields whose values the index records.
FILTER_FIELDS = ("actor", "action", "target", "outcome")
#: A segment lists the exact values of a field while it has at most this many.
EXACT_VALUES = 128

_FIELD_TAGS = {
    "actor": b"a\x00",
    "action": b"c\x00",
    "target": b"t\x00",
    "outcome": b"o\x00",
}
_CRC = struct.Struct("<I")
_crc32c = crc32c.crc32c


def value_hash(field: str, value: str | None) -> int:
    """Return the 32-bit hash the index stores for *value* of *field*."""
    return _value_hashes(field, (value,))[0]


def _value_hashes(field: str, values: Iterable[str | None]) -> list[int]:
    tag = _FIELD_TAGS[field]
    return [
        int(
            _crc32c(
                tag + (b"\x01" if v is None else v.encode("utf-8", "surrogatepass"))
            )
        )
        for v in values
    ]


class Block(msgspec.Struct, array_like=True):
    """A run of whole frames: byte range, seq range, time bounds and value hashes."""

    offset: int
    end: int
    first_seq: int
    last_seq: int
    count: int
    min_us: int
    max_us: int
    hashes: bytes = b""
    damaged: str | None = None

    def may_contain(self, wanted: Sequence[Sequence[int]]) -> bool:
        """Return False only when some filter has no value hash in this block."""
        # An open block has no hashes yet, and a damaged one must be reached
        # so that the read raises instead of silently skipping events.
        if not wanted or not self.hashes or self.damaged is not None:
            return True
        present = array("I")
        present.frombytes(self.hashes)
        return all(any(h in present for h in options) for options in wanted)


class SegmentIndex(msgspec.Struct, kw_only=True):
    """Summary of one segment plus its blocks."""

    name: str
    first_seq: int
    created_ns: int
    header_len: int
    covered: int
    last_seq: int
    count: int = 0
    min_us: int = 0
    max_us: int = 0
    raw_bytes: int = 0
    frames: int = 0
    last_link: bytes = b""
    sealed_ns: int | None = None
    values: dict[str, list[str | None] | None] = msgspec.field(default_factory=dict)
    blocks: list[Block] = msgspec.field(default_factory=list)

    @property
    def sealed(self) -> bool:
        """Whether the segment ends with a seal frame."""
        return self.sealed_ns is not None

    def may_contain(self, field: str, options: Sequence[str | None]) -> bool:
        """Return False only when the exact value list of *field* rules every option out."""
        exact = self.values.get(field)
        # Only a sealed segment's value lists are complete.
        if exact is None or self.sealed_ns is None:
            return True
        return any(option in exact for option in options)


_index_encoder = msgspec.msgpack.Encoder()
_index_decoder = msgspec.msgpack.Decoder(SegmentIndex)


def index_path(directory: str, name: str) -> str:
    """Return the index file path for the segment file *name*."""
    return os.path.join(directory, name[: -len(".seg")] + INDEX_SUFFIX)


def save_index(directory: str, index: SegmentIndex, file_mode: int) -> None:
    """Replace the index file atomically: write a temporary file, fsync, rename."""
    body = _index_encoder.encode(index)
    data = INDEX_MAGIC + _CRC.pack(crc32c.crc32c(body)) + body
    final = index_path(directory, index.name)
    tmp = f"{final}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, final)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_index(directory: str, name: str) -> SegmentIndex | None:
    """Return the stored index of segment *name*, or ``None`` if missing or damaged."""
    try:
        with open(index_path(directory, name), "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if len(data) < len(INDEX_MAGIC) + 4 or not data.startswith(INDEX_MAGIC):
        return None
    (stored,) = _CRC.unpack_from(data, len(INDEX_MAGIC))
    body = data[len(INDEX_MAGIC) + 4 :]
    if crc32c.crc32c(body) != stored:
        return None
    try:
        index = _index_decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if index.name != name:
        return None
    return index


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


_ACTOR = attrgetter("actor")
_ACTION = attrgetter("action")
_TARGET = attrgetter("target")
_OUTCOME = attrgetter("outcome")
_TIME = attrgetter("time")


def _us(when: datetime) -> int:
    seconds = when.timestamp()
    # Between 1843 and 2096 a float timestamp is within 0.5 µs of the exact value,
    # so rounding recovers it. Further out, exact (slower) integer arithmetic is used.
    if -4e9 < seconds < 4e9:
        return round(seconds * 1_000_000)
    return (when - _EPOCH) // _ONE_US


class IndexBuilder:
    """Extend a :class:`SegmentIndex` frame by frame as the segment grows."""

    def __init__(self, index: SegmentIndex) -> None:
        self.index = index
        self._open: Block | None = None
        self._raw_in_block = 0
        self._values: dict[str, set[str | None] | None] = {}
        for field in FILTER_FIELDS:
            known = index.values.get(field, [])
            self._values[field] = None if known is None else set(known)
        self._block_values: list[set[str | None]] = [set() for _ in FILTER_FIELDS]

    def add_frame(
        self,
        offset: int,
        end: int,
        first_seq: int,
        raw_len: int,
        events: Sequence[EventFields],
        link: bytes,
    ) -> None:
        """Record an events frame that ends at *end*."""
        index = self.index
        block = self._open
        if block is None:
            block = Block(offset, end, first_seq, first_seq - 1, 0, 0, 0)
            self._open = block
            index.blocks.append(block)
            self._raw_in_block = 0
        n = len(events)
        if n == 0:
            return
        actors, actions, targets, outcomes = self._block_values
        # These bulk operations run in C. The block needs the value sets and
        # only the earliest and latest time, so only those two are converted.
        actors.update(map(_ACTOR, events))
        actions.update(map(_ACTION, events))
        targets.update(map(_TARGET, events))
        outcomes.update(map(_OUTCOME, events))
        times = list(map(_TIME, events))
        min_us, max_us = _us(min(times)), _us(max(times))
        if block.count:
            min_us, max_us = min(min_us, block.min_us), max(max_us, block.max_us)
        block.end = end
        block.last_seq = first_seq + n - 1
        block.count += n
        block.min_us, block.max_us = min_us, max_us
        index.covered = end
        index.last_seq = block.last_seq
        if index.count == 0:
            index.min_us, index.max_us = min_us, max_us
        else:
            index.min_us = min(index.min_us, min_us)
            index.max_us = max(index.max_us, max_us)
        index.count += n
        index.raw_bytes += raw_len
        index.frames += 1
        index.last_link = link
        self._raw_in_block += raw_len
        if block.count >= BLOCK_EVENTS or self._raw_in_block >= BLOCK_RAW_BYTES:
            self.close_block()

    def add_damage(
        self, offset: int, end: int, after_seq: int, next_seq: int | None, reason: str
    ) -> None:
        """Record a damaged stretch so that reads reaching it raise instead of skipping."""
        self.close_block()
        last = (next_seq - 1) if next_seq is not None else after_seq
        self.index.blocks.append(
            Block(offset, end, after_seq + 1, last, 0, 0, 0, b"", reason)
        )
        self.index.covered = end
        if next_seq is not None:
            self.index.last_seq = max(self.index.last_seq, next_seq - 1)

    def add_seal(self, end: int, sealed_ns: int, link: bytes) -> None:
        """Record the seal frame that closes the segment."""
        # Reads trust a sealed segment's exact value lists to skip it, so the
        # lists must cover every frame, also those scanned after the index was
        # loaded from a file written while the segment was active.
        self.snapshot()
        self.index.covered = end
        self.index.sealed_ns = sealed_ns
        self.index.last_link = link

    def close_block(self) -> None:
        """Finish the open block: store its value hashes and fold values into the summary."""
        block = self._open
        if block is None:
            return
        hashes: set[int] = set()
        for field, values in zip(FILTER_FIELDS, self._block_values, strict=True):
            hashes.update(_value_hashes(field, values))
            summary = self._values[field]
            if summary is not None:
                summary.update(values)
                if len(summary) > EXACT_VALUES:
                    self._values[field] = None
            values.clear()
        block.hashes = array("I", sorted(hashes)).tobytes()
        self._open = None
        self._raw_in_block = 0

    def snapshot(self) -> SegmentIndex:
        """Close the open block and return the index with its value summary filled in."""
        self.close_block()
        self.index.values = {
            field: (
                None if values is None else sorted(values, key=lambda v: (v is None, v))
            )
            for field, values in self._values.items()
        }
        return self.index
