"""The set of segments in a journal directory, kept in step with the files.

:class:`Store` lists segments, loads or rebuilds their indexes, follows what
other processes append, recovers a torn tail when it holds the write lock, and
decodes blocks of events. It takes no lock itself; the journal decides when a
caller holds the write lock and passes ``writer=True``.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator

import msgspec
import zstandard

from journal import codec
from journal.errors import (
    CorruptSegment,
    PermissionProblem,
    SegmentExpired,
    permission_message,
)
from journal.event import AuditEvent, EventSummary
from journal.index import Block, IndexBuilder, SegmentIndex, load_index, save_index
from journal.removal import RemovalLog
from journal.segment import (
    FLAG_DICT,
    FLAG_ZSTD,
    HEADER_FIXED,
    KIND_EVENTS,
    KIND_SEAL,
    SEGMENT_NAME_RE,
    Damaged,
    DamagedRange,
    Frame,
    Incomplete,
    SegmentHeader,
    decode_seal,
    find_next_frame,
    frame_from_buffer,
    read_header,
    scan_frames,
    write_all,
)

log = logging.getLogger("journal")

#: Open file descriptors kept for reading sealed segments.
MAX_OPEN_SEGMENTS = 64


#: One stored event: its seq, its undecoded bytes, and the chunk that contains it.
Record = tuple[int, msgspec.Raw, "Chunk"]


class PartialBlock(CorruptSegment):
    """Damage inside a block, with the intact frames of the block around it."""

    def __init__(
        self,
        message: str,
        path: str,
        offset: int,
        first_seq: int,
        last_seq: int,
        chunks: list[Chunk],
    ) -> None:
        super().__init__(message, path, offset, first_seq, last_seq)
        self.chunks = chunks
        #: Offset in the block of the next intact frame, if there is one.
        self.next_pos: int | None = None
        #: Every damaged stretch of the block that hides seqs after the cursor.
        self.damages: list[PartialBlock] = [self]


class Segment:
    """One segment file and what is known of it."""

    def __init__(self, directory: str, name: str, index: SegmentIndex) -> None:
        self.name = name
        self.path = os.path.join(directory, name)
        self.index = index
        self.header: SegmentHeader | None = None
        self.builder: IndexBuilder | None = None
        self.saved_covered = index.covered
        #: Why the header cannot be read, for a segment kept only so reads raise.
        self.damaged: str | None = None

    @property
    def first_seq(self) -> int:
        """Seq of the first event this segment can hold."""
        return self.index.first_seq


class Chunk:
    """The uncompressed payload of one events frame, not yet decoded."""

    __slots__ = ("count", "first_seq", "offset", "path", "payload")

    def __init__(
        self, frame: Frame, decompressor: codec.Decompressor, path: str
    ) -> None:
        self.first_seq = frame.first_seq
        self.count = frame.count
        self.offset = frame.offset
        self.path = path
        try:
            raw = frame.stored
            if frame.flags & FLAG_ZSTD:
                raw = decompressor.decompress(
                    frame.stored, frame.raw_len, bool(frame.flags & FLAG_DICT)
                )
            elif len(raw) != frame.raw_len:
                raise ValueError(
                    f"payload is {len(raw)} bytes, header records {frame.raw_len}"
                )
            declared = codec.payload_count(raw)
            if declared != frame.count:
                raise ValueError(
                    f"payload declares {declared} events, header records {frame.count}"
                )
        except (ValueError, zstandard.ZstdError) as err:
            raise self._error(err) from err
        self.payload = raw

    @property
    def last_seq(self) -> int:
        """Seq of the chunk's last event."""
        return self.first_seq + self.count - 1

    def _error(self, err: Exception, seq: int | None = None) -> CorruptSegment:
        first, last = (self.first_seq, self.last_seq) if seq is None else (seq, seq)
        events_text = f"seq {first}..{last}" if seq is None else f"event {seq}"
        reason = (
            f"frame at offset {self.offset} ({events_text}) cannot be decoded: {err}"
        )
        return CorruptSegment(
            f"segment {self.path}: {reason}; run `journal verify` for the full report",
            self.path,
            self.offset,
            first,
            last,
            reason=reason,
        )

    def raws(self) -> list[msgspec.Raw]:
        """Split the payload into the undecoded bytes of each event."""
        try:
            raws = codec.split_payload(self.payload)
        except (RecursionError, msgspec.DecodeError) as err:
            raise self._error(err) from err
        if len(raws) != self.count:
            raise self._error(
                ValueError(f"payload contains {len(raws)} events, not {self.count}")
            )
        return raws

    def records(self) -> list[Record]:
        """Return ``(seq, bytes, chunk)`` for every event."""
        return [(seq, raw, self) for seq, raw in enumerate(self.raws(), self.first_seq)]

    def summaries(self) -> list[EventSummary]:
        """Decode the indexed fields of every event."""
        return [
            self.summary(seq, raw)
            for seq, raw in enumerate(self.raws(), self.first_seq)
        ]

    def summary(self, seq: int, raw: msgspec.Raw) -> EventSummary:
        """Decode the indexed fields of event *seq* from its bytes *raw*."""
        try:
            return codec.decode_summary(raw)
        except (RecursionError, msgspec.DecodeError) as err:
            raise self._error(err, seq) from err

    def event(self, seq: int, raw: msgspec.Raw) -> AuditEvent:
        """Decode event *seq* from its bytes *raw*."""
        try:
            event = codec.decode_event(raw)
        except (RecursionError, msgspec.DecodeError) as err:
            raise self._error(err, seq) from err
        event.seq = seq
        return event

    def iter_events(self, after_seq: int = 0) -> Iterator[AuditEvent]:
        """Decode and yield the events with a seq above *after_seq*, one at a time."""
        event = self.event
        for seq, raw in enumerate(self.raws(), self.first_seq):
            if seq > after_seq:
                yield event(seq, raw)

    def events(self) -> list[AuditEvent]:
        """Decode every event and assign its seq."""
        return list(self.iter_events())


