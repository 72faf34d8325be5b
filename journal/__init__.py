"""journal: an append-only, tamper-evident audit journal on local disk."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from journal.errors import (
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
from journal.event import AuditEvent
from journal.journal import Journal, SegmentInfo
from journal.retention import RetentionReport, SegmentDecision
from journal.verify import Problem, VerifyReport

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
