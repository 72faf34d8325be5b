"""Parse audit logs of other systems into :class:`~journal.event.AuditEvent` objects.

Supported formats, one module each:

- ``k8s``: Kubernetes API server audit events (:mod:`journal.importers.k8s`).
- ``cloudtrail``: AWS CloudTrail records (:mod:`journal.importers.cloudtrail`).
- ``auditd``: raw Linux audit logs (:mod:`journal.importers.auditd`).
- ``syslog``: syslog text such as ``/var/log/auth.log``
  (:mod:`journal.importers.syslog`).
- ``jsonl``: any JSON lines, mapped by field paths (:mod:`journal.importers.jsonl`).

:func:`iter_records` streams one file and yields an :class:`ImportedRecord` per
event and an :class:`ImportProblem` per record that could not be imported, then
continues. Deciding whether a problem is fatal is the caller's business. Every
event has passed :func:`journal.event.validate_event`, keeps the source record
in ``metadata["original"]`` and names its format in ``metadata["format"]``.
Files compressed with gzip are detected by their magic bytes and read
transparently. docs/IMPORT.md describes the mapping of every format.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from journal.errors import InvalidArgument
from journal.importers import auditd, cloudtrail, jsonl, k8s, syslog
from journal.importers._common import (
    EVENT_FIELDS,
    MAX_DOCUMENT_BYTES,
    ImportedRecord,
    ImportProblem,
    UnknownFormat,
    iter_json_values,
    open_input,
)

__all__ = [
    "FORMATS",
    "MAX_DOCUMENT_BYTES",
    "ImportProblem",
    "ImportedRecord",
    "UnknownFormat",
    "detect_format",
    "iter_records",
]

#: Format names accepted by :func:`iter_records`, besides ``"auto"``.
FORMATS = ("k8s", "cloudtrail", "auditd", "syslog", "jsonl")

_JSON_FORMATS = ("k8s", "cloudtrail", "jsonl")

#: Bytes read from the start of a file (after decompression) to detect its format.
DETECT_BYTES = 1 << 20

# Lines after blank and comment lines that detection inspects for a text format.
_DETECT_LINES = 20
_UTF8_BOM = b"\xef\xbb\xbf"
_AUDITD_PREFIX = re.compile(r"^(?:node=\S+ )?type=[A-Za-z0-9_\[\]]+ msg=")
_RECORDS_KEY = re.compile(rb'"Records"\s*:\s*\[')


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the format of the file at *path*, judged from its first megabyte.

    JSON content is classified by its first record: a Kubernetes audit ``Event``
    or ``EventList`` is ``k8s``, a CloudTrail document or record is
    ``cloudtrail``, and any other JSON object is ``jsonl``. Text lines are
    ``auditd`` when they start with ``type=... msg=`` and ``syslog`` when they
    start with a syslog timestamp. Blank lines and lines starting with ``#`` are
    skipped.

    Raises :class:`OSError` when the file cannot be read and
    :class:`UnknownFormat` when no format fits.
    """
    path_text = os.fspath(path)
    try:
        with open_input(path_text) as stream:
            head = stream.read(DETECT_BYTES)
    except (EOFError, zlib.error) as exc:
        raise UnknownFormat(
            f"cannot detect the format of {path_text}: it looks like gzip but cannot "
            f"be decompressed ({exc}); repair the file or decompress it first"
        ) from exc
    complete = len(head) < DETECT_BYTES
    lines = head.removeprefix(_UTF8_BOM).split(b"\n")
    # The last line may be cut off: it may start a record, but it is not decoded.
    cut_off = [] if complete else [lines.pop()]
    numbered = [(number, line.rstrip(b"\r")) for number, line in enumerate(lines, 1)]
    meaningful = [
        line.strip()
        for line in [line for _, line in numbered] + cut_off
        if line.strip() and not line.strip().startswith(b"#")
    ]
    if not meaningful:
        raise UnknownFormat(
            f"cannot detect the format of {path_text}: it has no records, only blank "
            "or comment lines; pass --format to import it anyway"
        )
    if meaningful[0][:1] in (b"{", b"["):
        found = _detect_json(path_text, numbered, head, complete)
        if found is not None:
            return found
    else:
        for line in meaningful[:_DETECT_LINES]:
            text = line.decode("utf-8", errors="replace")
            if _AUDITD_PREFIX.match(text):
                return auditd.FORMAT
            if syslog.looks_like_syslog(text):
                return syslog.FORMAT
    preview = meaningful[0][:60].decode("utf-8", errors="replace")
    raise UnknownFormat(
        f"cannot detect the format of {path_text}: the first record {preview!r} is "
        f"none of {', '.join(FORMATS)}; pass --format to choose one"
    )


