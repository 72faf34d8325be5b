"""Shared types and helpers of the importers: input streams, lines, JSON values, times.

Every importer reads the file as bytes, so a line ends only at ``\\n``. Python's
``str.splitlines`` would also split at characters such as U+001D, which auditd's
enriched format uses as a field separator.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import IO, Any, cast

import msgspec

from journal.errors import InvalidEvent, JournalError
from journal.event import AuditEvent, validate_event

__all__ = [
    "EPOCH_OR_RFC3339",
    "EVENT_FIELDS",
    "MAX_DOCUMENT_BYTES",
    "MISSING",
    "ImportProblem",
    "ImportedRecord",
    "Item",
    "UnknownFormat",
    "apply_mapping",
    "decode_text",
    "describe_json",
    "expand_container",
    "finish_event",
    "invalid_time",
    "iter_json_objects",
    "iter_json_values",
    "iter_lines",
    "lookup",
    "mapped_text",
    "not_an_object",
    "open_input",
    "parse_epoch_or_rfc3339",
    "parse_time",
]

#: Largest record, or whole JSON document such as a CloudTrail ``{"Records": [...]}``
#: file, that an importer reads into memory (512 MiB after decompression).
MAX_DOCUMENT_BYTES = 512 << 20

#: Event fields that a ``mapping`` may set, in the order they are documented.
EVENT_FIELDS = ("actor", "action", "target", "outcome", "time", "id", "source")

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1 << 20


class UnknownFormat(JournalError, ValueError):
    """The format of an input file could not be detected from its content."""


class ImportedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One event parsed from an input file.

    ``line`` is the 1-based line where the record starts. For records taken from a
    JSON array, such as CloudTrail's ``{"Records": [...]}`` or a Kubernetes
    ``EventList``, it is instead the 1-based index of the record in that array.
    ``warning`` is a note for the user when the importer had to guess, for example
    when a CloudTrail record has no ``eventTime`` and another time field was used.
    """

    event: AuditEvent
    path: str
    line: int
    warning: str | None = None


class ImportProblem(msgspec.Struct, frozen=True, kw_only=True):
    """A record that could not be imported, after which the importer continues.

    ``reason`` is a short key such as ``not-json``, ``no-timestamp``, ``comment``,
    ``not-an-object``, ``missing-field``, ``invalid-time``, ``invalid-field``,
    ``invalid-event``, ``too-large``, ``truncated`` or ``bad-gzip``.
    """

    path: str
    line: int
    reason: str
    message: str


#: Union of the item types that every importer yields.
Item = ImportedRecord | ImportProblem


class _Missing:
    """Type of :data:`MISSING`, the result of :func:`lookup` for an absent path."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def open_input(path: str) -> IO[bytes]:
    """Open *path* for binary reading, decompressing it if it starts like gzip.

    Raises :class:`OSError` when the file cannot be opened.
    """
    with open(path, "rb") as probe:
        magic = probe.read(len(_GZIP_MAGIC))
    if magic == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def iter_lines(
    stream: IO[bytes], path: str
) -> Iterator[tuple[int, bytes] | ImportProblem]:
    """Yield ``(line number, line)`` pairs without ``\\n``, ``\\r\\n`` or a leading BOM.

    A line longer than :data:`MAX_DOCUMENT_BYTES` is skipped without being held in
    memory and yields an :class:`ImportProblem` with reason ``too-large``. A
    damaged gzip stream ends the iteration with reason ``bad-gzip``.
    """
    max_bytes = MAX_DOCUMENT_BYTES
    number = 0
    try:
        while True:
            line = stream.readline(max_bytes + 1)
            if not line:
                return
            number += 1
            if number == 1 and line.startswith(_UTF8_BOM):
                line = line[len(_UTF8_BOM) :]
            if len(line) > max_bytes and not line.endswith(b"\n"):
                _skip_to_newline(stream)
                yield ImportProblem(
                    path=path,
                    line=number,
                    reason="too-large",
                    message=(
                        f"line {number} is longer than {max_bytes} bytes and was "
                        "skipped; split the file into smaller records"
                    ),
                )
                continue
            if line.endswith(b"\n"):
                line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
            yield number, line
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        yield ImportProblem(
            path=path,
            line=number + 1,
            reason="bad-gzip",
            message=f"the gzip stream is damaged after line {number}: {exc}",
        )


def _skip_to_newline(stream: IO[bytes]) -> None:
    while True:
        chunk = stream.readline(_READ_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return


def decode_text(raw: bytes) -> tuple[str, str | None]:
    """Decode one line as UTF-8 and return it with a warning if bytes were replaced."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return (
            text,
            "the line is not valid UTF-8; invalid bytes were replaced by U+FFFD",
        )


