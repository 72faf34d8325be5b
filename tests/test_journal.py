"""The Journal API: appends, durability modes, segments, queries, locking, files."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from conftest import BASE_TIME, FakeClock, list_fds_under, make_event

from journal import (
    AuditEvent,
    ForkedJournal,
    InvalidArgument,
    InvalidEvent,
    Journal,
    JournalClosed,
    JournalError,
    LockTimeout,
    SegmentExpired,
)
from journal.event import format_time
from journal.segment import read_header

SMALL_SEGMENT = 4096


def pad(i: int) -> str:
    """Return 128 hex characters that differ per *i*, so that zstd cannot shrink them."""
    first = hashlib.sha256(str(i).encode()).hexdigest()
    return first + hashlib.sha256(first.encode()).hexdigest()


def padded_event(i: int, **fields) -> AuditEvent:
    fields.setdefault("metadata", {"i": i, "pad": pad(i)})
    return make_event(i, **fields)


def seg_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def idx_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.idx"))


def seqs(events) -> list[int]:
    return [e.seq for e in events]


# -- round trip ----------------------------------------------------------------------


def test_round_trip_every_field(open_journal) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    when = datetime(2024, 5, 1, 17, 30, 15, 123456, tzinfo=india)
    metadata = {
        "ticket": "OPS-12",
        "n": 3,
        "ratio": 0.25,
        "ok": True,
        "none": None,
        "nested": {"list": [1, "two", {"three": 3.0}]},
    }
    event = AuditEvent(
        action="user.create",
        actor="alice",
        target="user/bob",
        outcome="failure",
        time=when,
        id="0190c3a4-0000-7000-8000-000000000001",
        source="10.0.0.1",
        metadata=metadata,
    )
    journal = open_journal()
    returned = journal.append(event)
    assert returned is event
    assert event.seq == 1
    journal.close()
    for reader in (open_journal(readonly=True), open_journal()):
        (stored,) = list(reader.read())
        assert stored.seq == 1
        assert stored.action == "user.create"
        assert stored.actor == "alice"
        assert stored.target == "user/bob"
        assert stored.outcome == "failure"
        assert stored.id == "0190c3a4-0000-7000-8000-000000000001"
        assert stored.source == "10.0.0.1"
        assert stored.metadata == metadata
        assert stored.time == when
        assert stored.time.utcoffset() == timedelta(0)
        assert stored.time.microsecond == 123456
        assert (stored.time.hour, stored.time.minute) == (12, 0)


def test_defaults_round_trip(open_journal) -> None:
    journal = open_journal()
    event = journal.append(AuditEvent(actor="a", action="b"))
    (stored,) = list(journal.read())
    assert stored.target is None
    assert stored.source is None
    assert stored.outcome == "success"
    assert stored.metadata == {}
    assert stored.id == event.id
    assert stored.time == event.time


@pytest.mark.parametrize(
    "when",
    [
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc),
        datetime(1970, 1, 1, tzinfo=timezone.utc),
        datetime(2106, 2, 7, 6, 28, 16, tzinfo=timezone.utc),
        datetime(9999, 12, 31, 23, 59, 58, 999999, tzinfo=timezone.utc),
    ],
)
def test_extreme_times_round_trip_and_query(open_journal, when: datetime) -> None:
    journal = open_journal()
    journal.append(make_event(1, time=when))
    (stored,) = list(journal.read())
    assert stored.time == when
    assert seqs(journal.query(since=when)) == [1]
    assert seqs(journal.query(until=when)) == []
    assert seqs(journal.query(since=when, until=when + timedelta(microseconds=1))) == [
        1
    ]


# -- seqs and append_many ------------------------------------------------------------


def test_seqs_are_gapless(open_journal) -> None:
    journal = open_journal()
    singles = [journal.append(make_event(i)).seq for i in range(40)]
    many = journal.append_many(make_event(i) for i in range(40, 100))
    assert singles == list(range(1, 41))
    assert many == list(range(41, 101))
    assert seqs(journal.read()) == list(range(1, 101))
    assert journal.last_seq == 100


def test_append_many_sets_seqs_on_events(open_journal) -> None:
    journal = open_journal()
    events = [make_event(i) for i in range(5)]
    assert journal.append_many(events) == [1, 2, 3, 4, 5]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert journal.append_many([]) == []
    assert journal.last_seq == 5


def test_append_many_is_all_or_nothing(open_journal, journal_dir) -> None:
    journal = open_journal()
    journal.append(make_event(0))
    size_before = sum(p.stat().st_size for p in seg_files(journal_dir))
    events = [make_event(1), make_event(2), make_event(3, actor=""), make_event(4)]
    with pytest.raises(InvalidEvent, match="event 2: ") as info:
        journal.append_many(events)
    assert info.value.field == "actor"
    assert [e.seq for e in events] == [None, None, None, None]
    assert journal.last_seq == 1
    assert seqs(journal.read()) == [1]
    assert sum(p.stat().st_size for p in seg_files(journal_dir)) == size_before
    assert journal.append_many([make_event(5)]) == [2]


def test_reopen_continues_seqs_and_chain(open_journal) -> None:
    journal = open_journal()
    journal.append_many(make_event(i) for i in range(10))
    journal.close()
    journal = open_journal()
    assert journal.last_seq == 10
    assert journal.append(make_event(10)).seq == 11
    assert journal.append_many([make_event(11), make_event(12)]) == [12, 13]
    journal.close()
    journal = open_journal()
    assert seqs(journal.read()) == list(range(1, 14))
    report = journal.verify()
    assert report.ok, report.problems
    assert report.head_seq == 13
    assert report.events == 13


# -- durability modes ----------------------------------------------------------------


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_immediate_modes_assign_seq(open_journal, durability: str) -> None:
    writer = open_journal(durability=durability)
    reader = open_journal(readonly=True)
    assert writer.append(make_event(1)).seq == 1
    assert reader.last_seq == 1
    assert writer.append_many([make_event(2), make_event(3)]) == [2, 3]
    assert seqs(reader.read()) == [1, 2, 3]


def test_batch_seq_set_at_flush(open_journal) -> None:
    writer = open_journal(durability="batch", flush_interval=60)
    reader = open_journal(readonly=True)
    first = writer.append(make_event(1))
    second = writer.append(make_event(2))
    assert first.seq is None
    assert second.seq is None
    assert reader.last_seq == 0
    writer.flush()
    assert first.seq == 1
    assert second.seq == 2
    assert seqs(reader.read()) == [1, 2]
    writer.flush()
    assert reader.last_seq == 2


def test_batch_close_flushes(open_journal) -> None:
    writer = open_journal(durability="batch", flush_interval=60)
    events = [writer.append(make_event(i)) for i in range(5)]
    assert all(e.seq is None for e in events)
    writer.close()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    reader = open_journal(readonly=True)
    assert seqs(reader.read()) == [1, 2, 3, 4, 5]


def test_batch_background_flush(open_journal) -> None:
    interval = 0.1
    writer = open_journal(durability="batch", flush_interval=interval)
    reader = open_journal(readonly=True)
    started = time.monotonic()
    event = writer.append(make_event(1))
    deadline = started + 5.0
    while reader.last_seq < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert reader.last_seq == 1
    assert event.seq == 1
    # The flusher checks every interval/2 and writes once the oldest buffered
    # event is interval old, so 2x interval plus scheduling slack is ample.
    assert elapsed < interval * 2 + 0.5


def test_batch_append_many_keeps_order(open_journal) -> None:
    writer = open_journal(durability="batch", flush_interval=60)
    a = writer.append(make_event(1))
    b = writer.append(make_event(2))
    assert writer.append_many([make_event(3), make_event(4)]) == [3, 4]
    assert (a.seq, b.seq) == (1, 2)
    assert [e.metadata["i"] for e in writer.read()] == [1, 2, 3, 4]


def test_batch_invalid_event_rejected_at_append(open_journal) -> None:
    writer = open_journal(durability="batch", flush_interval=60)
    with pytest.raises(InvalidEvent):
        writer.append(make_event(1, time=datetime(2024, 1, 1)))
    writer.flush()
    assert writer.last_seq == 0


def test_unknown_durability_rejected(journal_dir) -> None:
    with pytest.raises(InvalidArgument, match="durability"):
        Journal.open(journal_dir, durability="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("segment_max_bytes", 100),
        ("segment_max_age", 0),
        ("segment_max_age", -5),
        ("max_event_bytes", 10),
        ("compression_level", 0),
        ("compression_level", 23),
    ],
)
def test_open_rejects_bad_options(journal_dir, option: str, value) -> None:
    with pytest.raises(InvalidArgument, match=option):
        Journal.open(journal_dir, **{option: value})


# -- segments ------------------------------------------------------------------------


def test_roll_by_size(open_journal, journal_dir) -> None:
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(150):
        journal.append(padded_event(i))
    infos = journal.segments()
    assert len(infos) >= 3
    assert infos[0].first_seq == 1
    for before, after in itertools.pairwise(infos):
        assert after.first_seq == before.last_seq + 1
        assert before.sealed
        # A segment rolls once it reaches the limit, so it overshoots by at
        # most one frame (one padded event) plus the seal frame.
        assert before.bytes < SMALL_SEGMENT + 1024
    assert not infos[-1].sealed
    assert infos[-1].last_seq == 150
    assert sum(i.events for i in infos) == 150
    assert [p.name for p in seg_files(journal_dir)] == [i.name for i in infos]
    events = list(journal.read())
    assert seqs(events) == list(range(1, 151))
    assert [e.metadata for e in events] == [{"i": i, "pad": pad(i)} for i in range(150)]
    assert journal.verify().ok


def test_roll_by_size_with_append_many(open_journal) -> None:
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for start in range(0, 150, 10):
        journal.append_many(padded_event(i) for i in range(start, start + 10))
    assert len(journal.segments()) >= 3
    assert seqs(journal.read()) == list(range(1, 151))


@pytest.mark.parametrize("max_age", [60, timedelta(minutes=1)])
def test_roll_by_age(open_journal, max_age) -> None:
    clock = FakeClock()
    journal = open_journal(segment_max_age=max_age, clock=clock)
    journal.append_many([make_event(1), make_event(2)])
    clock.advance(59)
    journal.append(make_event(3))
    assert len(journal.segments()) == 1
    clock.advance(2)
    journal.append(make_event(4))
    infos = journal.segments()
    assert len(infos) == 2
    assert infos[0].sealed
    assert (infos[0].first_seq, infos[0].last_seq) == (1, 3)
    assert (infos[1].first_seq, infos[1].last_seq) == (4, 4)
    assert infos[1].created == format_time(clock.now)
    assert seqs(journal.read()) == [1, 2, 3, 4]


def test_roll_by_age_after_reopen(open_journal) -> None:
    clock = FakeClock()
    journal = open_journal(segment_max_age=60, clock=clock)
    journal.append(make_event(1))
    journal.close()
    clock.advance(3600)
    journal = open_journal(segment_max_age=60, clock=clock)
    journal.append(make_event(2))
    assert [(i.first_seq, i.last_seq, i.sealed) for i in journal.segments()] == [
        (1, 1, True),
        (2, 2, False),
    ]


def test_reader_sees_events_written_after_it_opened(open_journal) -> None:
    writer = open_journal(segment_max_bytes=SMALL_SEGMENT)
    writer.append(padded_event(0))
    reader = open_journal(readonly=True)
    assert seqs(reader.read()) == [1]
    for i in range(1, 120):
        writer.append(padded_event(i))
    assert len(writer.segments()) >= 3
    assert seqs(reader.read()) == list(range(1, 121))
    assert len(list(reader.query(actor="user1"))) == 40
    assert reader.last_seq == 120


def _segment_being_created(open_journal, journal_dir) -> Path:
    """Leave the journal as a writer does between creating a segment file and
    writing its header: segment 1 sealed (seqs 1..3), segment 4 empty."""
    clock = FakeClock()
    writer = open_journal(segment_max_age=60, clock=clock)
    writer.append_many([make_event(1), make_event(2), make_event(3)])
    clock.advance(120)
    writer.append(make_event(4))
    writer.close()
    newest = journal_dir / "00000000000000000004.seg"
    newest.write_bytes(b"")
    (journal_dir / "00000000000000000004.idx").unlink(missing_ok=True)
    return newest


def test_reader_ignores_segment_being_created(open_journal, journal_dir) -> None:
    _segment_being_created(open_journal, journal_dir)
    reader = open_journal(readonly=True)
    assert seqs(reader.read()) == [1, 2, 3]
    assert seqs(reader.recent()) == [3, 2, 1]
    assert reader.last_seq == 3


def test_writer_opens_while_segment_being_created(open_journal, journal_dir) -> None:
    _segment_being_created(open_journal, journal_dir)
    writer = open_journal()
    assert seqs(writer.read()) == [1, 2, 3]
    assert writer.append(make_event(5)).seq == 4
    assert seqs(writer.read()) == [1, 2, 3, 4]


def test_second_writer_object_reads_rolled_segments(open_journal) -> None:
    first = open_journal(segment_max_bytes=SMALL_SEGMENT)
    first.append(padded_event(0))
    second = open_journal(segment_max_bytes=SMALL_SEGMENT)
    assert seqs(second.read()) == [1]
    for i in range(1, 100):
        first.append(padded_event(i))
    assert seqs(second.read()) == list(range(1, 101))
    assert seqs(second.recent(200)) == list(range(100, 0, -1))


# -- recent --------------------------------------------------------------------------


def _fill_for_filters(journal: Journal, count: int = 30) -> list[AuditEvent]:
    outcomes = ["success", "failure", "denied"]
    events = [
        make_event(
            i,
            actor=f"user{i % 3}",
            action=["login", "logout", "delete", "create"][i % 4],
            target=None if i % 5 == 0 else f"t{i % 2}",
            outcome=outcomes[i % 3 if i % 7 else 2],
            time=BASE_TIME + timedelta(minutes=(i * 7) % count),
        )
        for i in range(count)
    ]
    journal.append_many(events[: count // 2])
    for event in events[count // 2 :]:
        journal.append(event)
    return list(journal.read())


def test_recent_order_and_limit(open_journal) -> None:
    journal = open_journal()
    _fill_for_filters(journal)
    assert seqs(journal.recent()) == list(range(30, 10, -1))
    assert seqs(journal.recent(5)) == [30, 29, 28, 27, 26]
    assert seqs(journal.recent(limit=100)) == list(range(30, 0, -1))
    assert journal.recent(0) == []


def test_recent_filters(open_journal) -> None:
    journal = open_journal()
    stored = _fill_for_filters(journal)
    newest_first = list(reversed(stored))

    def expect(limit: int, **filters) -> list[int]:
        chosen = []
        for event in newest_first:
            if all(
                getattr(event, f) in ([v] if isinstance(v, str) else v)
                for f, v in filters.items()
            ):
                chosen.append(event.seq)
        return chosen[:limit]

    cases = [
        {"actor": "user1"},
        {"actor": ["user1", "user2"]},
        {"actor": "user0", "outcome": "denied"},
        {"action": ["login", "delete"], "outcome": ["failure", "denied"]},
        {"target": "t1"},
        {"actor": "nobody"},
        {"actor": []},
    ]
    for filters in cases:
        for limit in (1, 3, 100):
            assert seqs(journal.recent(limit, **filters)) == expect(limit, **filters), (
                filters
            )


def test_recent_across_segments(open_journal) -> None:
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(90):
        journal.append(padded_event(i))
    assert len(journal.segments()) >= 2
    assert seqs(journal.recent(60)) == list(range(90, 30, -1))
    assert seqs(journal.recent(5, actor="user0")) == [88, 85, 82, 79, 76]


# -- query ---------------------------------------------------------------------------

OFFSETS = [5, 1, 9, 3, 7, 0, 8, 2, 6, 4, 3, 5]


def _fill_out_of_order(journal: Journal) -> list[AuditEvent]:
    for i, minutes in enumerate(OFFSETS):
        journal.append(
            make_event(
                i,
                actor=["alice", "bob"][i % 2],
                outcome=["success", "failure", "denied"][i % 3],
                time=BASE_TIME + timedelta(minutes=minutes),
            )
        )
    return list(journal.read())


def test_query_time_range_half_open(open_journal) -> None:
    journal = open_journal()
    _fill_out_of_order(journal)
    since = BASE_TIME + timedelta(minutes=3)
    until = BASE_TIME + timedelta(minutes=7)
    expected = [i + 1 for i, m in enumerate(OFFSETS) if 3 <= m < 7]
    assert seqs(journal.query(since=since, until=until)) == expected
    assert seqs(journal.query(since=since)) == [
        i + 1 for i, m in enumerate(OFFSETS) if m >= 3
    ]
    assert seqs(journal.query(until=until)) == [
        i + 1 for i, m in enumerate(OFFSETS) if m < 7
    ]
    assert seqs(journal.query(since=until, until=since)) == []
    assert seqs(journal.query(since=since, until=since)) == []
    one_us = timedelta(microseconds=1)
    assert seqs(journal.query(since=since, until=since + one_us)) == [4, 11]


def test_query_bounds_in_other_timezone(open_journal) -> None:
    journal = open_journal()
    _fill_out_of_order(journal)
    tokyo = timezone(timedelta(hours=9))
    since = (BASE_TIME + timedelta(minutes=3)).astimezone(tokyo)
    until = (BASE_TIME + timedelta(minutes=7)).astimezone(tokyo)
    assert seqs(journal.query(since=since, until=until)) == [
        i + 1 for i, m in enumerate(OFFSETS) if 3 <= m < 7
    ]


def test_query_filters_and_lists(open_journal) -> None:
    journal = open_journal()
    stored = _fill_out_of_order(journal)
    assert seqs(journal.query(actor="alice")) == [
        e.seq for e in stored if e.actor == "alice"
    ]
    assert seqs(journal.query(outcome=["failure", "denied"])) == [
        e.seq for e in stored if e.outcome in ("failure", "denied")
    ]
    assert seqs(journal.query(actor="bob", outcome="denied")) == [
        e.seq for e in stored if e.actor == "bob" and e.outcome == "denied"
    ]
    assert seqs(journal.query(actor=("alice", "bob"))) == seqs(stored)
    assert seqs(journal.query(actor="carol")) == []
    assert seqs(journal.query(target="record/3")) == [4]


def test_query_after_seq_and_limit(open_journal) -> None:
    journal = open_journal()
    _fill_out_of_order(journal)
    assert seqs(journal.query(after_seq=9)) == [10, 11, 12]
    assert seqs(journal.query(after_seq=12)) == []
    assert seqs(journal.query(after_seq=100)) == []
    assert seqs(journal.query(limit=3)) == [1, 2, 3]
    assert seqs(journal.query(limit=0)) == []
    assert seqs(journal.query(actor="alice", after_seq=4, limit=2)) == [5, 7]
    assert seqs(journal.read(after_seq=10)) == [11, 12]
    # Paging with the last seq as a cursor visits every event once.
    paged: list[int] = []
    cursor = 0
    while True:
        page = seqs(journal.query(after_seq=cursor, limit=5))
        if not page:
            break
        paged.extend(page)
        cursor = page[-1]
    assert paged == list(range(1, 13))


@pytest.mark.parametrize("bound", ["since", "until"])
def test_query_rejects_naive_bounds(open_journal, bound: str) -> None:
    journal = open_journal()
    journal.append(make_event(1))
    with pytest.raises(InvalidArgument, match="timezone"):
        list(journal.query(**{bound: datetime(2024, 5, 1, 12, 0)}))


@pytest.mark.parametrize(
    "arguments",
    [{"after_seq": -1}, {"limit": -1}, {"actor": 5}, {"outcome": ["ok", None]}],
)
def test_query_rejects_bad_arguments(open_journal, arguments) -> None:
    journal = open_journal()
    with pytest.raises(InvalidArgument):
        list(journal.query(**arguments))


def test_recent_rejects_bad_arguments(open_journal) -> None:
    journal = open_journal()
    with pytest.raises(InvalidArgument):
        journal.recent(-1)
    with pytest.raises(InvalidArgument):
        journal.recent(5, actor=[3])


# -- follow --------------------------------------------------------------------------


def _follow_in_thread(journal: Journal, count: int, **options):
    """Start a thread that collects *count* events from ``journal.follow``."""
    found: list[AuditEvent] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for event in journal.follow(poll_interval=0.02, **options):
                found.append(event)
                if len(found) >= count:
                    return
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, found, errors


def test_follow_sees_appends_from_other_journal(open_journal) -> None:
    writer = open_journal(segment_max_bytes=SMALL_SEGMENT)
    writer.append_many([make_event(0), make_event(1)])
    follower = open_journal(readonly=True)
    thread, found, errors = _follow_in_thread(follower, 60)
    time.sleep(0.1)
    for i in range(2, 62):
        writer.append(padded_event(i))
    thread.join(timeout=8)
    assert errors == []
    assert seqs(found) == list(range(3, 63))
    assert not thread.is_alive()


def test_follow_from_cursor(open_journal) -> None:
    writer = open_journal()
    writer.append_many([make_event(i) for i in range(5)])
    follower = open_journal(readonly=True)
    thread, found, errors = _follow_in_thread(follower, 5, after_seq=2)
    writer.append_many([make_event(5), make_event(6)])
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert errors == []
    assert seqs(found) == [3, 4, 5, 6, 7]


def test_follow_sees_appends_from_other_process(open_journal, journal_dir) -> None:
    writer = open_journal()
    writer.append(make_event(0))
    follower = open_journal(readonly=True)
    thread, found, errors = _follow_in_thread(follower, 20)
    script = (
        "import sys\n"
        "from journal import Journal, AuditEvent\n"
        "with Journal.open(sys.argv[1]) as j:\n"
        "    for i in range(20):\n"
        "        j.append(AuditEvent(actor='proc', action='child.write', metadata={'i': i}))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(journal_dir)], check=True, timeout=60
    )
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert errors == []
    assert seqs(found) == list(range(2, 22))
    assert [e.metadata["i"] for e in found] == list(range(20))
    assert {e.actor for e in found} == {"proc"}


# -- read-only -----------------------------------------------------------------------


def test_readonly_missing_directory(journal_dir) -> None:
    with pytest.raises(JournalError):
        Journal.open(journal_dir, readonly=True)
    assert not journal_dir.exists()


def test_readonly_empty_directory_creates_nothing(journal_dir) -> None:
    journal_dir.mkdir()
    with Journal.open(journal_dir, readonly=True) as journal:
        assert list(journal.read()) == []
        assert journal.recent() == []
        assert journal.last_seq == 0
        journal.stats()
    assert list(journal_dir.iterdir()) == []


def test_readonly_cannot_write(open_journal, journal_dir) -> None:
    writer = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(60):
        writer.append(padded_event(i))
    writer.close()
    reader = open_journal(readonly=True)
    with pytest.raises(JournalError, match="read-only"):
        reader.append(make_event(1))
    with pytest.raises(JournalError, match="read-only"):
        reader.append_many([make_event(1)])
    with pytest.raises(JournalError, match="read-only"), reader.lock():
        pass
    assert reader.last_seq == 60


def test_readonly_open_creates_no_files(open_journal, journal_dir) -> None:
    writer = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(60):
        writer.append(padded_event(i))
    writer.close()
    for index in idx_files(journal_dir):
        index.unlink()
    before = sorted(p.name for p in journal_dir.iterdir())
    reader = open_journal(readonly=True)
    assert seqs(reader.read()) == list(range(1, 61))
    assert len(list(reader.query(actor="user2"))) == 20
    reader.stats()
    reader.verify()
    reader.close()
    assert sorted(p.name for p in journal_dir.iterdir()) == before


# -- files and permissions -----------------------------------------------------------


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


def test_file_and_directory_modes(open_journal, journal_dir) -> None:
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(60):
        journal.append(padded_event(i))
    journal.close()
    assert stat.S_IMODE(journal_dir.stat().st_mode) == 0o700
    modes = _modes(journal_dir)
    assert any(name.endswith(".seg") for name in modes)
    assert any(name.endswith(".idx") for name in modes)
    assert "journal.lock" in modes
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}


def test_custom_modes(journal_dir) -> None:
    old_umask = os.umask(0o022)
    try:
        with Journal.open(
            journal_dir,
            file_mode=0o640,
            dir_mode=0o750,
            segment_max_bytes=SMALL_SEGMENT,
        ) as journal:
            for i in range(60):
                journal.append(padded_event(i))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(journal_dir.stat().st_mode) == 0o750
    modes = _modes(journal_dir)
    assert {name: mode for name, mode in modes.items() if mode != 0o640} == {}


def test_close_releases_every_file(journal_dir) -> None:
    journal = Journal.open(journal_dir, segment_max_bytes=SMALL_SEGMENT)
    for i in range(60):
        journal.append(padded_event(i))
    list(journal.read())
    assert list_fds_under(journal_dir) != []
    journal.close()
    assert list_fds_under(journal_dir) == []


# -- fork ----------------------------------------------------------------------------


def _run_in_child(action) -> int:
    """Fork, run *action* in the child and return the child's exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = action()
        except BaseException:
            code = 98
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_fork_child_append_raises(open_journal) -> None:
    journal = open_journal()
    journal.append(make_event(1))

    def child() -> int:
        try:
            journal.append(make_event(2))
        except ForkedJournal:
            return 0
        return 1

    assert _run_in_child(child) == 0
    assert journal.append(make_event(3)).seq == 2
    assert seqs(journal.read()) == [1, 2]


