"""Frames with a valid CRC and chain link whose events break the event model.

Such a frame can only come from someone writing the segment file around the
library. Reads must raise CorruptSegment (or return the event unchanged) and never
fail with another exception, and verify must report every case.
"""

from __future__ import annotations

import os
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from journal import AuditEvent, CorruptSegment, Journal, chain
from journal.segment import KIND_EVENTS, pack_frame, read_header, scan_frames

EVENT_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)
MISSING = object()


def _stored(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "action": "login",
        "actor": "mallory",
        "target": "t",
        "outcome": "success",
        "time": EVENT_TIME,
        "id": "fixed-id",
        "source": None,
        "metadata": {},
        "seq": None,
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not MISSING}


CASES = {
    "missing id": [_stored(id=MISSING)],
    "missing time": [_stored(time=MISSING)],
    "missing outcome": [_stored(outcome=MISSING)],
    "naive time": [_stored(time="2024-01-01T00:00:00")],
    "naive and aware times": [_stored(time="2024-01-01T00:00:00"), _stored()],
    "metadata is a list": [_stored(metadata=[1, 2])],
    "metadata has bytes": [_stored(metadata={"k": b"\x00\x01"})],
    "metadata has an int key": [_stored(metadata={1: "v"})],
}


def _append_crafted(directory: Path, events: list[dict[str, Any]]) -> None:
    """Write a frame containing *events* after the last frame of the active segment."""
    path = str(sorted(directory.glob("*.seg"))[-1])
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        header = read_header(fd, path, size)
        link, last_seq = header.prev_link, header.first_seq - 1
        for frame in scan_frames(fd, header.header_len, size, 0):
            link, last_seq = frame.link, frame.last_seq
        payload = struct.pack(">BI", 0xDD, len(events)) + b"".join(
            msgspec.msgpack.encode(e) for e in events
        )
        first = last_seq + 1
        link = chain.next_link(None, link, KIND_EVENTS, len(events), first, payload)
        frame = pack_frame(
            KIND_EVENTS, 0, len(events), first, len(payload), link, payload
        )
        os.pwrite(fd, frame, size)
    finally:
        os.close(fd)


def _outcome(call: Any) -> str:
    try:
        call()
    except CorruptSegment:
        return "corrupt"
    return "ok"


@pytest.mark.parametrize("keep_index", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_crafted_event_fails_cleanly(
    tmp_path: Path, case: str, keep_index: bool
) -> None:
    directory = tmp_path / "journal"
    with Journal.open(directory) as journal:
        for _ in range(3):
            journal.append(AuditEvent(actor="alice", action="login", time=EVENT_TIME))
    _append_crafted(directory, CASES[case])
    if not keep_index:
        for index in directory.glob("*.idx"):
            index.unlink()
    with Journal.open(directory, readonly=True) as journal:
        since = EVENT_TIME - timedelta(days=1)
        calls = {
            "read": lambda: list(journal.read()),
            "recent": lambda: journal.recent(10),
            "recent filtered": lambda: journal.recent(10, actor="mallory"),
            "query filtered": lambda: list(journal.query(actor="mallory")),
            "query since": lambda: list(journal.query(since=since)),
        }
        # Any exception other than CorruptSegment fails the test here.
        outcomes = {name: _outcome(call) for name, call in calls.items()}
        assert outcomes["read"] in ("ok", "corrupt")
        report = journal.verify()
    assert not report.ok, f"verify missed a crafted frame ({case}): {outcomes}"


def test_crafted_naive_time_never_returned(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal.open(directory) as journal:
        journal.append(AuditEvent(actor="alice", action="login", time=EVENT_TIME))
    _append_crafted(directory, CASES["naive time"])
    with (
        Journal.open(directory, readonly=True) as journal,
        pytest.raises(CorruptSegment) as caught,
    ):
        list(journal.read())
    assert caught.value.first_seq == 2
    assert "segment" in str(caught.value)
    assert str(caught.value).count(str(caught.value.path)) == 1


def test_frame_seq_contradicting_index(tmp_path: Path) -> None:
    """A frame whose header names a seq the index does not expect is damage."""
    directory = tmp_path / "journal"
    with Journal.open(directory) as journal:
        for n in range(5):
            journal.append(
                AuditEvent(actor=f"user{n + 1}", action="login", time=EVENT_TIME)
            )
    path = str(sorted(directory.glob("*.seg"))[0])
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        header = read_header(fd, path, size)
        frames = list(scan_frames(fd, header.header_len, size, 0))
        fourth = frames[3]
        assert fourth.first_seq == 4
        payload = fourth.stored
        tampered = pack_frame(
            KIND_EVENTS,
            fourth.flags,
            fourth.count,
            2,
            fourth.raw_len,
            fourth.link,
            payload,
        )
        os.pwrite(fd, tampered, fourth.offset)
    finally:
        os.close(fd)
    with Journal.open(directory, readonly=True) as journal:
        with pytest.raises(CorruptSegment) as caught:
            list(journal.read())
        assert (caught.value.first_seq, caught.value.last_seq) == (4, 4)
        after = [(e.seq, e.actor) for e in journal.read(after_seq=4)]
        assert after == [(5, "user5")]
        with pytest.raises(CorruptSegment):
            journal.recent(5)
        with pytest.raises(CorruptSegment):
            list(journal.query(actor="user4"))
