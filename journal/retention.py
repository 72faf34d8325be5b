"""Retention: which segments expire, why, and their removal.

Rules, applied to segments oldest first, and only to a prefix of them so that
the hash chain of what remains starts where the removal record ends:

* ``max_age``: a sealed segment expires when every event in it is older than
  ``now - max_age``. A segment holding an event dated after ``now`` is judged by
  the time it was sealed instead, so one bad clock cannot keep it forever.
* The active segment is never deleted while it is being written. When every
  event in it has expired, retention (holding the write lock, so no append is in
  progress) seals it first so it can go. An expired event therefore outlives the
  cutoff by at most ``segment_max_age``, the longest a segment stays active.
* ``max_bytes`` and ``max_segments`` drop the oldest sealed segments until the
  journal fits; the active segment always stays.

Before any file is removed, its record is appended to ``retention.log`` and
flushed, so no reader is ever pointed at a missing file without an explanation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from journal.errors import InvalidArgument, InvalidEvent
from journal.event import check_time, format_time
from journal.index import index_path
from journal.removal import RemovedSegment
from journal.segment import fsync_directory

if TYPE_CHECKING:
    from journal.journal import Journal
    from journal.store import Segment

log = logging.getLogger("journal")


class SegmentDecision(msgspec.Struct, kw_only=True):
    """Retention decision for one segment, with its reason."""

    name: str
    first_seq: int
    last_seq: int
    events: int
    bytes: int
    min_time: str | None
    max_time: str | None
    sealed: bool
    action: str  # "delete" or "keep"
    reason: str


class RetentionReport(msgspec.Struct, kw_only=True):
    """The outcome of one retention run (or of a dry run, which deletes nothing)."""

    directory: str
    now: str
    cutoff: str | None
    dry_run: bool
    deleted: list[SegmentDecision]
    kept: list[SegmentDecision]
    events_freed: int
    bytes_freed: int
    sealed_active: str | None
    future_dated: list[str]
    oldest_event_left: str | None
    oldest_seq_left: int | None

    @property
    def segments_deleted(self) -> int:
        """Number of segments deleted (or that a real run would delete)."""
        return len(self.deleted)


def _time_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _fmt_us(value: int) -> str:
    moment = _EPOCH + timedelta(microseconds=value)
    return format_time(moment)


def _check_args(
    max_age: timedelta | None,
    max_bytes: int | None,
    max_segments: int | None,
    now: datetime,
) -> None:
    if max_age is None and max_bytes is None and max_segments is None:
        raise InvalidArgument(
            "retention needs at least one of max_age, max_bytes or max_segments"
        )
    if max_age is not None and (
        not isinstance(max_age, timedelta) or max_age < timedelta(0)
    ):
        raise InvalidArgument(
            f"max_age must be a non-negative timedelta, got {max_age!r}"
        )
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
        raise InvalidArgument(
            f"max_bytes must be a non-negative int, got {max_bytes!r}"
        )
    if max_segments is not None and (
        not isinstance(max_segments, int) or max_segments < 1
    ):
        raise InvalidArgument(
            f"max_segments must be an int of at least 1, got {max_segments!r}"
        )
    try:
        check_time("now", now)
    except InvalidEvent as err:
        raise InvalidArgument(str(err).replace("invalid event: ", "")) from None


def _decision(segment: Segment, size: int, action: str, reason: str) -> SegmentDecision:
    index = segment.index
    return SegmentDecision(
        name=segment.name,
        first_seq=index.first_seq,
        last_seq=index.last_seq,
        events=index.count,
        bytes=size,
        min_time=_fmt_us(index.min_us) if index.count else None,
        max_time=_fmt_us(index.max_us) if index.count else None,
        sealed=index.sealed,
        action=action,
        reason=reason,
    )


def enforce(
    journal: Journal,
    *,
    max_age: timedelta | None,
    max_bytes: int | None,
    max_segments: int | None,
    now: datetime | None,
    dry_run: bool,
    progress: Callable[[int, int], None] | None = None,
) -> RetentionReport:
    """Apply the retention rules to *journal*; see the module docstring.

    *progress*, when given, is called with (segments removed, segments to remove).
    """
    now = now if now is not None else journal._now()
    _check_args(max_age, max_bytes, max_segments, now)
    if dry_run:
        with journal._mutex:
            journal._store.refresh(writer=False)
            return _run(journal, max_age, max_bytes, max_segments, now, dry_run=True)
    with journal._locked("retention"), journal._mutex:
        journal._store.refresh(writer=True)
        return _run(
            journal,
            max_age,
            max_bytes,
            max_segments,
            now,
            dry_run=False,
            progress=progress,
        )


def _run(
    journal: Journal,
    max_age: timedelta | None,
    max_bytes: int | None,
    max_segments: int | None,
    now: datetime,
    *,
    dry_run: bool,
    progress: Callable[[int, int], None] | None = None,
) -> RetentionReport:
    store = journal._store
    segments = list(store.segments)
    sizes = {}
    for segment in segments:
        try:
            sizes[segment.name] = os.stat(segment.path).st_size
        except FileNotFoundError:
            sizes[segment.name] = 0
    now_us = _time_us(now)
    cutoff_us = _time_us(now - max_age) if max_age is not None else None
    future: list[str] = []

    def expired_by_age(segment: Segment) -> tuple[bool, str]:
        index = segment.index
        if cutoff_us is None:
            return False, "no max_age"
        if index.count == 0:
            return True, "holds no events"
        if index.max_us > now_us:
            future.append(segment.name)
            sealed_us = (
                (index.sealed_ns // 1000) if index.sealed_ns is not None else now_us
            )
            if sealed_us < cutoff_us:
                return True, (
                    f"holds an event dated {_fmt_us(index.max_us)}, after now; judged by its "
                    f"seal time {_fmt_us(sealed_us)}, older than the cutoff"
                )
            return False, (
                f"holds an event dated {_fmt_us(index.max_us)}, after now; judged by its "
                "seal time, which is not older than the cutoff"
            )
        if index.max_us < cutoff_us:
            return (
                True,
                f"newest event {_fmt_us(index.max_us)} is older than the cutoff",
            )
        return (
            False,
            f"newest event {_fmt_us(index.max_us)} is not older than the cutoff",
        )

    delete: list[tuple[Segment, str]] = []
    kept: list[SegmentDecision] = []
    sealed_active: str | None = None
    remaining_bytes = sum(sizes.values())
    remaining_segments = len(segments)
    stopped = False
    for position, segment in enumerate(segments):
        active = position == len(segments) - 1 and not segment.index.sealed
        reason = ""
        go = False
        if not stopped:
            by_age, age_reason = expired_by_age(segment)
            if by_age:
                go, reason = True, f"expired: {age_reason}"
            elif max_segments is not None and remaining_segments > max_segments:
                go, reason = True, f"over max_segments {max_segments}"
            elif max_bytes is not None and remaining_bytes > max_bytes:
                go, reason = True, f"over max_bytes {max_bytes}"
            else:
                reason = age_reason
            if go and position == len(segments) - 1 and segment.index.count == 0:
                # Its name is the next seq to be written; removing it would make
                # readers treat the next segment, of the same name, as removed.
                go, reason = (
                    False,
                    "newest segment and empty; the next events go into it",
                )
            if go and active and not by_age:
                go, reason = False, "active segment (being written); never deleted"
            if go and active:
                sealed_active = segment.name
                reason += "; active and idle, so sealed first"
        else:
            reason = "an older segment is kept, and retention removes only the oldest"
        if go:
            delete.append((segment, reason))
            remaining_bytes -= sizes[segment.name]
            remaining_segments -= 1
        else:
            stopped = True
            kept.append(_decision(segment, sizes[segment.name], "keep", reason))

    deleted = [_decision(s, sizes[s.name], "delete", r) for s, r in delete]
    if not dry_run and delete:
        if sealed_active is not None:
            journal._seal(segments[-1], "retention")
        _remove(journal, [s for s, _ in delete], sizes, now, progress)
    oldest_us: int | None = None
    oldest_seq: int | None = None
    for segment in segments[len(delete) :]:
        if segment.index.count:
            if oldest_seq is None:
                oldest_seq = segment.index.first_seq
            oldest_us = (
                segment.index.min_us
                if oldest_us is None
                else min(oldest_us, segment.index.min_us)
            )
    report = RetentionReport(
        directory=journal.directory,
        now=format_time(now),
        cutoff=_fmt_us(cutoff_us) if cutoff_us is not None else None,
        dry_run=dry_run,
        deleted=deleted,
        kept=kept,
        events_freed=sum(d.events for d in deleted),
        bytes_freed=sum(d.bytes for d in deleted),
        sealed_active=sealed_active,
        future_dated=future,
        oldest_event_left=_fmt_us(oldest_us) if oldest_us is not None else None,
        oldest_seq_left=oldest_seq,
    )
    for name in future:
        log.warning(
            "segment %s contains an event dated after now (%s)", name, report.now
        )
    return report


def _remove(
    journal: Journal,
    segments: list[Segment],
    sizes: dict[str, int],
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    store = journal._store
    records = []
    for segment in segments:
        index = segment.index
        prev_link = "" if segment.damaged else store.header(segment).prev_link.hex()
        records.append(
            RemovedSegment(
                name=segment.name,
                first_seq=index.first_seq,
                last_seq=index.last_seq,
                events=index.count,
                bytes=sizes[segment.name],
                min_time=_fmt_us(index.min_us) if index.count else None,
                max_time=_fmt_us(index.max_us) if index.count else None,
                prev_link=prev_link,
                last_link=index.last_link.hex(),
                removed_at=format_time(now),
                reason="retention",
            )
        )
    # The record goes first: once it is on disk, every reader treats these
    # segments as removed, so none is pointed at a file that disappears.
    store.removals.append(records)
    for done, segment in enumerate(segments, start=1):
        Path(index_path(store.directory, segment.name)).unlink(missing_ok=True)
        try:
            os.unlink(segment.path)
        except FileNotFoundError:
            pass
        log.info(
            "retention removed %s (seq %d..%d)",
            segment.path,
            segment.index.first_seq,
            segment.index.last_seq,
        )
        if progress is not None:
            progress(done, len(segments))
    fsync_directory(store.directory)
    store._dir_mtime = -1
    store.refresh(writer=True)