def test_fork_child_reads_raise_and_close_is_harmless(open_journal) -> None:
    journal = open_journal()
    journal.append(make_event(1))

    def child() -> int:
        for call in (
            lambda: list(journal.read()),
            lambda: journal.recent(),
            lambda: journal.stats(),
        ):
            try:
                call()
            except ForkedJournal:
                continue
            return 1
        journal.close()
        return 0

    assert _run_in_child(child) == 0
    assert journal.append(make_event(2)).seq == 2
    assert journal.verify().ok


def test_fork_child_can_open_its_own(open_journal, journal_dir) -> None:
    journal = open_journal()
    journal.append(make_event(1))

    def child() -> int:
        with Journal.open(journal_dir) as own:
            return 0 if own.append(make_event(2)).seq == 2 else 1

    assert _run_in_child(child) == 0
    assert seqs(journal.read()) == [1, 2]
    assert journal.append(make_event(3)).seq == 3


# -- several writers in one process --------------------------------------------------


def test_two_journals_one_directory_threads(open_journal) -> None:
    first = open_journal(segment_max_bytes=SMALL_SEGMENT)
    second = open_journal(segment_max_bytes=SMALL_SEGMENT)
    results: dict[str, list[int]] = {"a": [], "b": []}

    def write(journal: Journal, name: str) -> None:
        for i in range(150):
            event = padded_event(i, actor=name)
            results[name].append(journal.append(event).seq)

    threads = [
        threading.Thread(target=write, args=(first, "a"), daemon=True),
        threading.Thread(target=write, args=(second, "b"), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "writers deadlocked"
    assert sorted(results["a"] + results["b"]) == list(range(1, 301))
    for journal in (first, second):
        events = list(journal.read())
        assert seqs(events) == list(range(1, 301))
        by_actor = {"a": [], "b": []}
        for event in events:
            by_actor[event.actor].append(event.metadata["i"])
        assert by_actor == {"a": list(range(150)), "b": list(range(150))}
    assert first.verify().ok


def test_two_journals_alternating(open_journal) -> None:
    first = open_journal()
    second = open_journal()
    got = []
    for i in range(20):
        got.append((first if i % 2 else second).append(make_event(i)).seq)
    assert got == list(range(1, 21))


def test_lock_block_allows_own_appends(open_journal) -> None:
    journal = open_journal()
    with journal.lock() as held:
        assert held is journal
        assert journal.append(make_event(1)).seq == 1
        assert journal.append_many([make_event(2), make_event(3)]) == [2, 3]
    assert journal.append(make_event(4)).seq == 4


def test_lock_block_makes_others_wait(open_journal) -> None:
    journal = open_journal()
    other = open_journal()
    impatient = open_journal(lock_timeout=0.2)
    done = threading.Event()
    errors: list[BaseException] = []

    def append_other() -> None:
        try:
            other.append(make_event(2))
        except BaseException as err:
            errors.append(err)
        done.set()

    timeouts: list[BaseException] = []

    def append_impatient() -> None:
        try:
            impatient.append(make_event(3))
        except LockTimeout as err:
            timeouts.append(err)

    with journal.lock():
        journal.append(make_event(1))
        waiter = threading.Thread(target=append_other, daemon=True)
        waiter.start()
        assert not done.wait(0.3), "another journal appended while the lock was held"
        quick = threading.Thread(target=append_impatient, daemon=True)
        quick.start()
        quick.join(timeout=10)
        assert len(timeouts) == 1
    waiter.join(timeout=10)
    assert done.is_set()
    assert errors == []
    assert seqs(journal.read()) == [1, 2]


def test_threads_append_concurrently(open_journal) -> None:
    journal = open_journal(durability="fsync")
    per_thread = 100
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def write(k: int) -> None:
        try:
            barrier.wait()
            results[k] = [
                journal.append(
                    make_event(i, actor=f"t{k}", metadata={"t": k, "i": i})
                ).seq
                for i in range(per_thread)
            ]
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(k,), daemon=True) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    every = sorted(s for values in results.values() for s in values)
    assert every == list(range(1, 8 * per_thread + 1))
    for values in results.values():
        assert values == sorted(values)
    events = list(journal.read())
    assert seqs(events) == every
    for k in range(8):
        assert [e.metadata["i"] for e in events if e.metadata["t"] == k] == list(
            range(per_thread)
        )
    assert journal.stats()["lock"]["acquisitions"] <= 8 * per_thread


# -- closed journals -----------------------------------------------------------------


def test_closed_journal_raises(journal_dir) -> None:
    journal = Journal.open(journal_dir)
    journal.append(make_event(1))
    journal.close()
    journal.close()
    calls = [
        lambda: journal.append(make_event(2)),
        lambda: journal.append_many([make_event(2)]),
        lambda: list(journal.read()),
        lambda: list(journal.query(actor="x")),
        lambda: journal.recent(),
        lambda: journal.segments(),
        lambda: journal.stats(),
        lambda: journal.checkpoint(),
        lambda: journal.verify(),
        lambda: journal.flush(),
        lambda: next(journal.follow()),
    ]
    for call in calls:
        with pytest.raises(JournalClosed, match="closed"):
            call()


def test_context_manager_closes(journal_dir) -> None:
    with Journal.open(journal_dir) as journal:
        journal.append(make_event(1))
    with pytest.raises(JournalClosed):
        journal.append(make_event(2))


# -- stats and segments --------------------------------------------------------------


def test_segments_fields(open_journal, journal_dir) -> None:
    clock = FakeClock()
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT, clock=clock)
    times = [
        BASE_TIME + timedelta(seconds=(i * 37) % 100, microseconds=i) for i in range(80)
    ]
    for i, when in enumerate(times):
        journal.append(padded_event(i, time=when))
    infos = journal.segments()
    assert len(infos) >= 2
    for info in infos:
        path = journal_dir / info.name
        assert info.path == str(path)
        assert info.name == f"{info.first_seq:020d}.seg"
        assert info.bytes == path.stat().st_size
        assert info.events == info.last_seq - info.first_seq + 1
        inside = times[info.first_seq - 1 : info.last_seq]
        assert info.min_time == format_time(min(inside))
        assert info.max_time == format_time(max(inside))
        assert info.raw_bytes > 0
        assert info.ratio == round(info.raw_bytes / info.bytes, 2)
        assert info.created == format_time(clock.now)
        assert info.damaged_blocks == 0
    assert [i.sealed for i in infos] == [True] * (len(infos) - 1) + [False]


