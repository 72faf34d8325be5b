"""Full verification: checksums, seq continuity, the hash chain and checkpoints.

Verification reads every byte of every segment and only reports; it repairs
nothing. It first takes the write lock for a moment to note each segment's
committed length, then reads up to those lengths, so a writer appending in the
meantime causes no false alarm.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from journal import chain, codec
from journal.errors import CorruptSegment, InvalidArgument, JournalError
from journal.event import validate_event
from journal.lock import WriteLock
from journal.segment import (
    FLAG_DICT,
    FLAG_ZSTD,
    KIND_EVENTS,
    KIND_SEAL,
    SEGMENT_NAME_RE,
    DamagedRange,
    Frame,
    read_header,
    scan_frames,
)

if TYPE_CHECKING:
    from journal.journal import Journal

#: Seconds verification waits for the write lock before noting lengths without it.
SNAPSHOT_LOCK_TIMEOUT = 5.0

#: Problem kinds, as reported.
KINDS = (
    "modified",
    "inserted",
    "deleted",
    "reordered",
    "truncated",
    "segment missing",
    "checksum failure",
)


class Problem(msgspec.Struct, kw_only=True):
    """One finding: its kind, where it is, and what was expected."""

    kind: str
    segment: str | None
    offset: int | None
    seq: int | None
    message: str


class VerifyReport(msgspec.Struct, kw_only=True):
    """The findings of one verification run."""

    directory: str
    ok: bool
    segments: int
    frames: int
    events: int
    keyed: bool
    head_seq: int
    head_link: str
    removed_segments: int
    checkpoint: dict[str, Any] | None
    problems: list[Problem]


def verify_journal(
    journal: Journal,
    *,
    checkpoint: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify every segment of *journal*; see the module docstring.

    *progress*, when given, is called with (segments done, segments in all)
    after each segment.
    """
    store = journal._store
    sizes, locked = _snapshot(journal)
    problems: list[Problem] = []
    key = journal._key

    def report(
        kind: str,
        segment: str | None,
        offset: int | None,
        seq: int | None,
        message: str,
    ) -> None:
        problems.append(
            Problem(kind=kind, segment=segment, offset=offset, seq=seq, message=message)
        )

    # The removal record must describe a contiguous run of the oldest segments.
    removed = store.removals.records()
    expected_seq = 1
    expected_link = chain.ZERO_LINK
    for record in removed:
        if (
            record.first_seq != expected_seq
            or bytes.fromhex(record.prev_link) != expected_link
        ):
            report(
                "segment missing",
                record.name,
                None,
                record.first_seq,
                f"retention record of {record.name} does not continue the chain at seq "
                f"{expected_seq}",
            )
        expected_seq = record.last_seq + 1
        expected_link = bytes.fromhex(record.last_link)

    names = sorted(sizes)
    frames = events = 0
    keyed = False
    links_by_seq: dict[int, set[bytes]] = {}
    head_link = expected_link
    for position, name in enumerate(names):
        if progress is not None and position:
            progress(position, len(names))
        path = os.path.join(store.directory, name)
        size = sizes[name]
        last = position == len(names) - 1
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if store.removals.find(name) is None:
                report(
                    "segment missing",
                    name,
                    None,
                    None,
                    f"segment {name} disappeared during verification and retention did "
                    "not remove it",
                )
            continue
        try:
            try:
                header = read_header(fd, path, size)
            except CorruptSegment as err:
                report("checksum failure", name, 0, None, str(err))
                continue
            keyed = keyed or header.keyed
            if header.keyed and key is None:
                raise InvalidArgument(
                    f"journal {store.directory} has a keyed chain; pass the key "
                    "(--key-file or JOURNAL_KEY_FILE) to verify it"
                )
            if SEGMENT_NAME_RE.match(name) and int(name[:20]) != header.first_seq:
                report(
                    "modified",
                    name,
                    0,
                    header.first_seq,
                    f"segment {name} starts at seq {header.first_seq}; its name says "
                    f"{int(name[:20])}",
                )
            if header.first_seq > expected_seq:
                report(
                    "segment missing",
                    name,
                    0,
                    expected_seq,
                    f"events {expected_seq}..{header.first_seq - 1} are missing before "
                    f"segment {name}, and no retention record explains it",
                )
            elif header.first_seq < expected_seq:
                report(
                    "inserted",
                    name,
                    0,
                    header.first_seq,
                    f"segment {name} starts at seq {header.first_seq}, but seq "
                    f"{expected_seq - 1} was already seen",
                )
            elif header.prev_link != expected_link:
                report(
                    "modified",
                    name,
                    0,
                    header.first_seq,
                    f"segment {name} does not continue the chain of the segment before it",
                )
            expected_seq = header.first_seq
            prev_link = header.prev_link
            decompressor = codec.Decompressor(header.dictionary)
            sealed = False
            items = list(scan_frames(fd, header.header_len, size, expected_seq - 1))
            # How many frames further on start at each seq: a frame that comes
            # early is "reordered" when the frame it skipped appears later.
            pending = Counter(
                item.first_seq
                for item in items
                if isinstance(item, Frame) and item.kind == KIND_EVENTS
            )
            link_by_last = {header.first_seq - 1: header.prev_link}
            seen: set[tuple[int, bytes]] = set()
            for item in items:
                if isinstance(item, DamagedRange):
                    if item.next_seq is None:
                        kind = (
                            "truncated"
                            if item.reason == "incomplete frame"
                            else "checksum failure"
                        )
                        if last and not locked and kind == "truncated":
                            # Without the lock this may be a write in progress.
                            continue
                        report(
                            kind,
                            name,
                            item.offset,
                            item.after_seq + 1,
                            f"segment {name}: {item.end - item.offset} bytes at offset "
                            f"{item.offset} are not a whole valid frame ({item.reason})",
                        )
                    else:
                        report(
                            "checksum failure",
                            name,
                            item.offset,
                            item.after_seq + 1,
                            f"segment {name}: bytes {item.offset}..{item.end} fail their "
                            f"checksum ({item.reason}); events {item.after_seq + 1}.."
                            f"{item.next_seq - 1} cannot be read",
                        )
                        expected_seq = max(expected_seq, item.next_seq)
                    continue
                frames += 1
                if item.kind == KIND_EVENTS:
                    pending[item.first_seq] -= 1
                if sealed:
                    report(
                        "inserted",
                        name,
                        item.offset,
                        item.first_seq,
                        f"segment {name}: a frame follows the seal frame at offset "
                        f"{item.offset}",
                    )
                raw = item.stored
                try:
                    if item.flags & FLAG_ZSTD:
                        raw = decompressor.decompress(
                            item.stored, item.raw_len, bool(item.flags & FLAG_DICT)
                        )
                    if item.kind == KIND_EVENTS:
                        stored_events = codec.split_payload(raw)
                        for event_bytes in stored_events:
                            # Decoding fills in defaults for missing fields, but
                            # the summary type requires every field to be present.
                            codec.decode_summary(event_bytes)
                            # Appending rejects what JSON cannot represent, so a
                            # stored event that fails validation was written
                            # around the library.
                            validate_event(codec.decode_event(event_bytes))
                        if len(stored_events) != item.count:
                            raise ValueError(
                                f"{len(stored_events)} events, header records "
                                f"{item.count}"
                            )
                except Exception as err:  # any decoding failure is a finding
                    report(
                        "modified",
                        name,
                        item.offset,
                        item.first_seq,
                        f"segment {name}: frame at offset {item.offset} cannot be decoded: "
                        f"{err}",
                    )
                    continue
                # Each frame is checked against the link of the frame that ends
                # just before its first seq, so one moved or removed frame is
                # reported once instead of breaking every later link.
                previous = link_by_last.get(item.first_seq - 1)
                if previous is not None:
                    link = chain.next_link(
                        key, previous, item.kind, item.count, item.first_seq, raw
                    )
                    if link != item.link:
                        report(
                            "modified",
                            name,
                            item.offset,
                            item.first_seq,
                            f"segment {name}: frame at offset {item.offset} (seq "
                            f"{item.first_seq}) does not match the hash chain: its "
                            "content was changed",
                        )
                if item.kind == KIND_SEAL:
                    if item.first_seq != expected_seq:
                        report(
                            "modified",
                            name,
                            item.offset,
                            item.first_seq,
                            f"segment {name}: seal frame names seq {item.first_seq}, "
                            f"expected {expected_seq}",
                        )
                    sealed = True
                    links_by_seq.setdefault(item.first_seq - 1, set()).add(item.link)
                    prev_link = item.link
                    continue
                if (item.first_seq, item.link) in seen:
                    report(
                        "inserted",
                        name,
                        item.offset,
                        item.first_seq,
                        f"segment {name}: frame at offset {item.offset} repeats events "
                        f"{item.first_seq}..{item.last_seq}",
                    )
                    continue
                seen.add((item.first_seq, item.link))
                if item.first_seq > expected_seq:
                    if pending.get(expected_seq, 0) > 0:
                        report(
                            "reordered",
                            name,
                            item.offset,
                            item.first_seq,
                            f"segment {name}: frame at offset {item.offset} holds seq "
                            f"{item.first_seq}..{item.last_seq} before seq "
                            f"{expected_seq}",
                        )
                    else:
                        report(
                            "deleted",
                            name,
                            item.offset,
                            expected_seq,
                            f"segment {name}: events {expected_seq}..{item.first_seq - 1} "
                            f"are missing before offset {item.offset}",
                        )
                elif item.first_seq < expected_seq:
                    kind = (
                        "reordered" if item.last_seq not in link_by_last else "inserted"
                    )
                    report(
                        kind,
                        name,
                        item.offset,
                        item.first_seq,
                        f"segment {name}: frame at offset {item.offset} holds seq "
                        f"{item.first_seq}..{item.last_seq} after seq {expected_seq - 1}",
                    )
                events += item.count
                link_by_last[item.last_seq] = item.link
                links_by_seq.setdefault(item.last_seq, set()).add(item.link)
                prev_link = item.link
                expected_seq = max(expected_seq, item.last_seq + 1)
            if not last and not sealed:
                report(
                    "truncated",
                    name,
                    size,
                    expected_seq,
                    f"segment {name} is not the newest but has no seal frame: its end "
                    "was cut off",
                )
            expected_link = prev_link
            head_link = prev_link
        finally:
            os.close(fd)

    head_seq = expected_seq - 1
    checked = None
    if checkpoint is not None:
        checked = _check_checkpoint(checkpoint, head_seq, links_by_seq, removed, report)
    return VerifyReport(
        directory=store.directory,
        ok=not problems,
        segments=len(names),
        frames=frames,
        events=events,
        keyed=keyed,
        head_seq=head_seq,
        head_link=head_link.hex(),
        removed_segments=len(removed),
        checkpoint=checked,
        problems=problems,
    )


