"""Commands that look after a journal: segments, inspect, stats, verify,
checkpoint and retention."""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from typing import Any

import click
import msgspec

from journal import codec
from journal.cli.app import (
    EXIT_FAILURE,
    EXIT_USAGE,
    cli,
    echo_json,
    echo_table,
    fail,
    log_level_chosen,
)
from journal.cli.common import (
    FiniteFloat,
    handle_errors,
    key_option,
    load_key,
    lock_timeout_option,
    open_existing,
    parse_size,
    progress_bar,
    require_journal,
)
from journal.errors import CorruptSegment
from journal.journal import Journal
from journal.segment import (
    FLAG_DICT,
    FLAG_ZSTD,
    KIND_EVENTS,
    KIND_SEAL,
    DamagedRange,
    decode_seal,
    read_header,
    scan_frames,
)
from journal.store import decode_frame_events

log = logging.getLogger("journal")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _time_range(first: str | None, last: str | None) -> str:
    """Render two RFC 3339 times compactly: one date when both share it."""
    if first is None or last is None:
        return "-"
    start, end = first[:16].replace("T", " "), last[:16].replace("T", " ")
    if start[:10] == end[:10]:
        return f"{start} to {end[11:]}"
    return f"{start[:10]} to {end[:10]}"


@cli.command(short_help="List segments: seqs, times, events, size, state.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--json", "as_json", is_flag=True, help="JSON Lines, one segment per line."
)
def segments(directory: str, as_json: bool) -> None:
    """List segments: seq range, event times, events, size, compression, state.

    Each file is named by the seq of its first event.

    \b
    Example:
      journal segments ./audit

    \b
    Exit codes: 0 success, 1 not a journal, 2 usage error.
    """
    with handle_errors(), open_existing(directory) as journal:
        infos = journal.segments()
    if as_json:
        for info in infos:
            echo_json(msgspec.to_builtins(info))
        return
    rows = [
        [
            info.name,
            str(info.first_seq),
            str(info.last_seq),
            _time_range(info.min_time, info.max_time),
            str(info.events),
            _human_bytes(info.bytes),
            f"{info.ratio:.1f}",
            ("sealed" if info.sealed else "active")
            + ("!" if info.damaged_blocks else ""),
        ]
        for info in infos
    ]
    headers = [
        "FILE",
        "FIRST",
        "LAST",
        "EVENT TIMES (UTC)",
        "EVENTS",
        "SIZE",
        "RATIO",
        "STATE",
    ]
    echo_table(headers, rows, right={1, 2, 4, 5, 6})


@cli.command(short_help="Show a segment file's header and frames.")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--frames", "show_frames", is_flag=True, help="List every frame.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON Lines: the header, then one line per frame with --frames.",
)
def inspect(path: str, show_frames: bool, as_json: bool) -> None:
    """Show a segment file's header and frames; damaged frames are listed, not hidden.

    \b
    Example:
      journal inspect ./audit/00000000000000000001.seg --frames

    \b
    Exit codes: 0 every frame is intact, 1 a frame or the header is damaged,
    2 usage error (for example a missing file).
    """
    damaged = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        try:
            header = read_header(fd, path, size)
        except CorruptSegment as err:
            if as_json:
                echo_json(
                    {
                        "type": "header",
                        "file": path,
                        "status": "damaged",
                        "error": str(err),
                    }
                )
            else:
                click.echo(f"header: DAMAGED: {err}")
            sys.exit(EXIT_FAILURE)
        head = {
            "type": "header",
            "file": path,
            "format_version": header.version,
            "first_seq": header.first_seq,
            "created_ns": header.created_ns,
            "keyed": header.keyed,
            "prev_link": header.prev_link.hex(),
            "dictionary_bytes": len(header.dictionary),
            "header_bytes": header.header_len,
            "file_bytes": size,
        }
        decompressor = codec.Decompressor(header.dictionary)
        rows: list[dict[str, Any]] = []
        events = frames = 0
        for item in scan_frames(fd, header.header_len, size, header.first_seq - 1):
            if isinstance(item, DamagedRange):
                damaged += 1
                rows.append(
                    {
                        "type": "frame",
                        "offset": item.offset,
                        "length": item.end - item.offset,
                        "kind": "damaged",
                        "checksum": "bad",
                        "events": None,
                        "first_seq": None,
                        "last_seq": None,
                        "note": item.reason,
                    }
                )
                continue
            frames += 1
            row: dict[str, Any] = {
                "type": "frame",
                "offset": item.offset,
                "length": item.end - item.offset,
                "kind": "events" if item.kind == KIND_EVENTS else "seal",
                "checksum": "ok",
                "events": item.count,
                "first_seq": item.first_seq,
                "last_seq": item.last_seq,
                "compression": ("zstd+dict" if item.flags & FLAG_DICT else "zstd")
                if item.flags & FLAG_ZSTD
                else "none",
                "raw_bytes": item.raw_len,
                "note": "",
            }
            try:
                if item.kind == KIND_SEAL:
                    seal = decode_seal(item, path)
                    row["last_seq"] = seal.last_seq
                    row["first_seq"] = None
                    row["note"] = f"sealed ({seal.reason})"
                else:
                    decode_frame_events(item, decompressor, path)
                    events += item.count
            except CorruptSegment as err:
                damaged += 1
                row["checksum"] = "ok"
                row["note"] = f"cannot decode: {err}"
            rows.append(row)
    finally:
        os.close(fd)
    head["frames"] = frames
    head["events"] = events
    head["damaged"] = damaged
    if as_json:
        echo_json(head)
        if show_frames:
            for row in rows:
                echo_json(row)
    else:
        for key, value in head.items():
            if key != "type":
                click.echo(f"{key + ':':<18}{value}")
        if show_frames:
            click.echo()
            table = [
                [
                    str(r["offset"]),
                    str(r["length"]),
                    r["kind"],
                    r["checksum"],
                    "-" if r["events"] is None else str(r["events"]),
                    "-" if r["first_seq"] is None else str(r["first_seq"]),
                    "-" if r["last_seq"] is None else str(r["last_seq"]),
                    r["note"][:40],
                ]
                for r in rows
            ]
            echo_table(
                [
                    "OFFSET",
                    "LENGTH",
                    "KIND",
                    "CHECKSUM",
                    "EVENTS",
                    "FIRST",
                    "LAST",
                    "NOTE",
                ],
                table,
                right={0, 1, 4, 5, 6},
            )
        elif damaged:
            click.echo("damaged frames found; run with --frames to list them")
    if damaged:
        sys.exit(EXIT_FAILURE)


