"""Event validation, unicode, size limits and the exception types."""

from __future__ import annotations

import math
import pickle
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from conftest import make_event

from journal import (
    AuditEvent,
    CorruptSegment,
    InvalidEvent,
    JournalError,
    LockTimeout,
    SegmentExpired,
)
from journal.event import DEFAULT_MAX_EVENT_BYTES, MAX_OUTCOME_CHARS, validate_event

# -- required and optional text fields -----------------------------------------------


@pytest.mark.parametrize("field", ["action", "actor", "outcome", "id"])
def test_required_text_rejects_non_str(field: str) -> None:
    event = make_event(**{field: 42})
    with pytest.raises(InvalidEvent, match=rf"{field} must be a str, got int") as info:
        validate_event(event)
    assert info.value.field == field


@pytest.mark.parametrize("field", ["action", "actor", "outcome", "id"])
def test_required_text_rejects_empty(field: str) -> None:
    event = make_event(**{field: ""})
    with pytest.raises(InvalidEvent, match=rf"{field} must not be empty") as info:
        validate_event(event)
    assert info.value.field == field


@pytest.mark.parametrize("field", ["action", "actor"])
def test_required_text_rejects_none(field: str) -> None:
    event = make_event(**{field: None})
    with pytest.raises(
        InvalidEvent, match=rf"{field} must be a str, got NoneType"
    ) as info:
        validate_event(event)
    assert info.value.field == field


@pytest.mark.parametrize("field", ["target", "source"])
def test_optional_text_rejects_non_str(field: str) -> None:
    event = make_event(**{field: b"bytes"})
    with pytest.raises(
        InvalidEvent, match=rf"{field} must be a str or None, got bytes"
    ) as info:
        validate_event(event)
    assert info.value.field == field


@pytest.mark.parametrize("field", ["target", "source"])
def test_optional_text_accepts_none(field: str) -> None:
    event = make_event(**{field: None})
    assert validate_event(event) is event


def test_outcome_length_limit() -> None:
    validate_event(make_event(outcome="x" * MAX_OUTCOME_CHARS))
    event = make_event(outcome="x" * (MAX_OUTCOME_CHARS + 1))
    with pytest.raises(
        InvalidEvent, match=rf"outcome is {MAX_OUTCOME_CHARS + 1} characters"
    ) as info:
        validate_event(event)
    assert info.value.field == "outcome"


def test_non_event_rejected() -> None:
    with pytest.raises(
        InvalidEvent, match=r"expected journal\.AuditEvent, got dict"
    ) as info:
        validate_event({"actor": "a", "action": "b"})
    assert info.value.field is None


def test_missing_required_field_is_type_error() -> None:
    # msgspec enforces the required keyword arguments at construction time.
    with pytest.raises(TypeError, match="actor"):
        AuditEvent(action="login")  # type: ignore[call-arg]


# -- time ----------------------------------------------------------------------------


def test_time_rejects_non_datetime() -> None:
    event = make_event(time="2024-05-01T12:00:00Z")
    with pytest.raises(InvalidEvent, match="time must be a datetime, got str") as info:
        validate_event(event)
    assert info.value.field == "time"


def test_time_rejects_naive_datetime() -> None:
    event = make_event(time=datetime(2024, 5, 1, 12, 0, 0))
    with pytest.raises(InvalidEvent, match=r"naive datetime; pass a timezone") as info:
        validate_event(event)
    assert info.value.field == "time"
    assert "2024-05-01T12:00:00" in str(info.value)


def test_time_accepts_any_fixed_offset() -> None:
    offset = timezone(timedelta(hours=-7, minutes=-30))
    event = make_event(time=datetime(2024, 5, 1, 4, 30, tzinfo=offset))
    assert validate_event(event) is event


def test_default_time_is_aware_utc_now() -> None:
    before = datetime.now(timezone.utc)
    event = AuditEvent(actor="a", action="b")
    after = datetime.now(timezone.utc)
    assert event.time.utcoffset() == timedelta(0)
    assert before <= event.time <= after


def test_default_ids_are_unique_and_sorted() -> None:
    ids = [AuditEvent(actor="a", action="b").id for _ in range(200)]
    assert len(set(ids)) == 200
    assert ids == sorted(ids)
    # UUIDv7: the version nibble is 7.
    assert all(i[14] == "7" for i in ids)


# -- metadata ------------------------------------------------------------------------


def test_metadata_must_be_dict() -> None:
    event = make_event(metadata=[("a", 1)])
    with pytest.raises(InvalidEvent, match="metadata must be a dict, got list") as info:
        validate_event(event)
    assert info.value.field == "metadata"


