"""Commands that write and read events: import, append, recent, query, tail, export."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

import click
import msgspec

from journal.cli.app import EXIT_FAILURE, EXIT_USAGE, cli, echo_json, echo_table, fail
from journal.cli.common import (
    EVENT_COLUMNS,
    FiniteFloat,
    event_row,
    filter_options,
    filters_from,
    handle_errors,
    key_option,
    load_key,
    lock_timeout_option,
    open_existing,
    parse_time,
    progress_bar,
)
from journal.errors import InvalidArgument, InvalidEvent, SegmentExpired
from journal.event import AuditEvent
from journal.journal import Journal

IMPORT_BATCH = 1000
#: Skipped records reported one per line before only the summary counts them.
MAX_SKIP_LINES = 20


def _print_events(events: list[AuditEvent], as_json: bool) -> None:
    if as_json:
        for event in events:
            echo_json(event.to_json_dict())
        return
    echo_table(EVENT_COLUMNS, [event_row(e) for e in events], right={0})


@cli.command(
    "import", short_help="Import Kubernetes, CloudTrail, auditd, syslog, JSON logs."
)
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.argument(
    "files", metavar="FILE...", nargs=-1, required=True, type=click.Path(dir_okay=False)
)
@click.option(
    "--format",
    "fmt",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "k8s", "cloudtrail", "auditd", "syslog", "jsonl"]),
    help="Input format; auto detects it per file.",
)
@click.option(
    "--year",
    type=int,
    default=None,
    help="Year for syslog lines that carry none (default: the current year).",
)
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="FIELD=PATH",
    help="For jsonl: take FIELD from the dotted PATH, e.g. --map actor=user.name.",
)
@click.option(
    "--strict", is_flag=True, help="Stop with exit 1 at the first malformed record."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as one JSON line."
)
@lock_timeout_option
@key_option
def import_command(
    directory: str,
    files: tuple[str, ...],
    fmt: str,
    year: int | None,
    mappings: tuple[str, ...],
    strict: bool,
    as_json: bool,
    lock_timeout: float | None,
    key_file: str | None,
) -> None:
    """Import audit logs (Kubernetes, CloudTrail, auditd, syslog, JSON lines).

    Each malformed record is reported on stderr with its file and line, counted and
    skipped. The journal directory is created if missing.

    \b
    Example:
      journal import ./audit /var/log/kubernetes/audit.log /var/log/auth.log

    \b
    Exit codes: 0 imported (malformed records skipped), 1 a file could not be read or
    its format detected, or --strict met a malformed record, 2 usage error, 75 the
    write lock was not free within --lock-timeout.
    """
    from journal.importers import ImportedRecord, UnknownFormat, iter_records

    mapping: dict[str, str] = {}
    for item in mappings:
        field, sep, path = item.partition("=")
        if not sep or not field or not path:
            fail(
                f"--map {item!r} must look like FIELD=PATH, e.g. actor=user.name",
                EXIT_USAGE,
            )
        mapping[field.strip()] = path.strip()
    # Check every input before the journal directory is created or written.
    for path in files:
        if not os.path.isfile(path):
            state = "is a directory" if os.path.isdir(path) else "does not exist"
            fail(f"cannot read {path}: it {state}; give log files to import")
        if not os.access(path, os.R_OK):
            fail(f"cannot read {path}: permission denied")
    counts: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    started = time.monotonic()

    def skip(where: str, reason: str, message: str) -> None:
        problems[reason] += 1
        shown = sum(problems.values())
        if shown <= MAX_SKIP_LINES:
            click.echo(f"journal: {where}: skipped ({reason}): {message}", err=True)
        elif shown == MAX_SKIP_LINES + 1:
            click.echo(
                "journal: more records skipped; the summary counts them by reason",
                err=True,
            )
        if strict:
            journal.append_many(batch)
            counts["imported"] += len(batch)
            fail(f"{where}: {message}; stopped because of --strict", EXIT_FAILURE)

    with (
        handle_errors(),
        Journal.open(
            directory, key=load_key(key_file), lock_timeout=lock_timeout
        ) as journal,
    ):
        batch: list[AuditEvent] = []
        show_progress = sys.stderr.isatty()
        for path in files:
            if os.path.getsize(path) == 0:
                # An empty (for example freshly rotated) log contains no records.
                continue
            try:
                try:
                    records = iter_records(
                        path, fmt, year=year, mapping=mapping or None
                    )
                except InvalidArgument as err:
                    fail(str(err), EXIT_USAGE)
                for record in records:
                    counts["read"] += 1
                    if show_progress and counts["read"] % 1000 == 0:
                        click.echo(
                            f"\rimporting {path}: {counts['read']} records",
                            err=True,
                            nl=False,
                        )
                    if not isinstance(record, ImportedRecord):
                        skip(
                            f"{record.path}:{record.line}",
                            record.reason,
                            record.message,
                        )
                        continue
                    try:
                        journal.check(record.event)
                    except InvalidEvent as err:
                        skip(f"{record.path}:{record.line}", "invalid-event", str(err))
                        continue
                    if record.warning:
                        warnings[f"{record.path}:{record.line}: {record.warning}"] += 1
                    batch.append(record.event)
                    if len(batch) >= IMPORT_BATCH:
                        journal.append_many(batch)
                        counts["imported"] += len(batch)
                        batch = []
                if show_progress:
                    click.echo("\r\033[K", err=True, nl=False)
            except UnknownFormat as err:
                fail(str(err), EXIT_FAILURE)
            except OSError as err:
                fail(f"cannot read {path}: {err.strerror or err}", EXIT_FAILURE)
            except InvalidEvent as err:
                fail(f"{path}: {err}", EXIT_FAILURE)
        if batch:
            journal.append_many(batch)
            counts["imported"] += len(batch)
        last_seq = journal.last_seq
    for shown, (warning, n) in enumerate(warnings.items()):
        if shown == 5:
            more = sum(warnings.values()) - sum(list(warnings.values())[:5])
            click.echo(f"journal: warning: {more} more records with warnings", err=True)
            break
        suffix = f" ({n} records)" if n > 1 else ""
        click.echo(f"journal: warning: {warning}{suffix}", err=True)
    summary: dict[str, Any] = {
        "files": len(files),
        "read": counts["read"],
        "imported": counts["imported"],
        "skipped": sum(problems.values()),
        "skipped_by_reason": dict(problems),
        "last_seq": last_seq,
        "seconds": round(time.monotonic() - started, 3),
    }
    if as_json:
        echo_json(summary)
    else:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(problems.items())) or "none"
        click.echo(
            f"read {summary['read']} records from {len(files)} file(s): imported "
            f"{summary['imported']}, skipped {summary['skipped']} ({reasons}); last seq "
            f"{last_seq}",
            err=True,
        )


def _meta_value(text: str) -> Any:
    """Return *text* parsed as JSON when that keeps it exactly, else the text itself.

    ``count=3`` stores the number 3, but ``version=1.10`` stays the string "1.10"
    and a 30-digit id stays a string, because as JSON they would change.
    """
    try:
        value = msgspec.json.decode(text)
        if msgspec.json.encode(value).decode() == text.strip() and (
            not isinstance(value, int) or -(1 << 63) <= value < (1 << 64)
        ):
            return value
    except (msgspec.DecodeError, msgspec.EncodeError):
        pass
    return text


@cli.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--actor", required=True, help="Who did it.")
@click.option("--action", required=True, help="What was done, e.g. user.create.")
@click.option("--target", default=None, help="What it was done to.")
@click.option(
    "--outcome",
    default="success",
    show_default=True,
    help="success, failure, denied or another short word.",
)
@click.option("--source", default=None, help="Client address or host.")
@click.option(
    "--meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metadata entry; VALUE is parsed as JSON when it is valid JSON.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stored event as JSON.")
@lock_timeout_option
@key_option
def append(
    directory: str,
    actor: str,
    action: str,
    target: str | None,
    outcome: str,
    source: str | None,
    meta: tuple[str, ...],
    as_json: bool,
    lock_timeout: float | None,
    key_file: str | None,
) -> None:
    """Append one event (durably) and print its seq.

    \b
    Example:
      journal append ./audit --actor alice --action user.create --target user/bob \\
          --meta ticket=OPS-12

    \b
    Exit codes: 0 stored, 1 invalid event or write failure, 2 usage error,
    75 the write lock was not free in time.
    """
    metadata: dict[str, Any] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--meta {item!r} must look like KEY=VALUE", EXIT_USAGE)
        metadata[key] = _meta_value(value)
    with (
        handle_errors(),
        Journal.open(
            directory, key=load_key(key_file), lock_timeout=lock_timeout
        ) as journal,
    ):
        event = journal.append(
            AuditEvent(
                actor=actor,
                action=action,
                target=target,
                outcome=outcome,
                source=source,
                metadata=metadata,
            )
        )
    if as_json:
        echo_json(event.to_json_dict())
    else:
        click.echo(event.seq)


@cli.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "-n",
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Number of events.",
)
@filter_options
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one event per line.")
def recent(
    directory: str,
    limit: int,
    actor: tuple[str, ...],
    action: tuple[str, ...],
    target: tuple[str, ...],
    outcome: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show the newest events, newest first.

    \b
    Example:
      journal recent ./audit -n 50 --actor alice --outcome denied

    \b
    Exit codes: 0 success, 1 not a journal or damaged data reached, 2 usage error.
    """
    filters = filters_from(actor=actor, action=action, target=target, outcome=outcome)
    with handle_errors(), open_existing(directory) as journal:
        events = journal.recent(limit, **filters)
        _print_events(events, as_json)