def test_stats_fields(open_journal, journal_dir) -> None:
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(80):
        journal.append(padded_event(i, time=BASE_TIME + timedelta(seconds=i)))
    stats = journal.stats()
    infos = journal.segments()
    assert stats["directory"] == str(journal_dir)
    assert stats["segments"] == len(infos)
    assert stats["events"] == 80
    assert stats["first_seq"] == 1
    assert stats["last_seq"] == 80
    assert stats["bytes"] == sum(p.stat().st_size for p in seg_files(journal_dir))
    assert stats["raw_bytes"] == sum(i.raw_bytes for i in infos)
    assert stats["oldest_event"] == format_time(BASE_TIME)
    assert stats["newest_event"] == format_time(BASE_TIME + timedelta(seconds=79))
    assert stats["damaged_blocks"] == 0
    assert stats["lock"]["acquisitions"] >= 1
    assert "holder" in stats["lock"]
    msgspec.json.encode(stats)


def test_stats_oldest_newest_with_fractional_seconds(open_journal) -> None:
    journal = open_journal()
    journal.append(make_event(1, time=BASE_TIME.replace(microsecond=500000)))
    journal.append(make_event(2, time=BASE_TIME))
    stats = journal.stats()
    assert stats["oldest_event"] == format_time(BASE_TIME)
    assert stats["newest_event"] == format_time(BASE_TIME.replace(microsecond=500000))