def _snapshot(journal: Journal) -> tuple[dict[str, int], bool]:
    """Return each segment file's committed length and whether the lock was held.

    Lengths noted under the write lock end on whole frames. A reader that cannot
    take the lock (a read-only directory, a long hold elsewhere) notes them anyway,
    and the caller then treats an incomplete final frame as a write in progress.
    """
    store = journal._store
    lock = journal._lock
    temporary = None
    if lock is None:
        try:
            temporary = lock = WriteLock(store.directory, file_mode=journal.file_mode)
        except (JournalError, OSError):
            lock = None
    held = False
    if lock is not None:
        try:
            lock.acquire("verify", timeout=SNAPSHOT_LOCK_TIMEOUT)
            held = True
        except (JournalError, OSError):
            held = False
    try:
        removed = store.removals.removed_names()
        sizes = {}
        for name in os.listdir(store.directory):
            if SEGMENT_NAME_RE.match(name) and name not in removed:
                try:
                    sizes[name] = os.stat(os.path.join(store.directory, name)).st_size
                except FileNotFoundError:
                    continue
        return sizes, held
    finally:
        if held and lock is not None:
            lock.release()
        if temporary is not None:
            temporary.close()


def _check_checkpoint(
    checkpoint: dict[str, Any],
    head_seq: int,
    links_by_seq: dict[int, set[bytes]],
    removed: list[Any],
    report: Any,
) -> dict[str, Any]:
    try:
        seq = int(checkpoint["seq"])
        link = bytes.fromhex(str(checkpoint["link"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidArgument(
            f"checkpoint must be a JSON object with seq and link, as printed by `journal "
            f"checkpoint`; got {checkpoint!r:.80} ({err})"
        ) from None
    result: dict[str, Any] = {"seq": seq, "link": link.hex(), "status": "ok"}
    if seq == 0:
        return result
    if seq > head_seq:
        result["status"] = "truncated"
        report(
            "truncated",
            None,
            None,
            head_seq + 1,
            f"the checkpoint records seq {seq}, but the journal ends at seq {head_seq}: "
            f"events {head_seq + 1}..{seq} were cut off",
        )
        return result
    if any(r.first_seq <= seq <= r.last_seq for r in removed):
        # The record keeps only the final link of each removed segment, which
        # may be a later seal frame, so a removed checkpoint cannot be compared.
        result["status"] = "removed by retention"
        return result
    found = set(links_by_seq.get(seq, set()))
    if not found:
        result["status"] = "no frame ends at this seq"
        report(
            "modified",
            None,
            None,
            seq,
            f"no frame ends at the checkpoint's seq {seq}; the frames were rewritten",
        )
        return result
    if link not in found:
        result["status"] = "mismatch"
        report(
            "modified",
            None,
            None,
            seq,
            f"the chain link at seq {seq} differs from the checkpoint: events up to seq "
            f"{seq} were changed",
        )
    return result
