"""The segment file: header, frames, checksums, scanning and creation.

Byte layouts are described in docs/FORMAT.md; this module is their only
implementation. Nothing here depends on queries, locks or the CLI.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import crc32c
import msgspec

from journal.errors import CorruptSegment

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"AUDJRNL\x00"
SEGMENT_SUFFIX = ".seg"
SEGMENT_NAME_RE = re.compile(r"^(\d{20})\.seg$")
#: A new segment's header is written under ``<name><suffix><pid>`` and then linked.
SEGMENT_TEMP_SUFFIX = ".new-"

_HEADER = struct.Struct("<8sHHIQq16s8sII")
HEADER_FIXED = _HEADER.size + 4  # plus the CRC-32C that ends the header
HEADER_FLAG_KEYED = 0x1

FRAME_MAGIC = b"JF"
_FRAME = struct.Struct("<2sBBIQII16s")
FRAME_HEADER = _FRAME.size + 4  # plus the CRC-32C over header and payload

KIND_EVENTS = 1
KIND_SEAL = 2
FLAG_ZSTD = 0x1
FLAG_DICT = 0x2
_KNOWN_FLAGS = FLAG_ZSTD | FLAG_DICT

#: Upper bound on a frame's uncompressed payload; larger claims are damage.
MAX_FRAME_RAW = 64 << 20
#: Upper bound on a header's dictionary.
MAX_DICT = 1 << 20


def segment_name(first_seq: int) -> str:
    """Return the file name of the segment whose first event is *first_seq*."""
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


class SegmentHeader(NamedTuple):
    """The decoded header at the start of every segment."""

    version: int
    flags: int
    header_len: int
    first_seq: int
    created_ns: int
    prev_link: bytes
    key_id: bytes
    dictionary: bytes

    @property
    def keyed(self) -> bool:
        """Whether the chain links in this segment are keyed."""
        return bool(self.flags & HEADER_FLAG_KEYED)


def pack_header(
    first_seq: int, created_ns: int, prev_link: bytes, key_id: bytes, dictionary: bytes
) -> bytes:
    """Return the bytes of a new segment header."""
    flags = HEADER_FLAG_KEYED if any(key_id) else 0
    header_len = HEADER_FIXED + len(dictionary)
    body = _HEADER.pack(
        SEGMENT_MAGIC,
        FORMAT_VERSION,
        flags,
        header_len,
        first_seq,
        created_ns,
        prev_link,
        key_id,
        len(dictionary),
        0,
    )
    body += dictionary
    return body + struct.pack("<I", crc32c.crc32c(body))


def read_header(fd: int, path: str, file_size: int) -> SegmentHeader:
    """Read and check the header of the segment open as *fd*."""
    fixed = os.pread(fd, _HEADER.size, 0)
    if len(fixed) < _HEADER.size:
        raise CorruptSegment(
            f"segment {path}: header is {len(fixed)} bytes, expected {_HEADER.size}; "
            "the file is truncated",
            path,
            0,
        )
    (
        magic,
        version,
        flags,
        header_len,
        first_seq,
        created_ns,
        prev_link,
        kid,
        dict_len,
        _,
    ) = _HEADER.unpack(fixed)
    if magic != SEGMENT_MAGIC:
        raise CorruptSegment(
            f"segment {path}: bad magic {magic!r}, expected {SEGMENT_MAGIC!r}; "
            "this is not a journal segment",
            path,
            0,
        )
    if version != FORMAT_VERSION:
        raise CorruptSegment(
            f"segment {path}: format version {version} is not supported (this release "
            f"reads version {FORMAT_VERSION}); upgrade journal",
            path,
            0,
        )
    if (
        dict_len > MAX_DICT
        or header_len != HEADER_FIXED + dict_len
        or header_len > file_size
    ):
        raise CorruptSegment(
            f"segment {path}: header claims {header_len} bytes with a {dict_len}-byte "
            f"dictionary but the file has {file_size} bytes",
            path,
            0,
        )
    rest = os.pread(fd, header_len - _HEADER.size, _HEADER.size)
    dictionary = rest[:dict_len]
    (stored_crc,) = struct.unpack("<I", rest[dict_len : dict_len + 4])
    actual = crc32c.crc32c(fixed + dictionary)
    if stored_crc != actual:
        raise CorruptSegment(
            f"segment {path}: header CRC 0x{actual:08x} does not match stored "
            f"0x{stored_crc:08x}; run `journal verify` for the full report",
            path,
            0,
            first_seq,
        )
    return SegmentHeader(
        version, flags, header_len, first_seq, created_ns, prev_link, kid, dictionary
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as found on disk (payload still compressed)."""

    offset: int
    kind: int
    flags: int
    count: int
    first_seq: int
    raw_len: int
    link: bytes
    stored: bytes

    @property
    def end(self) -> int:
        """Offset of the byte after this frame."""
        return self.offset + FRAME_HEADER + len(self.stored)

    @property
    def last_seq(self) -> int:
        """Seq of the frame's last event (``first_seq - 1`` for a seal frame)."""
        return self.first_seq + self.count - 1


