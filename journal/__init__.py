"""journal: an append-only, tamper-evident audit journal on local disk."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from journal.errors import (  # noqa: E402
    CorruptSegment,
    ForkedJournal,
    InvalidArgument,
    InvalidEvent,
    JournalClosed,
    JournalError,
    LockTimeout,
    PermissionProblem,
    SegmentExpired,
)
from journal.event import AuditEvent  # noqa: E402

logging.getLogger("journal").addHandler(logging.NullHandler())

__all__ = [
    "AuditEvent",
    "CorruptSegment",
    "ForkedJournal",
    "InvalidArgument",
    "InvalidEvent",
    "JournalClosed",
    "JournalError",
    "LockTimeout",
    "PermissionProblem",
    "SegmentExpired",
    "__version__",
]
