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
from journal.journal import Journal, SegmentInfo  # noqa: E402
from journal.retention import RetentionReport, SegmentDecision  # noqa: E402
from journal.verify import Problem, VerifyReport  # noqa: E402

logging.getLogger("journal").addHandler(logging.NullHandler())

__all__ = [
    "AuditEvent",
    "CorruptSegment",
    "ForkedJournal",
    "InvalidArgument",
    "InvalidEvent",
    "Journal",
    "JournalClosed",
    "JournalError",
    "LockTimeout",
    "PermissionProblem",
    "Problem",
    "RetentionReport",
    "SegmentDecision",
    "SegmentExpired",
    "SegmentInfo",
    "VerifyReport",
    "__version__",
]