# A JSON string cannot contain a raw line break, so strings never span lines and
# the nesting depth of a line can be counted after removing its strings.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_decoder = msgspec.json.Decoder()


def _nesting_change(line: bytes) -> int:
    bare = _JSON_STRING.sub(b"", line)
    opened = bare.count(b"{") + bare.count(b"[")
    closed = bare.count(b"}") + bare.count(b"]")
    return opened - closed


def _not_json(path: str, line: int, error: Exception, text: bytes) -> ImportProblem:
    preview = text[:60].decode("utf-8", errors="replace")
    return ImportProblem(
        path=path,
        line=line,
        reason="not-json",
        message=f"line {line} is not valid JSON ({error}): {preview!r}",
    )


def iter_json_values(
    path: str, lines: Iterator[tuple[int, bytes] | ImportProblem]
) -> Iterator[tuple[int, Any] | ImportProblem]:
    """Yield ``(first line, decoded value)`` for each JSON value in a JSON-lines stream.

    One value per line is the fast path. A line that starts a value but leaves
    brackets open starts a multi-line value, such as a pretty-printed object, which
    ends on the line where the nesting depth returns to zero. A value may not
    exceed :data:`MAX_DOCUMENT_BYTES`. Blank lines are skipped, and lines starting
    with ``#`` yield a ``comment`` problem.
    """
    pending: list[bytes] = []
    pending_bytes = 0
    start = 0
    depth = 0
    oversized = False
    for item in lines:
        if isinstance(item, ImportProblem):
            yield item
            continue
        number, raw = item
        if not pending and not oversized:
            stripped = raw.strip()
            if not stripped:
                continue
            if stripped.startswith(b"#"):
                yield ImportProblem(
                    path=path,
                    line=number,
                    reason="comment",
                    message=f"line {number} is a comment, not a JSON record",
                )
                continue
            try:
                yield number, _decoder.decode(stripped)
                continue
            except msgspec.DecodeError as exc:
                depth = _nesting_change(stripped)
                if stripped[:1] not in (b"{", b"[") or depth <= 0:
                    yield _not_json(path, number, exc, stripped)
                    continue
            pending = [raw]
            pending_bytes = len(raw)
            start = number
            continue
        # Inside a multi-line value. A line that starts at column 0 with "{" and
        # decodes on its own is a new record, so the pending value was truncated.
        if raw.startswith(b"{"):
            try:
                value = _decoder.decode(raw.strip())
            except msgspec.DecodeError:
                pass
            else:
                yield _truncated(path, start, number)
                pending, pending_bytes, depth, oversized = [], 0, 0, False
                yield number, value
                continue
        depth += _nesting_change(raw)
        if not oversized:
            pending.append(raw)
            pending_bytes += len(raw) + 1
            if pending_bytes > MAX_DOCUMENT_BYTES:
                oversized = True
                pending = []
        if depth > 0:
            continue
        if oversized:
            yield ImportProblem(
                path=path,
                line=start,
                reason="too-large",
                message=(
                    f"the JSON value starting at line {start} is larger than "
                    f"{MAX_DOCUMENT_BYTES} bytes and was skipped; split the file"
                ),
            )
        else:
            document = b"\n".join(pending)
            try:
                yield start, _decoder.decode(document)
            except msgspec.DecodeError as exc:
                yield _not_json(path, start, exc, document.lstrip())
        pending, pending_bytes, depth, oversized = [], 0, 0, False
    if pending or oversized:
        yield _truncated(path, start, None)