def test_stats_empty_journal(open_journal) -> None:
    journal = open_journal()
    stats = journal.stats()
    assert stats["segments"] == 0
    assert stats["events"] == 0
    assert stats["last_seq"] == 0
    assert stats["oldest_event"] is None
    assert journal.segments() == []


# -- checkpoint and verify -----------------------------------------------------------


def test_checkpoint_then_verify(open_journal) -> None:
    journal = open_journal()
    journal.append_many([make_event(i) for i in range(5)])
    head = journal.checkpoint()
    assert head["seq"] == 5
    assert len(bytes.fromhex(head["link"])) == 16
    assert head["keyed"] is False
    journal.append(make_event(5))
    report = journal.verify(checkpoint=head)
    assert report.ok, report.problems
    assert report.checkpoint["status"] == "ok"
    assert report.head_seq == 6


def test_verify_detects_cut_tail_with_checkpoint(open_journal, journal_dir) -> None:
    journal = open_journal()
    journal.append(make_event(0))
    size_after_first = seg_files(journal_dir)[0].stat().st_size
    journal.append(make_event(1))
    head = journal.checkpoint()
    journal.close()
    os.truncate(seg_files(journal_dir)[0], size_after_first)
    for index in idx_files(journal_dir):
        index.unlink()
    reader = open_journal(readonly=True)
    assert reader.verify().ok
    report = reader.verify(checkpoint=head)
    assert not report.ok
    assert report.checkpoint["status"] == "truncated"


