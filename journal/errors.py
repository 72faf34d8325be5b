"""The exception tree: one root, one subclass per decision a caller must make."""

from __future__ import annotations

import os
import stat
from typing import Any


class JournalError(Exception):
    """Root of every error the journal raises on purpose."""


class InvalidEvent(JournalError, ValueError):
    """An event failed validation; nothing was written.

    :ivar field: the name of the offending field (``metadata.user.id`` for a
        nested metadata value), or ``None`` when the event as a whole is invalid.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.field))


class InvalidArgument(JournalError, ValueError):
    """An option or query argument is invalid (a naive datetime, an unknown mode)."""


class CorruptSegment(JournalError):
    """A segment contains bytes that fail their checksum or cannot be decoded.

    :ivar path: the segment file.
    :ivar offset: byte offset of the damaged frame or header.
    :ivar first_seq: first seq the damage affects, when known.
    :ivar last_seq: last seq the damage affects, when known.
    :ivar reason: what is wrong, without the path and the advice of the message.
    """

    def __init__(
        self,
        message: str,
        path: str,
        offset: int,
        first_seq: int | None = None,
        last_seq: int | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.reason = message if reason is None else reason

    def __reduce__(self) -> tuple[Any, ...]:
        args = (str(self), self.path, self.offset, self.first_seq, self.last_seq)
        return (type(self), args, {"reason": self.reason})


class SegmentExpired(JournalError):
    """A segment was removed by retention while a reader was iterating over it.

    :ivar path: the removed segment file.
    :ivar next_seq: the first seq still present after the removed range.
    """

    def __init__(self, message: str, path: str, next_seq: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.next_seq = next_seq

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path, self.next_seq))


class LockTimeout(JournalError, TimeoutError):
    """The write lock could not be acquired within the timeout.

    :ivar path: the lock file.
    :ivar holder: the holder record read when the wait ended (a dict), or ``None``.
    :ivar waited: seconds spent waiting.
    """

    def __init__(
        self,
        message: str,
        path: str,
        holder: dict[str, Any] | None,
        waited: float,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder
        self.waited = waited

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.path, self.holder, self.waited))


class JournalClosed(JournalError):
    """The journal was used after ``close()``."""


class ForkedJournal(JournalError):
    """The journal was opened in a parent process and used after ``os.fork()``."""


class PermissionProblem(JournalError, PermissionError):
    """A journal file or directory cannot be read or written by this user."""


def permission_message(path: str, action: str) -> str:
    """Describe a permission failure on *path*: its owner, its mode and who we are."""
    try:
        st = os.stat(path)
    except OSError:
        parent = os.path.dirname(path)
        try:
            st = os.stat(parent)
            path = parent
        except OSError:
            return f"cannot {action} {path}: permission denied"
    try:
        import pwd

        owner = pwd.getpwuid(st.st_uid).pw_name
    except (KeyError, ImportError):
        owner = str(st.st_uid)
    return (
        f"cannot {action} {path}: owned by {owner} with mode {stat.filemode(st.st_mode)} "
        f"({st.st_mode & 0o777:o}) while running as uid {os.geteuid()}; run as the owner "
        "or grant access"
    )