def _truncated(path: str, start: int, next_line: int | None) -> ImportProblem:
    where = "the end of the file" if next_line is None else f"line {next_line}"
    return ImportProblem(
        path=path,
        line=start,
        reason="truncated",
        message=(
            f"the JSON value starting at line {start} is incomplete: its brackets "
            f"are still open at {where}"
        ),
    )


def expand_container(
    path: str, line: int, items: object, key: str
) -> Iterator[tuple[int, dict[str, Any], str] | ImportProblem]:
    """Yield ``(index + 1, record, position)`` for each object in the array *items*.

    *key* names the array in messages (``Records``, ``items`` or ``[]`` for a
    top-level array). *line* is where the enclosing document starts. *position*
    names the record in messages, for example ``Records[3] of the document at
    line 1``.
    """
    if not isinstance(items, list):
        yield ImportProblem(
            path=path,
            line=line,
            reason="invalid-field",
            message=(
                f"{key} in the document at line {line} is {describe_json(items)}, "
                "expected a JSON array of records"
            ),
        )
        return
    for index, record in enumerate(items):
        position = f"{key}[{index}] of the document at line {line}"
        if isinstance(record, dict):
            yield index + 1, record, position
        else:
            yield ImportProblem(
                path=path,
                line=index + 1,
                reason="not-an-object",
                message=(
                    f"{position} is {describe_json(record)}, expected a JSON object"
                ),
            )


_JSON_TYPE_NAMES = (
    (bool, "a JSON boolean"),
    (int, "a JSON integer"),
    (float, "a JSON number"),
    (str, "a JSON string"),
    (list, "a JSON array"),
    (dict, "a JSON object"),
)


def describe_json(value: object) -> str:
    """Return the JSON type of a decoded value with an article: ``a JSON array``."""
    if value is None:
        return "JSON null"
    for python_type, name in _JSON_TYPE_NAMES:
        if isinstance(value, python_type):
            return name
    return f"a {type(value).__name__}"


def not_an_object(path: str, line: int, value: object) -> ImportProblem:
    """Return the problem for a JSON value that is not an object."""
    return ImportProblem(
        path=path,
        line=line,
        reason="not-an-object",
        message=(
            f"line {line} holds {describe_json(value)} {_preview(value)}, "
            "expected a JSON object"
        ),
    )


def parse_time(value: object) -> datetime | None:
    """Parse an RFC 3339 string into an aware datetime, or return ``None``.

    A time without an offset is taken as UTC. A space may replace the ``T``.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """Return the value at dotted *path* in *record*, or :data:`MISSING`.

    A key that itself contains dots (``"event.type"`` in flattened documents) is
    tried before splitting. A path segment that is a decimal number indexes a
    list, so ``sourceIPs.0`` is the first source IP.
    """
    if path in record:
        return record[path]
    head, dot, rest = path.partition(".")
    while dot:
        if head in record:
            child = record[head]
            if isinstance(child, dict):
                found = lookup(child, rest)
                if found is not MISSING:
                    return found
            elif isinstance(child, list):
                found = _lookup_list(child, rest)
                if found is not MISSING:
                    return found
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return MISSING


def _lookup_list(items: list[Any], path: str) -> Any:
    index_text, dot, rest = path.partition(".")
    if not index_text.isdigit() or int(index_text) >= len(items):
        return MISSING
    item = items[int(index_text)]
    if not dot:
        return item
    if isinstance(item, dict):
        return lookup(item, rest)
    if isinstance(item, list):
        return _lookup_list(item, rest)
    return MISSING


def mapped_text(value: object) -> str | None:
    """Convert a mapped JSON scalar to the text stored in an event field.

    Returns ``None`` for objects, arrays, ``null`` and empty strings, which no
    text field can hold. Booleans become ``true`` and ``false``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)):
        return str(value)
    return None


# Epoch numbers: below 1e11 are seconds (1e11 s is the year 5138), below 1e14
# milliseconds, below 1e17 microseconds, and anything larger nanoseconds.
_EPOCH_DIVISORS = ((1e11, 1), (1e14, 1e3), (1e17, 1e6))
_EPOCH_TEXT = re.compile(r"^-?\d+(?:\.\d+)?$")