@cli.command(short_help="Show totals, sizes, time range and index health.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object on one line.")
def stats(directory: str, as_json: bool) -> None:
    """Show totals, sizes, compression, oldest and newest event, index health.

    \b
    Example:
      journal stats ./audit --json

    \b
    Exit codes: 0 success, 1 not a journal, 2 usage error.
    """
    with handle_errors(), open_existing(directory) as journal:
        data = journal.stats()
    if as_json:
        echo_json(data)
        return
    lock = data.pop("lock", {})
    for key, value in data.items():
        if key in ("bytes", "raw_bytes"):
            value = f"{value} ({_human_bytes(value)})"
        click.echo(f"{key + ':':<22}{'-' if value is None else value}")
    health = (
        "ok"
        if not data["damaged_blocks"]
        else f"{data['damaged_blocks']} damaged blocks"
    )
    click.echo(f"{'index health:':<22}{health}")
    holder = lock.get("holder") if lock else None
    click.echo(f"{'lock holder:':<22}{holder['pid'] if holder else 'none recorded'}")


@cli.command(short_help="Check checksums, seqs and the hash chain.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@key_option
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A chain head saved by `journal checkpoint`.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON Lines: one line per problem, then a summary line.",
)
def verify(
    directory: str, key_file: str | None, checkpoint_file: str | None, as_json: bool
) -> None:
    """Read every segment and check checksums, seqs and the hash chain.

    Reports each problem with its kind (modified, inserted, deleted, reordered,
    truncated, segment missing, checksum failure), segment, offset and seq.

    \b
    Example:
      journal checkpoint ./audit > head.json      # store it elsewhere
      journal verify ./audit --checkpoint head.json

    \b
    Exit codes: 0 clean, 1 any problem found (or the journal cannot be read),
    2 usage error.
    """
    checkpoint = None
    if checkpoint_file:
        try:
            with open(checkpoint_file, "rb") as fh:
                checkpoint = msgspec.json.decode(fh.read())
        except msgspec.DecodeError as err:
            fail(
                f"checkpoint file {checkpoint_file} is not JSON ({err}); use the output of "
                "`journal checkpoint`",
                EXIT_USAGE,
            )
        if not isinstance(checkpoint, dict):
            fail(
                f"checkpoint file {checkpoint_file} must hold one JSON object",
                EXIT_USAGE,
            )
    with (
        handle_errors(),
        open_existing(directory, key=load_key(key_file)) as journal,
        progress_bar("verifying segments") as advance,
    ):
        report = journal.verify(checkpoint=checkpoint, progress=advance)
    if as_json:
        for problem in report.problems:
            echo_json({"type": "problem", **msgspec.to_builtins(problem)})
        summary = msgspec.to_builtins(report)
        summary.pop("problems")
        echo_json({"type": "summary", **summary, "problem_count": len(report.problems)})
    else:
        for problem in report.problems:
            where = problem.segment or "-"
            offset = "-" if problem.offset is None else str(problem.offset)
            seq = "-" if problem.seq is None else str(problem.seq)
            click.echo(
                f"{problem.kind.upper()}: segment {where} offset {offset} seq {seq}: "
                f"{problem.message}"
            )
        state = "OK" if report.ok else f"FAILED: {len(report.problems)} problem(s)"
        click.echo(
            f"{state}: {report.segments} segments, {report.frames} frames, {report.events} "
            f"events, head seq {report.head_seq}"
            + (
                f", {report.removed_segments} removed by retention"
                if report.removed_segments
                else ""
            )
            + (
                f", checkpoint {report.checkpoint['status']}"
                if report.checkpoint
                else ""
            )
        )
    if not report.ok:
        sys.exit(EXIT_FAILURE)


