"""Retention against real processes: concurrent writers and readers, odd files, the CLI.

Retention deletes whole segments, oldest first, records each in retention.log before
the file goes, never deletes the active segment while it is written, and leaves a
journal that verifies clean. Event times come from :func:`faultkit.make_event`
(May 2024) or are set explicitly. Tests pass ``now`` in, so only the CLI tests
depend on the wall clock.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

try:
    import faultkit
except ImportError:  # tests/ is a package, or pytest runs with another rootdir
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import faultkit

from journal import AuditEvent, Journal
from journal.removal import RemovalLog
from journal.segment import segment_name

BASE = faultkit.BASE_TIME
#: The console script installed next to this interpreter.
JOURNAL_CLI = str(Path(sys.executable).with_name("journal"))
#: The folder of faultkit, which child scripts put on sys.path.
FAULTKIT_DIR = str(Path(faultkit.__file__).resolve().parent)


class Clock:
    """A settable clock for ``Journal.open(clock=...)``."""

    def __init__(self, now: Any = BASE) -> None:
        self.now = now

    def __call__(self) -> Any:
        return self.now


def journal_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the journal command line and capture its output."""
    return subprocess.run(
        [JOURNAL_CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=faultkit.python_env(),
    )


def event_at(n: int, when: Any) -> AuditEvent:
    """Event *n* of writer "r" with its time replaced by *when*."""
    event = faultkit.make_event("r", n)
    event.time = when
    return event


def build_segments(
    directory: Path,
    segments: int,
    *,
    when: Any = BASE - timedelta(days=30),
    clock: Clock | None = None,
) -> list[str]:
    """Write events dated *when* until the journal has *segments* segments.

    Returns the segment names, oldest first; the newest is active.
    """
    with Journal.open(
        directory, durability="flush", segment_max_bytes=4096, clock=clock
    ) as journal:
        n = 0
        while len(faultkit.segment_paths(directory)) < segments:
            journal.append(event_at(n, when))
            n += 1
        # Give the active segment a few events too.
        for _ in range(3):
            journal.append(event_at(n, when))
            n += 1
    return [p.name for p in faultkit.segment_paths(directory)]


def removal_records(directory: Path) -> list[Any]:
    return RemovalLog(str(directory), 0o600).records()


def decisions(report: Any) -> dict[str, Any]:
    """The parts of a RetentionReport that must not depend on dry_run."""
    data = msgspec.to_builtins(report)
    data.pop("dry_run")
    return data


# --- the idle active segment ------------------------------------------------------------


def test_idle_expired_active_segment_sealed_then_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    clock = Clock()
    with Journal.open(directory, durability="flush", clock=clock) as journal:
        for n in range(10):
            journal.append(event_at(n, BASE - timedelta(days=30)))
        report = journal.enforce_retention(max_age=timedelta(days=7), now=BASE)
        assert report.sealed_active == segment_name(1)
        assert [d.name for d in report.deleted] == [segment_name(1)]
        assert report.events_freed == 10
        assert not (directory / segment_name(1)).exists()
        event = journal.append(faultkit.make_event("after", 0))
        assert event.seq == 11
        assert [e.id for e in journal.read()] == ["after-0"]
        assert journal.verify().problems == []
    assert (directory / segment_name(11)).exists()
    with Journal.open(directory, readonly=True) as journal:
        assert [(e.seq, e.id) for e in journal.read()] == [(11, "after-0")]


def test_writer_open_during_retention_continues_seqs(tmp_path: Path) -> None:
    """A writer that was open while another process removed everything."""
    directory = tmp_path / "journal"
    writer = Journal.open(directory, durability="flush")
    try:
        for n in range(10):
            writer.append(event_at(n, BASE - timedelta(days=30)))
        run = journal_cli("retention", str(directory), "--days", "7", "--json")
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["segments_deleted"] == 1
        event = writer.append(faultkit.make_event("after", 0))
        assert event.seq == 11
        assert [e.id for e in writer.read()] == ["after-0"]
    finally:
        writer.close()


# --- future-dated events ------------------------------------------------------------------


@pytest.mark.parametrize("sealed_days_ago", [29, 3])
def test_future_dated_event_judged_by_seal_time(
    tmp_path: Path, sealed_days_ago: int, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "journal"
    now = BASE + timedelta(days=30)
    clock = Clock(now - timedelta(days=40))
    # A long segment_max_age keeps the clock jumps below from rolling segments by age.
    with Journal.open(
        directory,
        durability="flush",
        clock=clock,
        segment_max_bytes=4096,
        segment_max_age=timedelta(days=3650),
    ) as journal:
        n = 0
        while len(faultkit.segment_paths(directory)) < 2:
            journal.append(event_at(n, now - timedelta(days=40)))
            n += 1
        # Segment 2 contains one event dated a year after `now`, sealed `sealed_days_ago`.
        future_segment = faultkit.segment_paths(directory)[-1].name
        journal.append(event_at(n, now + timedelta(days=365)))
        clock.now = now - timedelta(days=sealed_days_ago)
        while len(faultkit.segment_paths(directory)) < 3:
            n += 1
            journal.append(event_at(n, now - timedelta(days=40)))
        clock.now = now
        journal.append(event_at(n + 1, now))
        with caplog.at_level(logging.WARNING, logger="journal"):
            report = journal.enforce_retention(max_age=timedelta(days=7), now=now)
        assert report.future_dated == [future_segment]
        deleted = [d.name for d in report.deleted]
        if sealed_days_ago > 7:
            assert deleted == [segment_name(1), future_segment]
        else:
            assert deleted == [segment_name(1)]
            assert report.kept[0].name == future_segment
        assert report.sealed_active is None
        assert any(future_segment in r.getMessage() for r in caplog.records)
        assert journal.verify().problems == []


# --- unrelated files, dry runs, repeated runs -------------------------------------------


UNRELATED = [
    "notes.txt",
    "123.seg.bak",
    "00000000000000000001.seg.old",
    "00000000000000000002.seg~",
    "retention.log.1",
]


def test_only_segments_and_indexes_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    names = build_segments(directory, 4)
    for name in UNRELATED:
        (directory / name).write_text("not a segment\n")
    before = set(os.listdir(directory))
    with Journal.open(directory, durability="flush") as journal:
        report = journal.enforce_retention(max_segments=1)
    deleted = [d.name for d in report.deleted]
    assert deleted == names[:-1]
    gone = before - set(os.listdir(directory))
    expected_gone = {*deleted, *(n.replace(".seg", ".idx") for n in deleted)}
    assert gone == expected_gone
    for name in [*UNRELATED, "journal.lock", "journal.lock.holder", names[-1]]:
        assert (directory / name).exists(), name
    assert [r.name for r in removal_records(directory)] == deleted


@pytest.mark.parametrize(
    "limits",
    [
        {"max_age": timedelta(days=7)},
        {"max_bytes": 9000},
        {"max_segments": 2},
        {"max_age": timedelta(days=1), "max_segments": 4},
    ],
    ids=["age", "bytes", "segments", "age-and-segments"],
)
def test_dry_run_matches_real_run(tmp_path: Path, limits: dict[str, Any]) -> None:
    directory = tmp_path / "journal"
    clock = Clock(BASE - timedelta(days=30))
    with Journal.open(
        directory, durability="flush", clock=clock, segment_max_bytes=4096
    ) as journal:
        for n in range(120):
            # Old events first, then recent ones, so age keeps the newest segments.
            when = BASE - timedelta(days=30 if n < 70 else 0, seconds=-n)
            journal.append(event_at(n, when))
    files = sorted(os.listdir(directory))
    now = BASE + timedelta(hours=1)
    with Journal.open(directory, readonly=True) as journal:
        dry = journal.enforce_retention(now=now, dry_run=True, **limits)
    assert sorted(os.listdir(directory)) == files, "a dry run changed the directory"
    assert dry.deleted, "the limits should delete something"
    with Journal.open(directory, durability="flush") as journal:
        real = journal.enforce_retention(now=now, **limits)
        assert decisions(dry) == decisions(real)
        again = journal.enforce_retention(now=now, **limits)
        assert again.deleted == []
        assert journal.verify().problems == []


def test_cli_dry_run_matches_real_run(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    names = build_segments(directory, 5)
    files = sorted(os.listdir(directory))
    dry = journal_cli(
        "retention", str(directory), "--max-segments", "2", "--dry-run", "--json"
    )
    assert dry.returncode == 0, dry.stderr
    assert sorted(os.listdir(directory)) == files
    real = journal_cli("retention", str(directory), "--max-segments", "2", "--json")
    assert real.returncode == 0, real.stderr
    dry_report, real_report = json.loads(dry.stdout), json.loads(real.stdout)
    assert dry_report["dry_run"] is True
    assert [d["name"] for d in dry_report["deleted"]] == names[:3]
    assert dry_report["deleted"] == real_report["deleted"]
    assert dry_report["kept"] == real_report["kept"]
    again = journal_cli("retention", str(directory), "--max-segments", "2", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["segments_deleted"] == 0


# --- limits by size and count ------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [{"max_segments": 1}, {"max_bytes": 0}, {"max_segments": 3}, {"max_bytes": 10000}],
    ids=["one-segment", "zero-bytes", "three-segments", "10000-bytes"],
)
def test_size_and_count_drop_oldest_first(
    tmp_path: Path, limits: dict[str, Any]
) -> None:
    directory = tmp_path / "journal"
    names = build_segments(directory, 6)
    sizes = {p.name: p.stat().st_size for p in faultkit.segment_paths(directory)}
    with Journal.open(directory, durability="flush") as journal:
        last_seq = journal.last_seq
        report = journal.enforce_retention(**limits)
        deleted = [d.name for d in report.deleted]
        assert deleted == names[: len(deleted)], "retention skipped an older segment"
        assert names[-1] not in deleted, "the active segment was deleted"
        remaining = names[len(deleted) :]
        if "max_segments" in limits:
            assert len(remaining) == max(limits["max_segments"], 1)
        else:
            # Only the active segment may stay over the byte limit.
            total = sum(sizes[n] for n in remaining)
            assert total <= limits["max_bytes"] or remaining == names[-1:]
            assert (
                sum(sizes[n] for n in remaining[1:]) <= limits["max_bytes"]
                or len(remaining) == 1
            )
        assert journal.verify().problems == []
        assert journal.append(faultkit.make_event("after", 0)).seq == last_seq + 1


# --- verify distinguishes retention from tampering -----------------------------------------------


def test_verify_after_retention_and_hand_deletion(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    names = build_segments(directory, 6)
    with Journal.open(directory, durability="flush") as journal:
        journal.enforce_retention(max_segments=4)
        assert journal.verify().problems == []
    # Deleting a middle segment by hand is not retention.
    middle = directory / names[3]
    middle.unlink()
    faultkit.drop_index(middle)
    with Journal.open(directory, readonly=True) as journal:
        found = [(p.kind, p.seq) for p in journal.verify().problems]
    assert found == [("segment missing", int(names[3][:20]))]


def test_verify_reports_oldest_deleted_by_hand(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    names = build_segments(directory, 5)
    with Journal.open(directory, durability="flush") as journal:
        journal.enforce_retention(max_segments=4)
    oldest_left = directory / names[1]
    oldest_left.unlink()
    faultkit.drop_index(oldest_left)
    with Journal.open(directory, readonly=True) as journal:
        found = [(p.kind, p.seq) for p in journal.verify().problems]
    assert found == [("segment missing", int(names[1][:20]))]


# --- the command line ------------------------------------------------------------------------


def test_cli_db_path_spelling(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    names = build_segments(directory, 4)
    run = journal_cli(
        "retention", "--db-path", str(directory), "--max-segments", "3", "--json"
    )
    assert run.returncode == 0, run.stderr
    assert [d["name"] for d in json.loads(run.stdout)["deleted"]] == names[:1]
    same = journal_cli(
        "retention", str(directory), "--db-path", str(directory), "--max-segments", "2"
    )
    assert same.returncode == 0, same.stderr
    other = journal_cli(
        "retention",
        str(directory),
        "--db-path",
        str(tmp_path / "other"),
        "--max-segments",
        "2",
    )
    assert other.returncode == 2
    assert "differ" in other.stderr


def test_cli_exit_codes(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    build_segments(directory, 3)
    done = journal_cli("retention", str(directory), "--max-segments", "1")
    assert done.returncode == 0, done.stderr
    assert "deleted 2 segment(s)" in done.stdout
    nothing = journal_cli("retention", str(directory), "--max-segments", "1")
    assert nothing.returncode == 0, nothing.stderr
    assert "deleted 0 segment(s)" in nothing.stdout
    missing = journal_cli("retention", str(tmp_path / "absent"), "--days", "1")
    assert missing.returncode == 1
    assert str(tmp_path / "absent") in missing.stderr
    assert not (tmp_path / "absent").exists()
    no_limits = journal_cli("retention", str(directory))
    assert no_limits.returncode == 2
    assert "--days" in no_limits.stderr
    bad_size = journal_cli("retention", str(directory), "--max-bytes", "lots")
    assert bad_size.returncode == 2


# Holds the write lock of argv[1] until its standard input closes; prints "locked".
HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys
    from journal import Journal
    journal = Journal.open(sys.argv[1])
    with journal.lock():
        print("locked", flush=True)
        sys.stdin.read()
    journal.close()
    """
)


def test_cli_lock_timeout_exit_75(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    build_segments(directory, 3)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=faultkit.python_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        run = journal_cli(
            "retention", str(directory), "--max-segments", "1", "--lock-timeout", "0.5"
        )
        elapsed = time.monotonic() - started
    finally:
        holder.communicate(input="", timeout=30)
    assert run.returncode == 75, run.stderr
    assert f"pid {holder.pid}" in run.stderr
    assert elapsed < 10
    assert len(faultkit.segment_paths(directory)) == 3


# --- concurrent processes ------------------------------------------------------------------

# Runs retention on argv[1] in a loop until argv[2] seconds pass: max_segments=argv[3]
# mostly, every fifth run max_bytes=argv[4]. Prints one JSON line per run that
# deleted something, and "done <runs>" at the end.
RETENTION_LOOP = textwrap.dedent(
    """
    import json, sys, time
    from journal import Journal
    directory, seconds = sys.argv[1], float(sys.argv[2])
    max_segments, max_bytes = int(sys.argv[3]), int(sys.argv[4])
    deadline = time.monotonic() + seconds
    runs = 0
    with Journal.open(directory, lock_timeout=30) as journal:
        while time.monotonic() < deadline:
            if runs % 5 == 4:
                report = journal.enforce_retention(max_bytes=max_bytes)
            else:
                report = journal.enforce_retention(max_segments=max_segments)
            runs += 1
            if report.deleted:
                print(json.dumps([d.name for d in report.deleted]), flush=True)
            time.sleep(0.01)
    print("done", runs, flush=True)
    """
)


def test_retention_while_writers_append(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal.open(directory, durability="flush", segment_max_bytes=4096) as journal:
        journal.append(faultkit.make_event("seed", 0))
    writers = {
        tag: faultkit.exec_writer(
            str(directory),
            tag,
            mode,
            str(tmp_path / f"{tag}.ack"),
            seed=i,
            segment_max_bytes=4096,
        )
        for i, (tag, mode) in enumerate(
            [("wf", "flush"), ("ws", "fsync"), ("wb", "batch")]
        )
    }
    retention = subprocess.Popen(
        [sys.executable, "-c", RETENTION_LOOP, str(directory), "2.5", "3", "16000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=faultkit.python_env(),
    )
    cli_runs = []
    try:
        time.sleep(0.8)
        for _ in range(3):
            cli_runs.append(
                journal_cli(
                    "retention", str(directory), "--max-segments", "5", "--json"
                )
            )
            time.sleep(0.2)
        stdout, stderr = retention.communicate(timeout=60)
        for tag, writer in writers.items():
            assert writer.poll() is None, f"writer {tag} died: {writer.stderr.read()}"
    finally:
        for writer in writers.values():
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        if retention.poll() is None:
            retention.kill()
    assert retention.returncode == 0, stderr[-3000:]
    for run in cli_runs:
        assert run.returncode == 0, run.stderr
    deleted_by_loop = [
        name
        for line in stdout.splitlines()
        if line.startswith("[")
        for name in json.loads(line)
    ]
    assert deleted_by_loop, "the retention loop deleted nothing"

    records = removal_records(directory)
    recorded = [r.name for r in records]
    assert set(deleted_by_loop) <= set(recorded)
    expected_first = 1
    for record in records:
        assert record.first_seq == expected_first, (
            f"retention.log skips to {record.name}"
        )
        expected_first = record.last_seq + 1
        assert not (directory / record.name).exists()
        assert not (directory / record.name.replace(".seg", ".idx")).exists()
    acked = {1: "seed-0"}
    for tag in writers:
        acked.update(faultkit.read_acks(tmp_path / f"{tag}.ack"))
    kept = {seq: event_id for seq, event_id in acked.items() if seq >= expected_first}
    assert kept, "every acknowledged event expired; the test checked nothing"
    violations, last_seq = faultkit.check_journal(
        directory, kept, first_seq=expected_first
    )
    assert violations == []
    assert last_seq >= max(acked)


# Reads the journal argv[1] slowly (argv[2] seconds per event) from the start to seq
# argv[3]; on SegmentExpired it resumes after the removed segment. Prints a JSON
# summary: seqs read, expirations, and anything else that went wrong.
SLOW_READER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[4])
    import faultkit
    from journal import Journal, SegmentExpired
    delay, last = float(sys.argv[2]), int(sys.argv[3])
    out = {"seqs": [], "expired": [], "problems": []}
    position = 0
    with Journal.open(sys.argv[1], readonly=True) as journal:
        while position < last:
            try:
                for event in journal.read(after_seq=position):
                    if event.seq <= position:
                        out["problems"].append(f"seq {event.seq} after {position}")
                    mismatch = faultkit.event_mismatch(event)
                    if mismatch:
                        out["problems"].append(mismatch)
                    out["seqs"].append(event.seq)
                    position = event.seq
                    time.sleep(delay)
                break
            except SegmentExpired as err:
                out["expired"].append([err.path, err.next_seq])
                if err.next_seq is None or err.next_seq - 1 <= position:
                    out["problems"].append(f"SegmentExpired without progress: {err}")
                    break
                position = err.next_seq - 1
            except Exception as err:
                out["problems"].append(faultkit.describe_exception(err))
                break
    print(json.dumps(out))
    """
)


def test_readers_while_segments_removed(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal.open(directory, durability="flush", segment_max_bytes=4096) as journal:
        for n in range(240):
            journal.append(faultkit.make_event("r", n))
        last_seq = journal.last_seq
    names = [p.name for p in faultkit.segment_paths(directory)]
    assert len(names) >= 10

    readers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SLOW_READER,
                str(directory),
                str(delay),
                str(last_seq),
                FAULTKIT_DIR,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=faultkit.python_env(),
        )
        for delay in (0.002, 0.004, 0.008)
    ]
    time.sleep(0.3)
    # Remove one segment at a time, oldest first, while the readers run.
    with Journal.open(directory, durability="flush", lock_timeout=30) as journal:
        for keep in range(len(names) - 1, 0, -1):
            journal.enforce_retention(max_segments=keep)
            time.sleep(0.12)
    outputs = [reader.communicate(timeout=120) for reader in readers]

    for reader, (stdout, stderr) in zip(readers, outputs):
        assert reader.returncode == 0, stderr[-3000:]
        out = json.loads(stdout)
        assert out["problems"] == []
        assert out["seqs"], "the reader read nothing"
        assert out["seqs"][-1] == last_seq
        assert out["seqs"] == sorted(set(out["seqs"]))
    orphans = [
        name
        for name in os.listdir(directory)
        if name.endswith(".idx")
        and not (directory / name.replace(".idx", ".seg")).exists()
    ]
    assert orphans == [], "index files outlived their removed segments"
    with Journal.open(directory, readonly=True) as journal:
        assert journal.verify().problems == []


def test_removal_record_describes_segments(tmp_path: Path) -> None:
    """Removed segments are named in retention.log with their seq and time ranges."""
    directory = tmp_path / "journal"
    names = build_segments(directory, 4)
    expected = {}
    with Journal.open(directory, readonly=True) as journal:
        for info in journal.segments():
            expected[info.name] = (
                info.first_seq,
                info.last_seq,
                info.events,
                info.min_time,
                info.max_time,
            )
    with Journal.open(directory, durability="flush") as journal:
        journal.enforce_retention(max_segments=2)
    records = removal_records(directory)
    assert [r.name for r in records] == names[:2]
    for record in records:
        assert (
            record.first_seq,
            record.last_seq,
            record.events,
            record.min_time,
            record.max_time,
        ) == expected[record.name]
        assert record.reason == "retention"