@pytest.mark.parametrize(
    ("metadata", "path", "pattern"),
    [
        ({"blob": b"\x00\x01"}, "metadata.blob", r"metadata\.blob is a bytes"),
        ({"pair": (1, 2)}, "metadata.pair", r"metadata\.pair is a tuple"),
        ({"tags": {"a", "b"}}, "metadata.tags", r"metadata\.tags is a set"),
        (
            {"when": datetime(2024, 1, 1, tzinfo=timezone.utc)},
            "metadata.when",
            r"metadata\.when is a datetime",
        ),
        ({"ratio": math.nan}, "metadata.ratio", r"metadata\.ratio is nan"),
        ({"ratio": math.inf}, "metadata.ratio", r"metadata\.ratio is inf"),
        ({"ratio": -math.inf}, "metadata.ratio", r"metadata\.ratio is -inf"),
        ({1: "one"}, "metadata", r"metadata has a int key 1; keys must be str"),
        ({"big": 1 << 64}, "metadata.big", r"metadata\.big is an integer outside"),
        (
            {"user": {"roles": ["admin", {"since": b"x"}]}},
            "metadata.user.roles[1].since",
            r"metadata\.user\.roles\[1\]\.since is a bytes",
        ),
        (
            {"user": {"groups": {("a",): 1}}},
            "metadata.user.groups",
            r"metadata\.user\.groups has a tuple key",
        ),
        (
            {"deep": [[[object()]]]},
            "metadata.deep[0][0][0]",
            r"metadata\.deep\[0\]\[0\]\[0\]",
        ),
    ],
)
def test_metadata_non_json_names_path(metadata: dict, path: str, pattern: str) -> None:
    event = make_event(metadata=metadata)
    with pytest.raises(InvalidEvent, match=pattern) as info:
        validate_event(event)
    assert info.value.field == path


def test_metadata_path_with_space_in_key() -> None:
    event = make_event(metadata={"user name": b"alice"})
    with pytest.raises(InvalidEvent, match=r"metadata\.user name is a bytes") as info:
        validate_event(event)
    assert info.value.field == "metadata.user name"


@pytest.mark.parametrize("value", [1 << 64, -(1 << 63) - 1, 1 << 200])
def test_append_int_out_of_range_names_path(open_journal, value: int) -> None:
    journal = open_journal()
    with pytest.raises(InvalidEvent, match="64-bit") as info:
        journal.append(make_event(metadata={"big": value}))
    assert info.value.field == "metadata.big"
    assert journal.last_seq == 0


def test_metadata_accepts_json_values() -> None:
    metadata = {
        "str": "x",
        "int": -(1 << 63),
        "uint": (1 << 64) - 1,
        "float": 1.5,
        "true": True,
        "none": None,
        "list": [1, "a", None, [2.5]],
        "nested": {"a": {"b": {"c": []}}},
        "empty": {},
    }
    assert validate_event(make_event(metadata=metadata)).metadata == metadata


def test_lone_surrogate_rejected(open_journal) -> None:
    journal = open_journal()
    with pytest.raises(InvalidEvent):
        journal.append(make_event(actor="bad\ud800actor"))
    assert journal.last_seq == 0


# -- seq -----------------------------------------------------------------------------


def test_seq_set_by_caller_rejected(open_journal) -> None:
    event = make_event(seq=5)
    with pytest.raises(
        InvalidEvent, match="seq is 5 but the journal assigns seq"
    ) as info:
        validate_event(event)
    assert info.value.field == "seq"
    journal = open_journal()
    with pytest.raises(InvalidEvent, match="journal assigns seq"):
        journal.append(event)
    assert journal.last_seq == 0


def test_append_same_event_twice(open_journal) -> None:
    journal = open_journal()
    event = journal.append(make_event())
    assert event.seq == 1
    with pytest.raises(InvalidEvent) as info:
        journal.append(event)
    assert info.value.field == "seq"
    copy = msgspec.structs.replace(event, seq=None)
    assert journal.append(copy).seq == 2


# -- validation through the journal ------------------------------------------------


def test_append_invalid_writes_nothing(open_journal, journal_dir) -> None:
    journal = open_journal()
    journal.append(make_event(1))
    with pytest.raises(InvalidEvent) as info:
        journal.append(make_event(2, metadata={"x": {1, 2}}))
    assert info.value.field == "metadata.x"
    assert journal.last_seq == 1
    assert [e.seq for e in journal.read()] == [1]