@cli.command(short_help="Print the chain head as JSON, to store elsewhere.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
def checkpoint(directory: str) -> None:
    """Print the chain head (seq and link) as one JSON object to store elsewhere.

    A chain alone cannot show that its newest events were cut off; a stored
    checkpoint can: `journal verify DIR --checkpoint head.json`.

    \b
    Example:
      journal checkpoint ./audit > /secure/place/head.json

    \b
    Exit codes: 0 success, 1 not a journal, 2 usage error.
    """
    with handle_errors(), open_existing(directory) as journal:
        echo_json(journal.checkpoint())


@cli.command(short_help="Delete expired segments, oldest first (cron-safe).")
@click.argument(
    "directory", metavar="DIR", required=False, type=click.Path(file_okay=False)
)
@click.option(
    "--db-path",
    "db_path",
    default=None,
    type=click.Path(file_okay=False),
    help="The journal directory (the same as DIR).",
)
@click.option(
    "--days",
    type=FiniteFloat(0, 1e6),
    default=None,
    help="Delete segments whose events are all older than this many days.",
)
@click.option(
    "--max-bytes",
    default=None,
    metavar="SIZE",
    help="Keep the journal under SIZE (500M, 2G), dropping oldest segments.",
)
@click.option(
    "--max-segments",
    default=None,
    type=click.IntRange(min=1),
    help="Keep at most N segments, dropping the oldest.",
)
@click.option(
    "--dry-run", is_flag=True, help="Report what would be deleted; delete nothing."
)
@lock_timeout_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print one summary object on stdout."
)
def retention(
    directory: str | None,
    db_path: str | None,
    days: float | None,
    max_bytes: str | None,
    max_segments: int | None,
    dry_run: bool,
    lock_timeout: float | None,
    as_json: bool,
) -> None:
    """Delete whole expired segments, oldest first; safe to run from cron.

    Never prompts and needs no terminal. Log lines go to stderr.

    \b
    Example:
      journal retention /var/lib/audit --days 90 --json
      journal retention --db-path ./tmp/db --days 1 --dry-run

    \b
    Exit codes: 0 done (including nothing to do), 1 any other error, 2 usage
    error, 75 the write lock was not free within --lock-timeout (the holder is
    named on stderr).
    """
    if directory and db_path and os.path.abspath(directory) != os.path.abspath(db_path):
        fail(
            f"DIR {directory} and --db-path {db_path} differ; give one of them",
            EXIT_USAGE,
        )
    target = directory or db_path
    if not target:
        fail("missing the journal directory: give DIR or --db-path DIR", EXIT_USAGE)
    if days is None and max_bytes is None and max_segments is None:
        fail(
            "nothing to enforce: give --days, --max-bytes or --max-segments", EXIT_USAGE
        )
    size_limit = parse_size(max_bytes, "--max-bytes") if max_bytes is not None else None
    if not log_level_chosen():
        # Retention reports each removal at INFO unless -v/--log-level sets another level.
        logging.getLogger("journal").setLevel(logging.INFO)
    with handle_errors():
        require_journal(target)
        with (
            Journal.open(
                target, lock_timeout=lock_timeout, readonly=dry_run
            ) as journal,
            progress_bar("removing segments") as advance,
        ):
            report = journal.enforce_retention(
                progress=advance,
                max_age=timedelta(days=days) if days is not None else None,
                max_bytes=size_limit,
                max_segments=max_segments,
                dry_run=dry_run,
            )
    verb = "would delete" if dry_run else "deleted"
    for decision in report.deleted:
        log.info(
            "%s %s (seq %d..%d, %d events, %d bytes): %s",
            verb,
            decision.name,
            decision.first_seq,
            decision.last_seq,
            decision.events,
            decision.bytes,
            decision.reason,
        )
    if as_json:
        data = msgspec.to_builtins(report)
        data["segments_deleted"] = len(report.deleted)
        echo_json(data)
    else:
        click.echo(
            f"{verb} {len(report.deleted)} segment(s), {report.events_freed} events, "
            f"{report.bytes_freed} bytes; kept {len(report.kept)}; oldest event left "
            f"{report.oldest_event_left or '-'}"
        )
