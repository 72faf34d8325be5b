"""Options, argument parsing and output formatting shared by the commands."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

from journal.chain import read_key_file
from journal.cli.app import EXIT_FAILURE, EXIT_TEMPFAIL, fail
from journal.errors import (
    CorruptSegment,
    InvalidArgument,
    JournalError,
    LockTimeout,
    PermissionProblem,
    SegmentExpired,
)
from journal.event import AuditEvent, format_time
from journal.journal import Journal
from journal.segment import SEGMENT_NAME_RE

F = TypeVar("F", bound=Callable[..., Any])

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str, option: str) -> datetime:
    """Parse RFC 3339 or a relative time before now (``2h``, ``7d``, ``30m``)."""
    match = _RELATIVE.match(value)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        try:
            return datetime.now(timezone.utc) - timedelta(seconds=seconds)
        except OverflowError:
            raise click.BadParameter(
                f"{value!r} reaches before the year 1; use a shorter span",
                param_hint=option,
            ) from None
    try:
        parsed = msgspec.json.decode(msgspec.json.encode(value.strip()), type=datetime)
    except msgspec.ValidationError:
        raise click.BadParameter(
            f"{value!r} is not an RFC 3339 time (2024-05-01T12:00:00Z) or a relative time "
            "(30m, 2h, 7d)",
            param_hint=option,
        ) from None
    if parsed.tzinfo is None:
        raise click.BadParameter(
            f"{value!r} has no timezone; add Z or an offset such as +02:00",
            param_hint=option,
        )
    return parsed


def parse_size(value: str, option: str) -> int:
    """Parse a byte size such as ``500M``, ``2G``, ``1048576``."""
    match = re.match(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", value, re.IGNORECASE)
    if not match:
        raise click.BadParameter(
            f"{value!r} is not a size; use bytes or a suffix: 500K, 200M, 2G",
            param_hint=option,
        )
    power: int = " kmgt".index(match.group(2).lower() or " ")
    multiplier: int = 1 << (10 * power)
    return int(match.group(1)) * multiplier


def key_option(func: F) -> F:
    """Add ``--key-file`` (default: the ``JOURNAL_KEY_FILE`` environment variable)."""
    return click.option(
        "--key-file",
        type=click.Path(dir_okay=False),
        envvar="JOURNAL_KEY_FILE",
        default=None,
        help="File holding the chain key (default: $JOURNAL_KEY_FILE).",
    )(func)


def load_key(key_file: str | None) -> bytes | None:
    """Read the key file named by ``--key-file``, if any."""
    if not key_file:
        return None
    try:
        return read_key_file(key_file)
    except InvalidArgument as err:
        fail(str(err))


def lock_timeout_option(func: F) -> F:
    """Add ``--lock-timeout SECONDS`` (default: wait for the write lock without limit)."""
    return click.option(
        "--lock-timeout",
        default=None,
        type=FiniteFloat(0, 1e9),
        metavar="SECONDS",
        help="Give up (exit 75) if the write lock is not free within SECONDS "
        "(default: wait as long as it takes, warning every few seconds).",
    )(func)


def filter_options(func: F) -> F:
    """Add ``--actor``, ``--action``, ``--target`` and ``--outcome`` (each repeatable)."""
    for name in reversed(("actor", "action", "target", "outcome")):
        func = click.option(
            f"--{name}",
            multiple=True,
            help=f"Only events with this {name} (repeat for any of several).",
        )(func)
    return func


def filters_from(**values: tuple[str, ...]) -> dict[str, list[str]]:
    """Turn repeated filter options into keyword arguments for the API."""
    return {k: list(v) for k, v in values.items() if v}


if TYPE_CHECKING:  # click 8.3 and later make ParamType generic
    _FloatParam = click.ParamType[float, Any]
else:
    _FloatParam = click.ParamType


class FiniteFloat(_FloatParam):
    """A float that is finite, at least *minimum* and at most *maximum*."""

    name = "number"

    def __init__(self, minimum: float = 0.0, maximum: float = 1e9) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            self.fail(
                f"{value!r} is not a number between {self.minimum:g} and "
                f"{self.maximum:g}",
                param,
                ctx,
            )
        return number


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """Yield a callback (done, total) that draws a progress bar on a terminal.

    The bar goes to stderr and only when stderr is a terminal, so pipes, cron
    and CI logs stay clean.
    """
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    state: dict[str, Any] = {}

    def advance(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
            state["bar"] = bar
        bar.update(done - bar.pos)

    try:
        yield advance
    finally:
        if "bar" in state:
            state["bar"].__exit__(None, None, None)


def is_journal_directory(directory: str) -> bool:
    """Return whether *directory* holds a journal (its lock file or a segment)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return os.path.exists(os.path.join(directory, "journal.lock"))
    return any(
        name in ("journal.lock", "retention.log") or SEGMENT_NAME_RE.match(name)
        for name in names
    )


def require_journal(directory: str) -> None:
    """Exit with a clear error unless *directory* is an existing journal."""
    if not os.path.isdir(directory):
        fail(
            f"{directory} is not a journal directory (it does not exist); create one "
            "with `journal append` or `journal import`"
        )
    if not is_journal_directory(directory):
        fail(
            f"{directory} is not a journal directory (it has no journal.lock and no "
            "segments); check the path"
        )


def open_existing(
    directory: str,
    *,
    key: bytes | None = None,
    readonly: bool = True,
    lock_timeout: float | None = None,
) -> Journal:
    """Open a journal that must already exist; exit with a clear error otherwise."""
    require_journal(directory)
    return Journal.open(
        directory, readonly=readonly, key=key, lock_timeout=lock_timeout
    )


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn journal errors into a one-line message and the documented exit code."""
    try:
        yield
    except LockTimeout as err:
        fail(str(err), EXIT_TEMPFAIL)
    except (CorruptSegment, SegmentExpired, PermissionProblem, InvalidArgument) as err:
        fail(str(err), EXIT_FAILURE)
    except JournalError as err:
        fail(str(err), EXIT_FAILURE)
    except BrokenPipeError:
        # Output piped into `head`: stop quietly like other Unix tools.
        sys.stderr.close()
        sys.exit(0)
    except OSError as err:
        fail(f"{err.filename or ''}: {err.strerror or err}".lstrip(": "), EXIT_FAILURE)


def _clip(text: str | None, width: int) -> str:
    if text is None:
        return "-"
    text = text.replace("\n", " ").replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


EVENT_COLUMNS = ["SEQ", "TIME (UTC)", "ACTOR", "ACTION", "TARGET", "OUTCOME"]


def event_row(event: AuditEvent) -> list[str]:
    """Return the table cells of one event, clipped so a row fits 100 columns."""
    return [
        str(event.seq),
        format_time(event.time)[:19].replace("T", " "),
        _clip(event.actor, 18),
        _clip(event.action, 20),
        _clip(event.target, 18),
        _clip(event.outcome, 8),
    ]