# -- unicode -------------------------------------------------------------------------

UNICODE_TEXTS = [
    "👩‍💻 deploy 🚀",
    "管理者",
    "사용자",
    "مستخدم",
    "משתמש",
    "e\u0301 combining",
    "zero\u200bwidth",
    "\u202eRTL override",
    "tab\tnew\nline",
]


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_unicode_round_trip(open_journal, journal_dir, text: str) -> None:
    event = AuditEvent(
        actor=text,
        action=f"act {text}",
        target=f"target {text}",
        outcome="成功",
        source=text,
        metadata={text: [text, {"k": text}]},
    )
    journal = open_journal()
    journal.append(event)
    journal.close()
    reopened = open_journal(readonly=True)
    (stored,) = list(reopened.read())
    assert stored.actor == text
    assert stored.action == f"act {text}"
    assert stored.target == f"target {text}"
    assert stored.outcome == "成功"
    assert stored.source == text
    assert stored.metadata == {text: [text, {"k": text}]}
    assert [e.seq for e in reopened.query(actor=text)] == [1]
    assert [e.seq for e in reopened.recent(actor=text)] == [1]


# -- size limit ----------------------------------------------------------------------


def _padded_event(size: int) -> AuditEvent:
    """Return an event whose msgpack encoding is exactly *size* bytes."""
    event = AuditEvent(
        actor="alice",
        action="blob.store",
        id="01890000-0000-7000-8000-000000000000",
        time=datetime(2024, 5, 1, tzinfo=timezone.utc),
        metadata={"pad": ""},
    )
    pad = size - len(msgspec.msgpack.encode(event))
    # The msgpack string header grows with the string; adjust until exact.
    for _ in range(10):
        event.metadata["pad"] = "x" * pad
        encoded = len(msgspec.msgpack.encode(event))
        if encoded == size:
            return event
        pad += size - encoded
    raise AssertionError(f"no padding gives exactly {size} bytes")


@pytest.mark.parametrize("limit", [4096, DEFAULT_MAX_EVENT_BYTES])
def test_max_event_bytes_boundary(open_journal, limit: int) -> None:
    options = {} if limit == DEFAULT_MAX_EVENT_BYTES else {"max_event_bytes": limit}
    journal = open_journal(**options)
    largest = _padded_event(limit)
    too_big = _padded_event(limit + 1)
    assert journal.append(largest).seq == 1
    with pytest.raises(
        InvalidEvent, match=rf"encoded size {limit + 1} bytes is over"
    ) as info:
        journal.append(too_big)
    assert info.value.field == "metadata"
    with pytest.raises(InvalidEvent, match="max_event_bytes"):
        journal.append_many([make_event(1), _padded_event(limit + 1)])
    assert journal.last_seq == 1
    (stored,) = list(journal.read())
    assert stored.metadata == largest.metadata


# -- exceptions ----------------------------------------------------------------------


def test_invalid_event_pickles() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(make_event(metadata={"a": {"b": b"x"}}))
    error = pickle.loads(pickle.dumps(info.value))
    assert type(error) is InvalidEvent
    assert error.field == "metadata.a.b"
    assert str(error) == str(info.value)
    assert isinstance(error, ValueError)
    assert isinstance(error, JournalError)


def test_corrupt_segment_pickles() -> None:
    original = CorruptSegment("bad frame", "/j/00000000000000000001.seg", 68, 3, 9)
    error = pickle.loads(pickle.dumps(original))
    assert type(error) is CorruptSegment
    assert str(error) == "bad frame"
    assert error.path == "/j/00000000000000000001.seg"
    assert error.offset == 68
    assert error.first_seq == 3
    assert error.last_seq == 9


def test_lock_timeout_pickles() -> None:
    holder = {"pid": 123, "host": "h", "argv": ["journal", "append"]}
    original = LockTimeout("timed out", "/j/journal.lock", holder, 2.5)
    error = pickle.loads(pickle.dumps(original))
    assert type(error) is LockTimeout
    assert str(error) == "timed out"
    assert error.path == "/j/journal.lock"
    assert error.holder == holder
    assert error.waited == 2.5
    assert isinstance(error, TimeoutError)


def test_segment_expired_pickles() -> None:
    original = SegmentExpired("removed", "/j/00000000000000000001.seg", 42)
    error = pickle.loads(pickle.dumps(original))
    assert type(error) is SegmentExpired
    assert str(error) == "removed"
    assert error.path == "/j/00000000000000000001.seg"
    assert error.next_seq == 42