def test_keyed_journal_needs_key(journal_dir) -> None:
    key = b"k" * 32
    with Journal.open(journal_dir, key=key) as journal:
        journal.append(make_event(1))
        assert journal.checkpoint()["keyed"] is True
    with pytest.raises(InvalidArgument, match="keyed"):
        Journal.open(journal_dir)
    with pytest.raises(InvalidArgument, match="key"):
        Journal.open(journal_dir, key=b"x" * 32)
    with Journal.open(journal_dir, key=key) as journal:
        assert journal.append(make_event(2)).seq == 2
        assert journal.verify().ok


# -- retention -----------------------------------------------------------------------


def test_retention_max_segments(open_journal, journal_dir) -> None:
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(150):
        journal.append(padded_event(i))
    infos = journal.segments()
    assert len(infos) >= 4
    dry = journal.enforce_retention(max_segments=2, dry_run=True)
    assert len(dry.deleted) == len(infos) - 2
    assert len(seg_files(journal_dir)) == len(infos)
    report = journal.enforce_retention(max_segments=2)
    assert [d.name for d in report.deleted] == [i.name for i in infos[:-2]]
    assert [p.name for p in seg_files(journal_dir)] == [i.name for i in infos[-2:]]
    first_left = infos[-2].first_seq
    assert seqs(journal.read()) == list(range(first_left, 151))
    assert report.oldest_seq_left == first_left
    verified = journal.verify()
    assert verified.ok, verified.problems
    assert verified.removed_segments == len(infos) - 2
    assert journal.append(padded_event(150)).seq == 151