@cli.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--since",
    default=None,
    metavar="T",
    help="Events at or after T (RFC 3339, or relative: 30m, 2h, 7d).",
)
@click.option("--until", default=None, metavar="T", help="Events before T.")
@filter_options
@click.option(
    "--after-seq",
    default=None,
    type=click.IntRange(min=0),
    help=(
        "Only events with a seq above N (a cursor). Fails when retention removed "
        "events after N."
    ),
)
@click.option(
    "--limit", default=None, type=click.IntRange(min=0), help="At most N events."
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one event per line.")
def query(
    directory: str,
    since: str | None,
    until: str | None,
    actor: tuple[str, ...],
    action: tuple[str, ...],
    target: tuple[str, ...],
    outcome: tuple[str, ...],
    after_seq: int | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Find events by time range and fields, oldest first.

    \b
    Example:
      journal query ./audit --since 2h --actor alice --action login.failure

    \b
    Exit codes: 0 success, 1 not a journal or damaged data reached, 2 usage error.
    """
    filters = filters_from(actor=actor, action=action, target=target, outcome=outcome)
    since_t = parse_time(since, "--since") if since else None
    until_t = parse_time(until, "--until") if until else None
    with handle_errors(), open_existing(directory) as journal:
        events = journal.query(
            since=since_t, until=until_t, after_seq=after_seq, limit=limit, **filters
        )
        if as_json:
            for event in events:
                echo_json(event.to_json_dict())
        else:
            _print_events(list(events), False)


@cli.command(short_help="Show the last events; with -f, follow new ones.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "-n",
    "--lines",
    "count",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Number of recent events shown first.",
)
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new events as they arrive."
)
@click.option(
    "--interval",
    default=0.5,
    show_default=True,
    type=FiniteFloat(0.01, 3600),
    help="Seconds between checks for new events with --follow.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one event per line.")
def tail(
    directory: str, count: int, follow: bool, interval: float, as_json: bool
) -> None:
    """Show the last events oldest first; with -f, follow new ones like tail -f.

    \b
    Example:
      journal tail ./audit -f --json

    \b
    Exit codes: 0 success (or interrupted with Ctrl-C), 1 not a journal, 2 usage
    error.
    """
    with handle_errors(), open_existing(directory) as journal:
        events = list(reversed(journal.recent(count)))
        if not as_json:
            click.echo(_tail_line(EVENT_COLUMNS))
        for event in events:
            _emit(event, as_json)
        if not follow:
            return
        position = events[-1].seq if events else journal.last_seq
        try:
            while True:
                try:
                    for event in journal.follow(
                        after_seq=position, poll_interval=interval
                    ):
                        _emit(event, as_json)
                        sys.stdout.flush()
                        position = event.seq
                except SegmentExpired as err:
                    # Retention removed events before they were printed: print a
                    # warning and go on from the oldest event left.
                    click.echo(f"journal: warning: {err}", err=True)
                    position = (err.next_seq or 1) - 1
        except KeyboardInterrupt:
            return


#: Fixed column widths for `tail`, which prints rows as they arrive.
_TAIL_WIDTHS = (8, 19, 18, 20, 18, 8)


def _tail_line(cells: list[str]) -> str:
    parts = [cells[0].rjust(_TAIL_WIDTHS[0])]
    parts += [
        cell.ljust(width)
        for cell, width in zip(cells[1:], _TAIL_WIDTHS[1:], strict=True)
    ]
    return "  ".join(parts).rstrip()


def _emit(event: AuditEvent, as_json: bool) -> None:
    if as_json:
        echo_json(event.to_json_dict())
    else:
        click.echo(_tail_line(event_row(event)))


@cli.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--original",
    is_flag=True,
    help="Print each imported source record instead of the event.",
)
@click.option(
    "--after-seq",
    default=0,
    type=click.IntRange(min=0),
    help=(
        "Only events with a seq above N. Fails when retention removed events after N."
    ),
)
def export(directory: str, original: bool, after_seq: int) -> None:
    """Write every event as JSON Lines on stdout, oldest first.

    With --original, each line is the source record an event was imported from:
    the parsed JSON object, or the raw text line(s) as a JSON string.

    \b
    Example:
      journal export ./audit --original > records.jsonl

    \b
    Exit codes: 0 success, 1 not a journal or damaged data reached, 2 usage error.
    """
    missing = 0
    with handle_errors(), open_existing(directory) as journal:
        out = sys.stdout
        encoder = msgspec.json.Encoder()
        total = journal.last_seq
        with progress_bar("exporting events") as advance:
            for event in journal.read(after_seq=after_seq):
                if event.seq is not None and event.seq % 1000 == 0:
                    advance(event.seq - after_seq, max(total - after_seq, 1))
                if original:
                    if "original" not in event.metadata:
                        missing += 1
                        continue
                    record = event.metadata["original"]
                    out.write(encoder.encode(record).decode() + "\n")
                else:
                    out.write(encoder.encode(event.to_json_dict()).decode() + "\n")
        out.flush()
    if missing:
        click.echo(
            f"journal: {missing} events were not imported and have no original "
            "record; they were left out",
            err=True,
        )