#: Description of the values that :func:`parse_epoch_or_rfc3339` accepts, for messages.
EPOCH_OR_RFC3339 = "an RFC 3339 time or a Unix epoch number"


def parse_epoch_or_rfc3339(value: object) -> datetime | None:
    """Parse an RFC 3339 string or a Unix epoch number (as a number or digit string).

    The epoch unit follows from the magnitude: seconds below 1e11, milliseconds
    below 1e14, microseconds below 1e17 and nanoseconds above.
    """
    if isinstance(value, str) and _EPOCH_TEXT.match(value):
        value = float(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        divisor = 1e9
        for limit, unit in _EPOCH_DIVISORS:
            if abs(value) < limit:
                divisor = unit
                break
        try:
            return datetime.fromtimestamp(value / divisor, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_time(value)


def apply_mapping(
    fields: dict[str, Any],
    record: Mapping[str, Any],
    mapping: Mapping[str, str],
    *,
    path: str,
    line: int,
    position: str,
) -> ImportProblem | None:
    """Override *fields* with the values that *mapping* selects from *record*.

    A path that is absent from the record, or is ``null``, leaves the field as
    it is. A value that is present but unusable returns an ``invalid-field`` or
    ``invalid-time`` problem.
    """
    for field, dotted in mapping.items():
        value = lookup(record, dotted)
        if value is MISSING or value is None:
            continue
        if field == "time":
            parsed = parse_epoch_or_rfc3339(value)
            if parsed is None:
                return invalid_time(
                    path,
                    line,
                    position,
                    field=dotted,
                    value=value,
                    expected=EPOCH_OR_RFC3339,
                )
            fields["time"] = parsed
            continue
        text = mapped_text(value)
        if text is None:
            return ImportProblem(
                path=path,
                line=line,
                reason="invalid-field",
                message=(
                    f"{field} maps to {dotted}, which holds {describe_json(value)} "
                    f"{_preview(value)} at {position}; map {field} to a path that "
                    "holds a string or number"
                ),
            )
        fields[field] = text
    return None


def invalid_time(
    path: str,
    line: int,
    position: str,
    *,
    field: str,
    value: object,
    expected: str = "an RFC 3339 time",
) -> ImportProblem:
    """Return the problem for a time value that cannot be parsed."""
    return ImportProblem(
        path=path,
        line=line,
        reason="invalid-time",
        message=f"{field} at {position} is {_preview(value)}, expected {expected}",
    )


def _preview(value: object) -> str:
    try:
        text = msgspec.json.encode(value).decode("utf-8", errors="replace")
    except (msgspec.EncodeError, TypeError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def finish_event(
    path: str,
    line: int,
    position: str,
    fields: dict[str, Any],
    warning: str | None = None,
) -> Item:
    """Build and validate the event, and return it as a record or a problem."""
    try:
        event = validate_event(AuditEvent(**fields))
    except InvalidEvent as exc:
        return ImportProblem(
            path=path, line=line, reason="invalid-event", message=f"{position}: {exc}"
        )
    return ImportedRecord(event=event, path=path, line=line, warning=warning)


def iter_json_objects(
    path: str,
    stream: IO[bytes],
    container_key: Callable[[dict[str, Any]], str | None],
) -> Iterator[tuple[int, dict[str, Any], str] | ImportProblem]:
    """Yield ``(line, object, position)`` for each JSON record in *stream*.

    A top-level JSON array, or an object for which *container_key* returns the name
    of its record array (``Records``, ``items``), is expanded into its elements,
    numbered from 1 by their index in the array. *position* names the record in
    messages: ``line 7`` or ``Records[2] of the document at line 1``.
    """
    for item in iter_json_values(path, iter_lines(stream, path)):
        if isinstance(item, ImportProblem):
            yield item
            continue
        line, value = item
        if isinstance(value, list):
            yield from expand_container(path, line, value, "[]")
        elif not isinstance(value, dict):
            yield not_an_object(path, line, value)
        else:
            key = container_key(value)
            if key is None:
                yield line, value, f"line {line}"
            else:
                yield from expand_container(path, line, value[key], key)