def _parse_utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_retention_max_age(open_journal) -> None:
    now = BASE_TIME + timedelta(days=10)
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT, clock=FakeClock(now))
    for i in range(100):
        journal.append(padded_event(i, time=BASE_TIME + timedelta(days=i // 25)))
    report = journal.enforce_retention(max_age=timedelta(days=8), now=now)
    cutoff = now - timedelta(days=8)
    assert report.deleted
    for decision in report.deleted:
        assert _parse_utc(decision.max_time) < cutoff
    infos = journal.segments()
    # Retention removes only the oldest segments, so the oldest segment left
    # contains an event at or after the cutoff.
    assert _parse_utc(infos[0].max_time) >= cutoff
    assert seqs(journal.read()) == list(range(infos[0].first_seq, 101))
    assert report.oldest_seq_left == infos[0].first_seq


def test_retention_requires_a_limit(open_journal) -> None:
    journal = open_journal()
    with pytest.raises(InvalidArgument):
        journal.enforce_retention()


# -- index files ---------------------------------------------------------------------


def _build_indexed(journal: Journal) -> None:
    # Small padded events roll segments; a run of short events in one segment
    # gives it several index blocks.
    for i in range(100):
        journal.append(
            padded_event(i, time=BASE_TIME + timedelta(minutes=(i * 13) % 97))
        )
    for start in range(100, 700, 20):
        journal.append_many(
            make_event(
                i,
                outcome=["success", "failure"][i % 2],
                time=BASE_TIME + timedelta(minutes=(i * 29) % 211),
            )
            for i in range(start, start + 20)
        )


def _answers(journal: Journal) -> dict[str, list[int]]:
    since = BASE_TIME + timedelta(minutes=50)
    until = BASE_TIME + timedelta(minutes=120)
    return {
        "all": seqs(journal.read()),
        "range": seqs(journal.query(since=since, until=until)),
        "actor": seqs(journal.query(actor="user1")),
        "mixed": seqs(
            journal.query(actor=["user0", "user2"], outcome="failure", since=since)
        ),
        "target": seqs(journal.query(target=["record/5", "record/650"])),
        "cursor": seqs(journal.query(after_seq=333, limit=50)),
        "recent": seqs(journal.recent(50, outcome="failure")),
        "recent_target": seqs(journal.recent(5, target="record/42")),
        "none": seqs(journal.query(actor="nobody")),
    }


def _brute_answers(events: list[AuditEvent]) -> dict[str, list[int]]:
    since = BASE_TIME + timedelta(minutes=50)
    until = BASE_TIME + timedelta(minutes=120)
    return {
        "all": seqs(events),
        "range": [e.seq for e in events if since <= e.time < until],
        "actor": [e.seq for e in events if e.actor == "user1"],
        "mixed": [
            e.seq
            for e in events
            if e.actor in ("user0", "user2")
            and e.outcome == "failure"
            and e.time >= since
        ],
        "target": [e.seq for e in events if e.target in ("record/5", "record/650")],
        "cursor": [e.seq for e in events if e.seq > 333][:50],
        "recent": [e.seq for e in reversed(events) if e.outcome == "failure"][:50],
        "recent_target": [e.seq for e in reversed(events) if e.target == "record/42"][
            :5
        ],
        "none": [],
    }


@pytest.fixture
def indexed_journal(journal_dir):
    with Journal.open(journal_dir, segment_max_bytes=8192) as journal:
        _build_indexed(journal)
        expected = _answers(journal)
        events = list(journal.read())
    assert expected == _brute_answers(events)
    assert len(idx_files(journal_dir)) == len(seg_files(journal_dir))
    return journal_dir, expected


def test_index_deleted_gives_same_answers(indexed_journal) -> None:
    journal_dir, expected = indexed_journal
    for index in idx_files(journal_dir):
        index.unlink()
    with Journal.open(journal_dir, readonly=True) as reader:
        assert _answers(reader) == expected
    with Journal.open(journal_dir) as writer:
        assert _answers(writer) == expected
        assert writer.append(make_event(700)).seq == 701
    assert len(idx_files(journal_dir)) == len(seg_files(journal_dir))


@pytest.mark.parametrize(
    "damage", ["flip_middle", "truncate", "garbage", "empty", "swap"]
)
def test_index_corrupted_gives_same_answers(indexed_journal, damage: str) -> None:
    journal_dir, expected = indexed_journal
    indexes = idx_files(journal_dir)
    if damage == "swap":
        # Valid index files under the wrong names.
        contents = [p.read_bytes() for p in indexes]
        for path, data in zip(indexes, contents[1:] + contents[:1]):
            path.write_bytes(data)
    for path in indexes:
        data = bytearray(path.read_bytes())
        if damage == "flip_middle":
            for offset in range(len(data) // 3, len(data), max(1, len(data) // 7)):
                data[offset] ^= 0x5A
        elif damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "garbage":
            data = bytearray(os.urandom(len(data)))
        elif damage == "empty":
            data = bytearray()
        if damage != "swap":
            path.write_bytes(bytes(data))
    with Journal.open(journal_dir, readonly=True) as reader:
        assert _answers(reader) == expected
    with Journal.open(journal_dir) as writer:
        assert _answers(writer) == expected
        assert writer.append(make_event(700)).seq == 701
        assert writer.verify().ok


def test_index_stale_copy_gives_same_answers(journal_dir, tmp_path) -> None:
    with Journal.open(journal_dir) as journal:
        journal.append_many(make_event(i) for i in range(50))
    (index,) = idx_files(journal_dir)
    stale = tmp_path / "stale.idx"
    shutil.copyfile(index, stale)
    with Journal.open(journal_dir) as journal:
        journal.append_many(make_event(i, actor="late") for i in range(50, 300))
        expected = seqs(journal.query(actor="late"))
    shutil.copyfile(stale, index)
    with Journal.open(journal_dir, readonly=True) as reader:
        assert seqs(reader.query(actor="late")) == expected
        assert seqs(reader.read()) == list(range(1, 301))
        assert seqs(reader.recent(3, actor="late")) == [300, 299, 298]


# -- more concurrency, limits and errors ---------------------------------------------


def test_reader_thread_cursor_same_object(open_journal) -> None:
    journal = open_journal(segment_max_bytes=SMALL_SEGMENT)
    total = 300
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        cursor = 0
        try:
            while True:
                finished = done.is_set()
                for event in journal.query(after_seq=cursor, limit=7):
                    seen.append(event.seq)
                    cursor = event.seq
                if finished and cursor == journal.last_seq:
                    return
        except BaseException as err:  # Reported by the test.
            errors.append(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    for i in range(total):
        journal.append(padded_event(i))
    done.set()
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert errors == []
    assert seen == list(range(1, total + 1))


def test_batch_mode_threads(open_journal) -> None:
    journal = open_journal(durability="batch", flush_interval=0.05)
    appended: list[AuditEvent] = []
    lock = threading.Lock()

    def write(k: int) -> None:
        for i in range(200):
            event = journal.append(make_event(i, metadata={"t": k, "i": i}))
            with lock:
                appended.append(event)

    threads = [threading.Thread(target=write, args=(k,), daemon=True) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    journal.close()
    assert sorted(e.seq for e in appended) == list(range(1, 801))
    reader = open_journal(readonly=True)
    events = list(reader.read())
    assert seqs(events) == list(range(1, 801))
    for k in range(4):
        assert [e.metadata["i"] for e in events if e.metadata["t"] == k] == list(
            range(200)
        )


def test_append_many_larger_than_a_frame(open_journal) -> None:
    journal = open_journal()
    # About 3 MiB of incompressible metadata: more than one 1 MiB frame.
    events = [make_event(i, metadata={"blob": pad(i) * 8}) for i in range(3000)]
    assert journal.append_many(events) == list(range(1, 3001))
    journal.close()
    reader = open_journal(readonly=True)
    stored = list(reader.read())
    assert seqs(stored) == list(range(1, 3001))
    assert stored[2999].metadata == {"blob": pad(2999) * 8}
    assert reader.verify().ok


def test_lock_timeout_names_holder(open_journal, journal_dir, tmp_path) -> None:
    open_journal().close()
    ready = tmp_path / "ready"
    script = (
        "import sys, time, pathlib\n"
        "from journal import Journal\n"
        "with Journal.open(sys.argv[1]) as j, j.lock():\n"
        "    pathlib.Path(sys.argv[2]).touch()\n"
        "    time.sleep(30)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(journal_dir), str(ready)]
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists()
        journal = open_journal(lock_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            journal.append(make_event(1))
        assert time.monotonic() - started >= 0.3
        assert info.value.waited >= 0.3
        assert info.value.holder is not None
        assert info.value.holder["pid"] == holder.pid
        assert str(holder.pid) in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder.
    assert journal.append(make_event(2)).seq == 1


def test_open_on_a_file_path(tmp_path) -> None:
    path = tmp_path / "plain-file"
    path.write_text("not a journal")
    with pytest.raises(JournalError):
        Journal.open(path)
    with pytest.raises(JournalError):
        Journal.open(path, readonly=True)


def test_reader_during_retention(open_journal) -> None:
    writer = open_journal(segment_max_bytes=SMALL_SEGMENT)
    for i in range(150):
        writer.append(padded_event(i))
    infos = writer.segments()
    assert len(infos) >= 5
    reader = open_journal(readonly=True)
    iterator = reader.read()
    assert next(iterator).seq == 1
    writer.enforce_retention(max_segments=1)
    oldest_left = infos[-1].first_seq
    resumed: list[int] = []
    try:
        resumed.extend(e.seq for e in iterator)
    except SegmentExpired as err:
        # The error points past every removed segment.
        assert err.next_seq == oldest_left
        resumed.extend(e.seq for e in reader.read(after_seq=err.next_seq - 1))
    assert resumed[-1] == 150
    tail = [s for s in resumed if s >= oldest_left]
    assert tail == list(range(oldest_left, 151))
    assert seqs(reader.read()) == list(range(oldest_left, 151))


def test_dictionary_segment_round_trip(open_journal, journal_dir) -> None:
    # A segment of many single-event frames rolls early, and the next segment
    # gets a trained zstd dictionary. The thresholds are internal, so the test
    # appends until the roll happens.
    writer = open_journal(durability="flush")
    count = 0
    while len(writer.segments()) < 2 and count < 6000:
        for _ in range(100):
            note = f"request {count} from host{count % 7} " + "path/segment/" * (
                count % 20
            )
            writer.append(make_event(count, metadata={"i": count, "note": note}))
            count += 1

    infos = writer.segments()
    assert len(infos) >= 2
    second = journal_dir / infos[1].name
    fd = os.open(second, os.O_RDONLY)
    try:
        header = read_header(fd, str(second), os.fstat(fd).st_size)
    finally:
        os.close(fd)
    assert len(header.dictionary) > 0
    writer.close()

    for index in idx_files(journal_dir):
        index.unlink()
    reader = open_journal(readonly=True)
    events = list(reader.read())
    assert seqs(events) == list(range(1, count + 1))
    assert [e.metadata["i"] for e in events] == list(range(count))
    tail_start = count - 50
    assert seqs(reader.query(actor="user1", after_seq=tail_start)) == [
        s for s in range(tail_start + 1, count + 1) if (s - 1) % 3 == 1
    ]
    assert reader.verify().ok


def test_follow_with_filter(open_journal) -> None:
    writer = open_journal()
    follower = open_journal(readonly=True)
    thread, found, errors = _follow_in_thread(follower, 5, after_seq=0, actor="bob")
    for i in range(30):
        writer.append(make_event(i, actor=["alice", "bob", "carol"][i % 3]))
    thread.join(timeout=10)
    assert errors == []
    assert seqs(found) == [2, 5, 8, 11, 14]
    assert {e.actor for e in found} == {"bob"}


def test_zoneinfo_time_stored_as_instant(open_journal) -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        new_york = zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    # 01:30 on 2024-11-03 happens twice in New York; fold=1 is the second, EST.
    first = datetime(2024, 11, 3, 1, 30, tzinfo=new_york)
    second = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=new_york)
    journal = open_journal()
    journal.append(make_event(1, time=first))
    journal.append(make_event(2, time=second))
    stored = list(journal.read())
    assert stored[0].time == datetime(2024, 11, 3, 5, 30, tzinfo=timezone.utc)
    assert stored[1].time == datetime(2024, 11, 3, 6, 30, tzinfo=timezone.utc)
    since = datetime(2024, 11, 3, 6, 0, tzinfo=timezone.utc)
    assert seqs(journal.query(since=since)) == [2]


def test_reader_filters_segment_sealed_later(tmp_path: Path) -> None:
    """A reader's loaded index of an active segment must not hide values added later."""
    directory = tmp_path / "journal"
    with Journal.open(directory, segment_max_bytes=4096) as writer:
        writer.append(AuditEvent(actor="alice", action="login"))
    # close() stored the index of the still active segment: actor list ["alice"].
    with Journal.open(directory, readonly=True) as reader:
        assert [e.seq for e in reader.read()] == [1]
        with Journal.open(directory, segment_max_bytes=4096) as writer:
            for _ in range(60):
                writer.append(
                    AuditEvent(actor="bob", action="login", metadata={"pad": "x" * 200})
                )
        infos = reader.segments()
        assert infos[0].sealed
        expected = [e.seq for e in reader.read() if e.actor == "bob"]
        assert len(expected) == 60
        assert [e.seq for e in reader.query(actor="bob")] == expected
        assert [e.seq for e in reader.recent(100, actor="bob")] == expected[::-1]
