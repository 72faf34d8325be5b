"""Shared fixtures and helpers for the journal test suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from journal import AuditEvent, Journal

#: Real audit logs used by test_real_logs.py; tests skip when the folder is absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: A fixed instant for event times, so that time-range tests are reproducible.
BASE_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def make_event(i: int = 0, **fields: Any) -> AuditEvent:
    """Build a valid event; *i* varies the defaults, *fields* override them."""
    values: dict[str, Any] = {
        "actor": f"user{i % 3}",
        "action": "record.update",
        "target": f"record/{i}",
        "metadata": {"i": i},
    }
    values.update(fields)
    return AuditEvent(**values)


def list_fds_under(directory: str | os.PathLike[str]) -> list[str]:
    """Return the paths under *directory* that this process has open."""
    prefix = os.path.realpath(directory)
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(prefix + os.sep):
            found.append(target)
    return sorted(found)


class FakeClock:
    """A settable clock for ``Journal.open(clock=...)``; starts at :data:`BASE_TIME`."""

    def __init__(self, start: datetime = BASE_TIME) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """A path for a journal directory that does not exist yet."""
    return tmp_path / "journal"


@pytest.fixture
def open_journal(journal_dir: Path) -> Iterator[Callable[..., Journal]]:
    """Open journals (in *journal_dir* by default) and close them all at teardown."""
    opened: list[Journal] = []

    def opener(path: str | os.PathLike[str] | None = None, **options: Any) -> Journal:
        journal = Journal.open(journal_dir if path is None else path, **options)
        opened.append(journal)
        return journal

    yield opener
    for journal in reversed(opened):
        try:
            journal.close()
        except Exception:  # A test may have broken it on purpose.
            pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real audit logs; skip the test when it is absent."""
    if not (SHARED_DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"real log data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stress",
        action="store_true",
        default=False,
        help="run the long fault-injection campaigns marked `stress`",
    )
