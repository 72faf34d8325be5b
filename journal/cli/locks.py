"""The ``journal locks`` and ``journal debug-run`` commands: who holds the lock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from journal.cli.app import EXIT_FAILURE, cli, echo_json, fail
from journal.cli.common import FiniteFloat
from journal.debugrun import find_journal_dir, run
from journal.errors import JournalError
from journal.lock import (
    LOCK_FILE,
    describe_command,
    format_command_line,
    format_rfc3339,
    probe,
)

# Shell conventions for a command that cannot be run.
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


@cli.command("locks")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on one line."
)
def locks_command(directory: str, as_json: bool) -> None:
    """Show who holds the write lock of journal DIR.

    Prints "free", or the holder's pid, host, command line and thread, since
    when (RFC 3339, UTC) and for how long it has held the lock, and whether that
    process still runs. A holder record left by a process that died without
    releasing the lock is reported as stale; the next writer overwrites it.

    \b
    Example:
      journal locks ./audit
      journal locks ./audit --json

    \b
    Exit codes:
      0  the lock state was printed (free, held or stale)
      1  DIR is not a journal directory (missing, or no journal.lock in it),
         or its lock file cannot be read
      2  usage error
    """
    if not Path(directory).is_dir():
        fail(f"{directory} is not a journal directory: it does not exist")
    if not (Path(directory) / LOCK_FILE).exists():
        fail(
            f"{directory} is not a journal directory: it has no {LOCK_FILE} "
            f"(a journal creates it when it first takes the write lock)"
        )
    try:
        info = probe(directory)
    except FileNotFoundError:
        fail(f"{directory} is not a journal directory: its {LOCK_FILE} was removed")
    except (JournalError, OSError) as error:
        fail(str(error), EXIT_FAILURE)
    holder = info["holder"]
    info["since"] = format_rfc3339(holder["acquired_at"]) if holder else None
    if as_json:
        echo_json(info)
        return
    for line in _describe_lock(info):
        click.echo(line)


def _describe_lock(info: dict[str, Any]) -> list[str]:
    """Return the human-readable report of a probe() result."""
    holder: dict[str, Any] | None = info["holder"]
    path = info["path"]
    held = info["state"] == "held"
    if holder is None:
        lines = [f"{path}: {info['state']}"]
        if held:
            lines.append("holder: unknown (no readable holder record)")
        if info["detail"]:
            lines.append(f"note: {info['detail']}")
        return lines

    who = (
        f"pid {holder['pid']} on {holder['host']} "
        f"({describe_command(holder['argv'] or [holder['program']])})"
    )
    since = format_rfc3339(holder["acquired_at"])
    ago = time.time() - holder["acquired_at"]
    if held and info["held_for"] is not None:
        return [
            f"{path}: held",
            f"holder:   pid {holder['pid']} on host {holder['host']} (running)",
            f"command:  {format_command_line(holder['argv'] or [holder['program']])}",
            f"thread:   {holder['thread_name']} (thread id {holder['thread_id']})",
            f"purpose:  {holder['purpose'] or 'unknown'}",
            f"since:    {since} ({info['held_for']:.1f} s)",
        ]

    lines = [f"{path}: {info['state']}"]
    if held:
        lines.append(
            "holder: unknown (the process holding the lock has not written a "
            "holder record: it is about to, or it is not a journal writer)"
        )
    if info["stale"]:
        fate = "no longer runs" if not info["alive"] else "runs but no longer holds it"
        lines.append(
            f"stale holder record: {who} acquired the lock at {since} "
            f"({ago:.1f} s ago) and never released it; that process {fate}. "
            f"The record is harmless and the next writer replaces it."
        )
    elif holder["released_at"] is not None:
        released = format_rfc3339(holder["released_at"])
        lines.append(f"last holder: {who}, released at {released}")
    return lines


@cli.command(
    "debug-run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--timeout-seconds",
    required=True,
    type=FiniteFloat(0.001, 1e9),
    metavar="SECONDS",
    help="Kill the command's process group after SECONDS (exit code 124).",
)
@click.option(
    "--journal",
    "journal_dir",
    default=None,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Journal directory whose write lock to watch "
    "(default: found in CMD when it is a journal command).",
)
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=FiniteFloat(0.001, 1e9),
    metavar="SECONDS",
    help="Seconds between checks of the write lock; longer holds are reported.",
)
@click.option(
    "--grace",
    default=2.0,
    show_default=True,
    type=FiniteFloat(0, 1e9),
    metavar="SECONDS",
    help="Seconds between SIGTERM and SIGKILL at the timeout.",
)
@click.argument("cmd", metavar="-- CMD [ARG...]", nargs=-1, type=click.UNPROCESSED)
def debug_run_command(
    timeout_seconds: float,
    journal_dir: str | None,
    interval: float,
    grace: float,
    cmd: tuple[str, ...],
) -> None:
    """Run CMD under a timeout, naming lock holders.

    CMD's output passes through live. While CMD runs, the journal's write lock
    is checked every --interval seconds, and any hold longer than that is
    reported on stderr: holder pid, command line, how long it has held the lock
    and how long CMD has waited. At the timeout, CMD's process group gets
    SIGTERM, then SIGKILL after --grace seconds, and the output CMD wrote so far
    is printed on stderr with a contention summary.

    \b
    Example:
      journal debug-run --timeout-seconds 30 -- \\
          journal retention --db-path ./tmp/db --days 1 --dry-run

    \b
    Exit codes:
      N    CMD's exit code (128+N when signal N killed it)
      124  CMD ran past --timeout-seconds and was killed
      126  CMD was found but is not executable
      127  CMD was not found
      2    usage error (missing --timeout-seconds or CMD)
    """
    if not cmd:
        raise click.UsageError("missing the command to run: give -- CMD [ARG...]")
    command = list(cmd)
    if journal_dir is None:
        journal_dir = find_journal_dir(command)
    if journal_dir is None:
        click.echo(
            "journal debug-run: no journal directory to watch: CMD is not a journal "
            "command with one; give --journal DIR to report lock holders",
            err=True,
        )
    else:
        click.echo(
            f"journal debug-run: watching the write lock in {journal_dir}", err=True
        )
    try:
        code = run(
            command,
            timeout=timeout_seconds,
            journal_dir=journal_dir,
            interval=interval,
            grace=grace,
        )
    except FileNotFoundError:
        fail(f"command not found: {command[0]}", EXIT_NOT_FOUND)
    except PermissionError:
        fail(f"command is not executable: {command[0]}", EXIT_NOT_EXECUTABLE)
    raise SystemExit(code)
