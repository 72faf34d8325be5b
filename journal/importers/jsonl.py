"""Import generic JSON lines: one JSON object per line, mapped to events by field paths.

Objects pretty-printed over several lines and a top-level JSON array of objects
are accepted too.

``mapping`` maps event fields to dotted paths into each object, for example
``{"actor": "user.name", "action": "event.type", "time": "ts"}`` (on the command
line, ``--map actor=user.name``). The fields are ``actor``, ``action``,
``target``, ``outcome``, ``time``, ``id`` and ``source``. A path segment that is a
decimal number indexes an array (``sourceIPs.0``), and a key that itself contains
dots (``"event.type"``) is matched before the path is split at its dots. A field
without a mapping is read from the top-level key of the same name. For ``time``
the keys ``time``, ``timestamp``, ``@timestamp`` and ``ts`` are tried in order.

Values:

- ``actor`` and ``action`` are required. A record without them yields an
  ``ImportProblem`` with reason ``missing-field`` that names the field and the
  ``--map`` option to set.
- Text fields take strings as they are and numbers as decimal text. An object or
  array yields an ``invalid-field`` problem. ``outcome`` maps ``true`` to
  ``success`` and ``false`` to ``failure``, and defaults to ``success``.
- ``time`` is an RFC 3339 string (without an offset it is taken as UTC) or a Unix
  epoch as a number or a string of digits. The epoch unit follows from the
  magnitude: seconds below 1e11, milliseconds below 1e14, microseconds below
  1e17, nanoseconds above. A record with no time field gets the import time,
  ``metadata["time_source"] = "import"`` and a warning. A time field that is
  mapped explicitly but absent yields a ``missing-field`` problem.
- ``id`` defaults to a new UUIDv7.

``metadata`` contains ``format`` (``jsonl``) and ``original``, the decoded object.

The same ``mapping`` also works for the ``k8s`` and ``cloudtrail`` formats. There
it overrides the built-in mapping for each field whose path exists in the record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import IO, Any

from journal.importers._common import (
    EPOCH_OR_RFC3339,
    MISSING,
    ImportProblem,
    Item,
    describe_json,
    finish_event,
    invalid_time,
    iter_json_objects,
    lookup,
    mapped_text,
    parse_epoch_or_rfc3339,
)

__all__ = ["DEFAULT_TIME_KEYS", "FORMAT", "iter_events", "map_object"]

FORMAT = "jsonl"

#: Keys tried, in order, for ``time`` when the mapping does not name one.
DEFAULT_TIME_KEYS = ("time", "timestamp", "@timestamp", "ts")

_TEXT_FIELDS = ("actor", "action", "target", "outcome", "id", "source")
_REQUIRED_FIELDS = ("actor", "action")


def _no_container(record: Mapping[str, Any]) -> str | None:
    return None


def iter_events(
    path: str, stream: IO[bytes], *, mapping: Mapping[str, str] | None = None
) -> Iterator[Item]:
    """Yield one record or problem per JSON object in *stream*."""
    for item in iter_json_objects(path, stream, _no_container):
        if isinstance(item, ImportProblem):
            yield item
        else:
            line, record, position = item
            yield map_object(path, line, position, record, mapping or {})


def _missing(path: str, line: int, position: str, field: str, dotted: str) -> Item:
    return ImportProblem(
        path=path,
        line=line,
        reason="missing-field",
        message=(
            f"the object at {position} has no {field} at {dotted!r}; pass "
            f"--map {field}=<dotted.path> to name the field that holds it"
        ),
    )


def _invalid(
    path: str, line: int, position: str, *, field: str, dotted: str, value: object
) -> Item:
    return ImportProblem(
        path=path,
        line=line,
        reason="invalid-field",
        message=(
            f"{field} at {position} ({dotted!r}) is {describe_json(value)}, "
            f"expected a string or number; pass --map {field}=<dotted.path> to "
            "select a value inside it"
        ),
    )


def map_object(
    path: str,
    line: int,
    position: str,
    record: dict[str, Any],
    mapping: Mapping[str, str],
) -> Item:
    """Map one decoded JSON object to a record, or to a problem."""
    fields: dict[str, Any] = {}
    for field in _TEXT_FIELDS:
        dotted = mapping.get(field, field)
        value = lookup(record, dotted)
        if value is MISSING or value is None or value == "":
            if field in _REQUIRED_FIELDS:
                return _missing(path, line, position, field, dotted)
            continue
        if field == "outcome" and isinstance(value, bool):
            fields["outcome"] = "success" if value else "failure"
            continue
        text = mapped_text(value)
        if text is None:
            return _invalid(
                path, line, position, field=field, dotted=dotted, value=value
            )
        fields[field] = text

    metadata: dict[str, Any] = {"format": FORMAT, "original": record}
    warning = None
    time_keys = (mapping["time"],) if "time" in mapping else DEFAULT_TIME_KEYS
    time: datetime | None = None
    for dotted in time_keys:
        value = lookup(record, dotted)
        if value is MISSING or value is None:
            continue
        time = parse_epoch_or_rfc3339(value)
        if time is None:
            return invalid_time(
                path,
                line,
                position,
                field=dotted,
                value=value,
                expected=EPOCH_OR_RFC3339,
            )
        break
    if time is None:
        if "time" in mapping:
            return _missing(path, line, position, "time", mapping["time"])
        time = datetime.now(timezone.utc)
        metadata["time_source"] = "import"
        keys = ", ".join(DEFAULT_TIME_KEYS)
        warning = (
            f"the object at {position} has none of the time keys {keys}; used the "
            "import time. Pass --map time=<dotted.path> to name the time field"
        )
    fields["time"] = time
    fields["metadata"] = metadata
    return finish_event(path, line, position, fields, warning)