def pack_frame(
    kind: int,
    flags: int,
    count: int,
    first_seq: int,
    raw_len: int,
    link: bytes,
    stored: bytes,
) -> bytes:
    """Return header and payload of one frame, ready for a single write."""
    head = _FRAME.pack(
        FRAME_MAGIC, kind, flags, count, first_seq, len(stored), raw_len, link
    )
    crc = crc32c.crc32c(stored, crc32c.crc32c(head))
    return head + struct.pack("<I", crc) + stored


class Incomplete(Exception):
    """The bytes at an offset stop before a whole frame (a torn or in-progress write)."""


class Damaged(Exception):
    """The bytes at an offset are not a valid frame."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_frame(fd: int, offset: int, limit: int) -> Frame:
    """Read the frame at *offset*, never past *limit*; raise Incomplete or Damaged."""
    if limit - offset < FRAME_HEADER:
        raise Incomplete()
    head = os.pread(fd, FRAME_HEADER, offset)
    if len(head) < FRAME_HEADER:
        raise Incomplete()
    magic, kind, flags, count, first_seq, stored_len, raw_len, link = (
        _FRAME.unpack_from(head)
    )
    (stored_crc,) = struct.unpack_from("<I", head, _FRAME.size)
    if magic != FRAME_MAGIC:
        raise Damaged(f"bad frame magic {magic!r}")
    if kind not in (KIND_EVENTS, KIND_SEAL) or flags & ~_KNOWN_FLAGS:
        raise Damaged(f"unknown frame kind {kind} or flags 0x{flags:02x}")
    if raw_len > MAX_FRAME_RAW or (kind == KIND_EVENTS and not 0 < count <= raw_len):
        raise Damaged(f"frame claims {count} events in {raw_len} bytes")
    if stored_len > limit - offset - FRAME_HEADER:
        # Either a torn write or a damaged length; the caller tells them apart
        # by looking for a valid frame further on.
        raise Incomplete()
    stored = os.pread(fd, stored_len, offset + FRAME_HEADER)
    if len(stored) < stored_len:
        raise Incomplete()
    actual = crc32c.crc32c(stored, crc32c.crc32c(head[: _FRAME.size]))
    if actual != stored_crc:
        raise Damaged(
            f"frame CRC 0x{actual:08x} does not match stored 0x{stored_crc:08x}"
        )
    return Frame(offset, kind, flags, count, first_seq, raw_len, link, stored)


def find_next_frame(
    fd: int, start: int, limit: int, chunk: int = 1 << 16
) -> Frame | None:
    """Return the first valid frame that starts after *start*, or ``None``.

    Used to step over damage: every later intact frame stays readable, and a
    torn tail is only a tail when no valid frame follows it.
    """
    pos = start + 1
    while pos < limit:
        data = os.pread(fd, min(chunk, limit - pos) + len(FRAME_MAGIC) - 1, pos)
        if not data:
            return None
        i = data.find(FRAME_MAGIC)
        while i != -1:
            try:
                return read_frame(fd, pos + i, limit)
            except (Incomplete, Damaged):
                i = data.find(FRAME_MAGIC, i + 1)
        pos += max(1, len(data) - len(FRAME_MAGIC) + 1)
    return None


class DamagedRange(NamedTuple):
    """Bytes between two good frames (or a good frame and the end) that failed to read."""

    offset: int
    end: int
    reason: str
    after_seq: int  # last seq before the damage
    next_seq: int | None  # first seq after the damage, when a good frame follows


def scan_frames(
    fd: int, start: int, limit: int, prev_last_seq: int
) -> Iterator[Frame | DamagedRange]:
    """Yield frames from *start* to *limit*, with a DamagedRange for every bad stretch.

    A trailing stretch that ends at *limit* with no valid frame after it is yielded as
    a DamagedRange whose ``next_seq`` is ``None``: that is a torn tail for a writer
    and an in-progress write for a reader.
    """
    offset = start
    last_seq = prev_last_seq
    while offset < limit:
        try:
            frame = read_frame(fd, offset, limit)
        except (Incomplete, Damaged) as err:
            reason = err.reason if isinstance(err, Damaged) else "incomplete frame"
            following = find_next_frame(fd, offset, limit)
            if following is None:
                yield DamagedRange(offset, limit, reason, last_seq, None)
                return
            yield DamagedRange(
                offset, following.offset, reason, last_seq, following.first_seq
            )
            offset = following.offset
            continue
        yield frame
        if frame.kind == KIND_EVENTS:
            last_seq = frame.last_seq
        offset = frame.end


class SealRecord(msgspec.Struct, kw_only=True):
    """Payload of the seal frame that closes a segment."""

    sealed_ns: int
    last_seq: int
    events: int
    reason: str


_seal_decoder = msgspec.msgpack.Decoder(SealRecord)


def decode_seal(frame: Frame, path: str) -> SealRecord:
    """Decode the payload of a seal frame."""
    try:
        return _seal_decoder.decode(frame.stored)
    except msgspec.DecodeError as err:
        raise CorruptSegment(
            f"segment {path}: seal frame at offset {frame.offset} cannot be decoded: {err}",
            path,
            frame.offset,
        ) from err


def encode_seal(record: SealRecord) -> bytes:
    """Encode the payload of a seal frame."""
    return msgspec.msgpack.encode(record)


def fsync_directory(path: str) -> None:
    """Flush a directory's entries to stable storage (new, renamed or removed files)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of *data* at the current file position."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def frame_from_buffer(buf: bytes | memoryview, pos: int, base: int) -> Frame:
    """Parse the frame at *pos* of *buf* (which starts at file offset *base*)."""
    if len(buf) - pos < FRAME_HEADER:
        raise Incomplete()
    magic, kind, flags, count, first_seq, stored_len, raw_len, link = (
        _FRAME.unpack_from(buf, pos)
    )
    (stored_crc,) = struct.unpack_from("<I", buf, pos + _FRAME.size)
    if magic != FRAME_MAGIC:
        raise Damaged(f"bad frame magic {bytes(magic)!r}")
    if kind not in (KIND_EVENTS, KIND_SEAL) or flags & ~_KNOWN_FLAGS:
        raise Damaged(f"unknown frame kind {kind} or flags 0x{flags:02x}")
    if raw_len > MAX_FRAME_RAW or (kind == KIND_EVENTS and not 0 < count <= raw_len):
        raise Damaged(f"frame claims {count} events in {raw_len} bytes")
    start = pos + FRAME_HEADER
    if stored_len > len(buf) - start:
        raise Incomplete()
    stored = bytes(buf[start : start + stored_len])
    head = bytes(buf[pos : pos + _FRAME.size])
    actual = crc32c.crc32c(stored, crc32c.crc32c(head))
    if actual != stored_crc:
        raise Damaged(
            f"frame CRC 0x{actual:08x} does not match stored 0x{stored_crc:08x}"
        )
    return Frame(base + pos, kind, flags, count, first_seq, raw_len, link, stored)