def _detect_json(
    path: str, numbered: list[tuple[int, bytes]], head: bytes, complete: bool
) -> str | None:
    for item in iter_json_values(path, iter(numbered)):
        if isinstance(item, ImportProblem):
            continue
        return _classify_json(item[1])
    if complete:
        return None
    # The first value is larger than the detection window: judge by its keys.
    if _RECORDS_KEY.search(head):
        return cloudtrail.FORMAT
    if b'"auditID"' in head and b'"verb"' in head:
        return k8s.FORMAT
    if b'"eventSource"' in head and b'"eventName"' in head:
        return cloudtrail.FORMAT
    return jsonl.FORMAT


def _classify_json(value: Any) -> str:
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, dict)), {})
    if not isinstance(value, dict):
        return jsonl.FORMAT
    if k8s.is_k8s_record(value):
        return k8s.FORMAT
    if cloudtrail.is_cloudtrail_record(value):
        return cloudtrail.FORMAT
    return jsonl.FORMAT


def _check_mapping(mapping: Mapping[str, str] | None) -> dict[str, str]:
    if not mapping:
        return {}
    checked: dict[str, str] = {}
    for field, dotted in mapping.items():
        if field not in EVENT_FIELDS:
            raise InvalidArgument(
                f"invalid mapping field {field!r}; valid fields are "
                f"{', '.join(EVENT_FIELDS)}"
            )
        if not isinstance(dotted, str) or not dotted:
            raise InvalidArgument(
                f"invalid mapping for {field}: {dotted!r}; expected a dotted path "
                "such as user.name"
            )
        checked[field] = dotted
    return checked


def iter_records(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    year: int | None = None,
    mapping: Mapping[str, str] | None = None,
) -> Iterator[ImportedRecord | ImportProblem]:
    """Stream the events of one file as records and problems.

    *fmt* is one of :data:`FORMATS`, or ``"auto"`` to call :func:`detect_format`.
    *year* is the year of syslog lines whose timestamps have none (default: the
    current UTC year). *mapping* maps event fields to dotted paths for the JSON
    formats (see :mod:`journal.importers.jsonl`).

    Argument and file errors are raised by this call, before iteration starts:
    :class:`~journal.errors.InvalidArgument` for an unknown *fmt* or an invalid
    *mapping*, or a *mapping* given for a text format, :class:`OSError` when the
    file cannot be opened, and :class:`UnknownFormat` when ``"auto"`` cannot
    detect the format.
    """
    path_text = os.fspath(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise InvalidArgument(
            f"invalid format {fmt!r}; expected auto or one of {', '.join(FORMATS)}"
        )
    checked = _check_mapping(mapping)
    if fmt == "auto":
        fmt = detect_format(path_text)
    else:
        open_input(path_text).close()
    if checked and fmt not in _JSON_FORMATS:
        raise InvalidArgument(
            f"a field mapping applies only to the JSON formats "
            f"({', '.join(_JSON_FORMATS)}), but {path_text} is {fmt}; import it "
            "without --map"
        )
    return _iterate(path_text, fmt, year, checked)


def _iterate(
    path: str, fmt: str, year: int | None, mapping: dict[str, str]
) -> Iterator[ImportedRecord | ImportProblem]:
    with open_input(path) as stream:
        if fmt == syslog.FORMAT:
            yield from syslog.iter_events(path, stream, year=year)
        elif fmt == auditd.FORMAT:
            yield from auditd.iter_events(path, stream)
        elif fmt == k8s.FORMAT:
            yield from k8s.iter_events(path, stream, mapping=mapping)
        elif fmt == cloudtrail.FORMAT:
            yield from cloudtrail.iter_events(path, stream, mapping=mapping)
        else:
            yield from jsonl.iter_events(path, stream, mapping=mapping)
