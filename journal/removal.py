"""The record of segments removed by retention, kept in ``retention.log``.

Each line is one JSON object describing a removed segment: its seq and time
range and the chain links at both ends. ``verify`` uses it to tell removal by
retention (the oldest segments, each recorded) from deletion by someone else.
"""

from __future__ import annotations

import os

import msgspec

from journal.segment import write_all

REMOVAL_LOG = "retention.log"


class RemovedSegment(msgspec.Struct, kw_only=True):
    """One segment deleted by retention."""

    name: str
    first_seq: int
    last_seq: int
    events: int
    bytes: int
    min_time: str | None
    max_time: str | None
    prev_link: str
    last_link: str
    removed_at: str
    reason: str


_decoder = msgspec.json.Decoder(RemovedSegment)
_encoder = msgspec.json.Encoder()


class RemovalLog:
    """Read and append the retention record of one journal directory."""

    def __init__(self, directory: str, file_mode: int) -> None:
        self.path = os.path.join(directory, REMOVAL_LOG)
        self.file_mode = file_mode
        self._stamp: tuple[int, int] | None = None
        self._records: list[RemovedSegment] = []

    def records(self) -> list[RemovedSegment]:
        """Return every record, oldest first; lines that fail to decode are skipped."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._records = None, []
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return self._records
        records = []
        with open(self.path, "rb") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(_decoder.decode(line))
                except msgspec.DecodeError:
                    continue
        self._stamp, self._records = stamp, records
        return records

    def removed_names(self) -> set[str]:
        """Return the file names of every removed segment."""
        return {r.name for r in self.records()}

    def find(self, name: str) -> RemovedSegment | None:
        """Return the record of segment *name*, if retention removed it."""
        for record in self.records():
            if record.name == name:
                return record
        return None

    def append(self, records: list[RemovedSegment]) -> None:
        """Append *records* and flush them to stable storage before any file goes."""
        if not records:
            return
        data = b"".join(_encoder.encode(r) + b"\n" for r in records)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, self.file_mode)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._stamp = None