def decode_frame_events(
    frame: Frame, decompressor: codec.Decompressor, path: str
) -> list[AuditEvent]:
    """Decompress and decode the events of *frame*, assigning their seqs."""
    return Chunk(frame, decompressor, path).events()


def decode_records(records: list[Record]) -> list[AuditEvent]:
    """Decode *records* (from :meth:`Chunk.records`) into events with their seqs."""
    return [chunk.event(seq, raw) for seq, raw, chunk in records]


class Store:
    """The segments of one journal directory."""

    def __init__(
        self, directory: str, file_mode: int, *, readonly: bool = False
    ) -> None:
        self.directory = directory
        self.file_mode = file_mode
        self.readonly = readonly
        self.segments: list[Segment] = []
        self.removals = RemovalLog(directory, file_mode)
        self._dir_mtime = -1
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._decompressors: dict[str, codec.Decompressor] = {}

    # -- listing -----------------------------------------------------------

    def refresh(self, *, writer: bool = False) -> None:
        """Catch up with files changed by any process since the last call."""
        while True:
            mtime = os.stat(self.directory).st_mtime_ns
            if mtime != self._dir_mtime:
                self._dir_mtime = mtime
                self._relist(writer)
                # A segment that was active when we last looked may have grown
                # and been sealed by another process before it created the next.
                for older in self.segments[:-1]:
                    if not older.index.sealed:
                        try:
                            size = self._size(older)
                        except SegmentExpired:
                            # Sealed and removed by retention meanwhile.
                            self._dir_mtime = -1
                            continue
                        if size != older.index.covered:
                            self._scan(older, size, writer)
            if not self.segments:
                return
            newest = self.segments[-1]
            if newest.index.sealed:
                return
            size = self._size(newest)
            if size == newest.index.covered:
                return
            self._scan(newest, size, writer)
            if not newest.index.sealed:
                return
            # The newest segment was sealed by another process, which has
            # probably created its successor: list the directory again.
            self._dir_mtime = -1

    def _relist(self, writer: bool) -> None:
        removed = self.removals.removed_names()
        names = sorted(
            n
            for n in os.listdir(self.directory)
            if SEGMENT_NAME_RE.match(n) and n not in removed
        )
        known = {s.name: s for s in self.segments}
        segments: list[Segment] = []
        for name in names:
            segment = known.get(name)
            if segment is None:
                try:
                    segment = self._load(name, writer)
                except SegmentExpired:
                    # Retention removed it after the listing: list again later.
                    self._forget(name)
                    self._dir_mtime = -1
                    continue
                if segment is None:
                    continue
            segments.append(segment)
        for name in set(known) - set(names):
            self._forget(name)
        self.segments = segments

    def _load(self, name: str, writer: bool) -> Segment | None:
        path = os.path.join(self.directory, name)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return None
        index = load_index(self.directory, name)
        if index is not None and index.covered <= size:
            segment = Segment(self.directory, name, index)
            if not index.sealed:
                segment.builder = IndexBuilder(index)
            if index.covered < size:
                self._scan(segment, size, writer)
            return segment
        # Missing, damaged or impossible index: rebuild it from the segment.
        fd = self.fd(name)
        try:
            header = self._header_from_fd(name, fd, size)
        except CorruptSegment as err:
            if size < HEADER_FIXED:
                # A writer creates a segment and then writes its header, so a
                # short header is a creation in progress (or one cut short by a
                # crash, which the next writer moves aside): list again later.
                self._forget(name)
                self._dir_mtime = -1
                return None
            log.warning("%s", err)
            return self._damaged_segment(name, fd, size, str(err))
        index = SegmentIndex(
            name=name,
            first_seq=header.first_seq,
            created_ns=header.created_ns,
            header_len=header.header_len,
            covered=header.header_len,
            last_seq=header.first_seq - 1,
            last_link=header.prev_link,
        )
        segment = Segment(self.directory, name, index)
        segment.header = header
        segment.builder = IndexBuilder(index)
        segment.saved_covered = -1
        self._scan(segment, size, writer)
        if index.sealed or writer:
            self.save(segment)
        return segment

    def _damaged_segment(self, name: str, fd: int, size: int, reason: str) -> Segment:
        """Describe a segment whose header is damaged, so that reads raise.

        The frames' own headers are checksummed, so their seqs and links are still
        known: the journal can continue after this segment, and a read that reaches
        it raises CorruptSegment instead of skipping its events.
        """
        first_seq = int(name[:20])
        last_seq = first_seq - 1
        last_link = b""
        start = find_next_frame(fd, -1, size)
        if start is not None:
            for item in scan_frames(fd, start.offset, size, last_seq):
                if isinstance(item, DamagedRange):
                    continue
                last_link = item.link
                if item.kind == KIND_EVENTS:
                    last_seq = max(last_seq, item.last_seq)
        index = SegmentIndex(
            name=name,
            first_seq=first_seq,
            created_ns=0,
            header_len=0,
            covered=size,
            last_seq=last_seq,
            last_link=last_link,
            # Treated as sealed so that no writer appends after a damaged header.
            sealed_ns=0,
            blocks=[Block(0, size, first_seq, last_seq, 0, 0, 0, b"", reason)],
        )
        segment = Segment(self.directory, name, index)
        segment.damaged = reason
        return segment

    def _forget(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
        self._decompressors.pop(name, None)

    def _size(self, segment: Segment) -> int:
        return os.fstat(self.fd(segment.name)).st_size

    # -- scanning ----------------------------------------------------------

    def _scan(self, segment: Segment, limit: int, writer: bool) -> None:
        """Index frames of *segment* from its covered offset up to *limit*."""
        builder = segment.builder
        if builder is None:
            builder = segment.builder = IndexBuilder(segment.index)
        fd = self.fd(segment.name)
        header = self.header(segment)
        decompressor = self.decompressor(segment)
        newest = (
            not self.segments
            or self.segments[-1] is segment
            or (segment.first_seq > self.segments[-1].first_seq)
        )
        for item in scan_frames(
            fd, segment.index.covered, limit, segment.index.last_seq
        ):
            if isinstance(item, DamagedRange):
                if item.next_seq is None and newest:
                    if writer:
                        self._cut_torn_tail(segment, item.offset, limit)
                    return
                log.warning(
                    "segment %s: %d damaged bytes at offset %d (%s); events %d..%s "
                    "cannot be read; run `journal verify` for the full report",
                    segment.path,
                    item.end - item.offset,
                    item.offset,
                    item.reason,
                    item.after_seq + 1,
                    "?" if item.next_seq is None else item.next_seq - 1,
                )
                builder.add_damage(
                    item.offset, item.end, item.after_seq, item.next_seq, item.reason
                )
                continue
            if item.kind == KIND_SEAL:
                seal = decode_seal(item, segment.path)
                builder.add_seal(item.end, seal.sealed_ns, item.link)
                break
            expected = segment.index.last_seq + 1
            try:
                if item.first_seq != expected:
                    raise CorruptSegment(
                        f"frame starts at seq {item.first_seq}, expected {expected}",
                        segment.path,
                        item.offset,
                    )
                events = Chunk(item, decompressor, segment.path).summaries()
            except CorruptSegment as err:
                reason = err.reason
                log.warning("segment %s: %s", segment.path, reason)
                # A frame whose first seq is wrong still takes the place of its
                # events, so the seqs after it stay readable.
                builder.add_damage(
                    item.offset,
                    item.end,
                    segment.index.last_seq,
                    max(expected, item.first_seq) + item.count,
                    reason,
                )
                continue
            builder.add_frame(
                item.offset, item.end, item.first_seq, item.raw_len, events, item.link
            )
        del header

    def _cut_torn_tail(self, segment: Segment, offset: int, limit: int) -> None:
        """Move an incomplete final frame aside and truncate the segment before it."""
        fd = self.fd(segment.name)
        torn = os.pread(fd, limit - offset, offset)
        side = f"{segment.path}.torn-{offset}"
        side_fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.file_mode)
        try:
            write_all(side_fd, torn)
            os.fsync(side_fd)
        finally:
            os.close(side_fd)
        write_fd = os.open(segment.path, os.O_RDWR)
        try:
            os.ftruncate(write_fd, offset)
            os.fsync(write_fd)
        finally:
            os.close(write_fd)
        log.warning(
            "segment %s: cut an incomplete final frame at offset %d (%d bytes), left by "
            "an interrupted write; the bytes were copied to %s",
            segment.path,
            offset,
            limit - offset,
            side,
        )

    # -- files -------------------------------------------------------------

    def fd(self, name: str) -> int:
        """Return a read-only descriptor for segment *name*, opening it if needed."""
        fd = self._fds.get(name)
        if fd is not None:
            self._fds.move_to_end(name)
            return fd
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as err:
            record = self.removals.find(name)
            if record is not None:
                # Retention removes a run of the oldest segments, so the oldest
                # event left follows the newest removed one.
                removed_through = max(r.last_seq for r in self.removals.records())
                raise SegmentExpired(
                    f"segment {path} (seq {record.first_seq}..{record.last_seq}) was removed "
                    f"by retention; continue with after_seq={removed_through}",
                    path,
                    removed_through + 1,
                ) from err
            raise CorruptSegment(
                f"segment {path} is missing; run `journal verify` for the full report",
                path,
                0,
            ) from err
        except PermissionError as err:
            raise PermissionProblem(permission_message(path, "read")) from err
        self._fds[name] = fd
        while len(self._fds) > MAX_OPEN_SEGMENTS:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def _header_from_fd(self, name: str, fd: int, size: int) -> SegmentHeader:
        return read_header(fd, os.path.join(self.directory, name), size)

    def header(self, segment: Segment) -> SegmentHeader:
        """Return the header of *segment*, reading it on first use."""
        if segment.header is None:
            fd = self.fd(segment.name)
            segment.header = self._header_from_fd(
                segment.name, fd, os.fstat(fd).st_size
            )
        return segment.header

    def decompressor(self, segment: Segment) -> codec.Decompressor:
        """Return the decompressor for *segment* (with its dictionary, if any)."""
        found = self._decompressors.get(segment.name)
        if found is None:
            found = codec.Decompressor(self.header(segment).dictionary)
            self._decompressors[segment.name] = found
        return found

    def save(self, segment: Segment) -> None:
        """Write the index of *segment* if it covers more than the stored one."""
        if self.readonly:
            return
        if segment.builder is not None:
            index = segment.builder.snapshot()
        else:
            index = segment.index
        if index.covered == segment.saved_covered:
            return
        try:
            save_index(self.directory, index, self.file_mode)
        except OSError as err:
            # The index is derived data: failing to store it costs a rescan later,
            # never an event, so a read-only directory must not stop a reader.
            log.debug("could not store the index of %s: %s", segment.path, err)
            return
        segment.saved_covered = index.covered

    def close(self) -> None:
        """Close every descriptor."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._decompressors.clear()

    # -- reading -----------------------------------------------------------

    def block_chunks(
        self, segment: Segment, block: Block, after_seq: int = 0, newest: int = 0
    ) -> list[Chunk]:
        """Read and decompress every events frame of *block*, in seq order.

        Damage that hides only seqs up to *after_seq* is stepped over, so a reader
        that resumes after a :class:`CorruptSegment` gets the events that follow.
        With *newest*, an intact block may return only its last frames, those that
        hold its newest *newest* events.
        """
        if block.damaged is not None:
            raise CorruptSegment(
                f"segment {segment.path}: events {block.first_seq}..{block.last_seq} at "
                f"offset {block.offset} are damaged ({block.damaged}); run `journal "
                f"verify` for the full report, or resume after it with --after-seq "
                f"{block.last_seq} (after_seq= in Python)",
                segment.path,
                block.offset,
                block.first_seq,
                block.last_seq,
            )
        fd = self.fd(segment.name)
        buf = os.pread(fd, block.end - block.offset, block.offset)
        decompressor = self.decompressor(segment)
        if newest:
            tail = self._tail_chunks(segment, block, buf, newest)
            if tail is not None:
                return tail
        chunks: list[Chunk] = []
        damages: list[PartialBlock] = []
        stepped_over = False
        reached = block.first_seq - 1  # last seq of the intact frames so far
        pos = 0
        while pos < len(buf):
            try:
                frame = frame_from_buffer(buf, pos, block.offset)
                if frame.kind == KIND_EVENTS:
                    if frame.first_seq != reached + 1:
                        raise Damaged(
                            f"frame starts at seq {frame.first_seq}, expected "
                            f"{reached + 1}"
                        )
                    if frame.last_seq > after_seq:
                        chunks.append(Chunk(frame, decompressor, segment.path))
                    reached = frame.last_seq
            except (Damaged, Incomplete, CorruptSegment) as err:
                damage = self._damage_in_block(segment, block, buf, pos, reached, err)
                if damage.last_seq is None or damage.last_seq > after_seq:
                    damages.append(damage)
                else:
                    stepped_over = True
                if damage.next_pos is None:
                    break
                pos = damage.next_pos
                reached = damage.last_seq or reached
                continue
            pos = frame.end - block.offset
        if damages:
            # Every intact frame of the block travels with the first damage, so a
            # caller can hand out what precedes it (or, newest first, follows it).
            first = damages[0]
            first.chunks = chunks
            first.damages = damages
            raise first
        # Only a block read whole is compared with the index's count, because
        # frames before the cursor are not decompressed and stepped-over
        # damage leaves fewer events.
        if not stepped_over and after_seq < block.first_seq:
            count = sum(chunk.count for chunk in chunks)
            if count != block.count:
                raise CorruptSegment(
                    f"segment {segment.path}: block at offset {block.offset} contains "
                    f"{count} events, the index records {block.count}",
                    segment.path,
                    block.offset,
                    block.first_seq,
                    block.last_seq,
                )
        return chunks

    def _tail_chunks(
        self, segment: Segment, block: Block, buf: bytes, newest: int
    ) -> list[Chunk] | None:
        """Return the chunks of the frames containing the newest events of *block*.

        Only an intact block takes this path; ``None`` sends the caller to the
        full read, which reports damage precisely.
        """
        frames: list[Frame] = []
        pos = 0
        reached = block.first_seq - 1
        try:
            while pos < len(buf):
                frame = frame_from_buffer(buf, pos, block.offset)
                if frame.kind == KIND_EVENTS:
                    if frame.first_seq != reached + 1:
                        return None
                    frames.append(frame)
                    reached = frame.last_seq
                pos = frame.end - block.offset
        except (Damaged, Incomplete):
            return None
        if reached != block.last_seq:
            return None
        chunks: list[Chunk] = []
        decompressor = self.decompressor(segment)
        for frame in reversed(frames):
            try:
                chunks.append(Chunk(frame, decompressor, segment.path))
            except CorruptSegment:
                return None
            newest -= frame.count
            if newest <= 0:
                break
        chunks.reverse()
        return chunks

    def _damage_in_block(
        self,
        segment: Segment,
        block: Block,
        buf: bytes,
        pos: int,
        reached: int,
        err: Exception,
    ) -> PartialBlock:
        """Describe damage at *pos* of a block: the seqs it hides, the events before it."""
        if isinstance(err, Damaged):
            reason = err.reason
        elif isinstance(err, Incomplete):
            reason = "frame cut short"
        else:
            reason = str(err)
        first = reached + 1
        last = block.last_seq
        next_pos: int | None = None
        # The next intact frame in the block bounds the seqs the damage hides.
        probe = buf.find(b"JF", pos + 1)
        while probe != -1:
            try:
                following = frame_from_buffer(buf, probe, block.offset)
            except (Damaged, Incomplete):
                probe = buf.find(b"JF", probe + 1)
                continue
            if first <= following.first_seq <= last + 1:
                last = following.first_seq - 1
                next_pos = probe
            break
        offset = block.offset + pos
        damage = PartialBlock(
            f"segment {segment.path}: frame at offset {offset} (events {first}..{last}) "
            f"is damaged: {reason}; run `journal verify` for the full report, or resume "
            f"after it with --after-seq {last} (after_seq= in Python)",
            segment.path,
            offset,
            first,
            last,
            [],
        )
        damage.next_pos = next_pos
        return damage
