"""The audit event model and its validation."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, Protocol

import msgspec
import uuid_utils

from journal.errors import InvalidEvent

__all__ = ["AuditEvent", "DEFAULT_MAX_EVENT_BYTES", "new_event_id", "utc_now"]

#: Largest encoded event accepted by default (1 MiB).
DEFAULT_MAX_EVENT_BYTES = 1 << 20

#: Longest accepted ``outcome`` word, in characters.
MAX_OUTCOME_CHARS = 64


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def new_event_id() -> str:
    """Return a new UUIDv7 string; later ids sort after earlier ones."""
    return str(uuid_utils.uuid7())


#: A datetime that decoding rejects unless it carries a time zone. Appending
#: checks the same with a clearer message (see :func:`check_time`).
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class AuditEvent(msgspec.Struct, kw_only=True):
    """One audit record: who (``actor``) did what (``action``) to which ``target``.

    ``seq`` is ``None`` until the journal assigns it on append. Every other field
    is checked by :meth:`journal.Journal.append` before anything is written.
    """

    action: str
    actor: str
    target: str | None = None
    outcome: str = "success"
    time: AwareDatetime = msgspec.field(default_factory=utc_now)
    id: str = msgspec.field(default_factory=new_event_id)
    source: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    seq: int | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """Return the event as the JSON object the CLI prints (time in UTC)."""
        return {
            "seq": self.seq,
            "id": self.id,
            "time": format_time(self.time),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "source": self.source,
            "metadata": self.metadata,
        }


class EventFields(Protocol):
    """The fields that the index records and that filters compare."""

    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def time(self) -> datetime: ...


class EventSummary(msgspec.Struct, kw_only=True, gc=False):
    """A stored event decoded without building ``metadata``.

    Building the metadata dicts is most of the cost of decoding an event. Reads
    therefore filter on summaries and decode in full only the events they return.
    Every field is required, unlike in :class:`AuditEvent`, so that a stored
    event missing one is reported as damage instead of getting a default.
    """

    action: str
    actor: str
    target: str | None
    outcome: str
    time: AwareDatetime
    id: str
    source: str | None
    metadata: msgspec.Raw


def format_time(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 in UTC with a ``Z`` suffix."""
    text = value.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


_JSON_SCALARS = (str, int, float, bool, type(None))


def _check_required_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidEvent(
            f"invalid event: {name} must be a str, got {type(value).__name__} "
            f"{value!r:.60}",
            name,
        )
    if not value or value.isspace():
        raise InvalidEvent(f"invalid event: {name} must not be empty or blank", name)


def _check_optional_text(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidEvent(
            f"invalid event: {name} must be a str or None, got "
            f"{type(value).__name__} {value!r:.60}",
            name,
        )


def check_time(name: str, value: object) -> None:
    """Raise :class:`InvalidEvent` unless *value* is a timezone-aware datetime."""
    if not isinstance(value, datetime):
        raise InvalidEvent(
            f"invalid event: {name} must be a datetime, got {type(value).__name__} "
            f"{value!r:.60}",
            name,
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent(
            f"invalid event: {name} {value.isoformat()} is a naive datetime; pass a "
            "timezone, for example datetime.now(timezone.utc) or "
            "value.replace(tzinfo=timezone.utc)",
            name,
        )


def _find_non_json(value: object, path: str) -> tuple[str, str] | None:
    """Return the path and a description of the first value JSON cannot represent."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 64):
            return None
        return path, f"{path} is an integer outside the 64-bit range"
    if isinstance(value, float):
        if not math.isfinite(value):
            return path, f"{path} is {value!r}, which JSON cannot represent"
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_non_json(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, (
                    f"{path} has a {type(key).__name__} key {key!r:.40}; keys must be str"
                )
            found = _find_non_json(item, f"{path}.{key}")
            if found:
                return found
        return None
    return path, (
        f"{path} is a {type(value).__name__} ({value!r:.40}); only str, int, float, "
        "bool, None, list and dict are allowed"
    )


def _check_metadata(value: object) -> None:
    if not isinstance(value, dict):
        raise InvalidEvent(
            f"invalid event: metadata must be a dict, got {type(value).__name__}",
            "metadata",
        )
    if not value:
        return
    # Flat metadata of scalars is the common case: plain type checks are several
    # times cheaper than the round trip below.
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str:
            break
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and -(1 << 63) <= item < (1 << 64):
            continue
        if kind is float and math.isfinite(item):
            continue
        break
    else:
        return
    # A JSON round trip in C is the fast path. It changes any value that JSON
    # cannot represent (bytes, tuples, datetimes, NaN, non-str keys), so a
    # mismatch sends us to the slow walk that names the offending path.
    try:
        same = msgspec.json.decode(msgspec.json.encode(value)) == value
        if same:
            # JSON keeps integers of any size, MessagePack only 64-bit ones.
            msgspec.msgpack.encode(value)
    except (msgspec.EncodeError, TypeError, OverflowError, UnicodeEncodeError):
        same = False
    except RecursionError:
        raise InvalidEvent(
            "invalid event: metadata is nested too deeply to encode; flatten it",
            "metadata",
        ) from None
    if same:
        return
    try:
        found = _find_non_json(value, "metadata")
    except RecursionError:
        found = ("metadata", "metadata is nested too deeply to check; flatten it")
    if found is None:
        found = ("metadata", "metadata does not survive a JSON round trip unchanged")
    raise InvalidEvent(f"invalid event: {found[1]}", found[0])


def validate_event(event: object) -> AuditEvent:
    """Check every field of *event*; raise :class:`InvalidEvent` naming the first bad one."""
    # Fast path for the common valid event: plain type checks in one expression
    # cost about a third of the per-field checks below, which only run to name
    # the offending field.
    if type(event) is AuditEvent:
        target, source, when = event.target, event.source, event.time
        outcome = event.outcome
        if (
            type(event.action) is str
            and event.action
            and not event.action.isspace()
            and type(event.actor) is str
            and event.actor
            and not event.actor.isspace()
            and (target is None or type(target) is str)
            and type(outcome) is str
            and 0 < len(outcome) <= MAX_OUTCOME_CHARS
            and type(when) is datetime
            and when.tzinfo is not None
            and when.utcoffset() is not None
            and type(event.id) is str
            and event.id
            and (source is None or type(source) is str)
            and type(event.metadata) is dict
            and event.seq is None
        ):
            if event.metadata:
                _check_metadata(event.metadata)
            return event
    if not isinstance(event, AuditEvent):
        raise InvalidEvent(
            f"invalid event: expected journal.AuditEvent, got {type(event).__name__}"
        )
    _check_required_text("action", event.action)
    _check_required_text("actor", event.actor)
    _check_optional_text("target", event.target)
    _check_required_text("outcome", event.outcome)
    if len(event.outcome) > MAX_OUTCOME_CHARS:
        raise InvalidEvent(
            f"invalid event: outcome is {len(event.outcome)} characters; use a short "
            f"word of at most {MAX_OUTCOME_CHARS} such as success, failure or denied",
            "outcome",
        )
    check_time("time", event.time)
    _check_required_text("id", event.id)
    _check_optional_text("source", event.source)
    _check_metadata(event.metadata)
    if event.seq is not None:
        raise InvalidEvent(
            f"invalid event: seq is {event.seq!r} but the journal assigns seq on "
            "append; pass a new event, or msgspec.structs.replace(event, seq=None) "
            "to store a copy",
            "seq",
        )
    return event
