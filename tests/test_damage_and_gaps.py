"""Reads around damage and gaps, and the checks the CLI makes on its input."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from journal import AuditEvent, CorruptSegment, InvalidEvent, Journal, SegmentExpired
from journal.cli import main
from journal.segment import read_header, scan_frames


def _fill(directory: Path, count: int, **options: object) -> None:
    with Journal.open(directory, **options) as journal:  # type: ignore[arg-type]
        for n in range(count):
            journal.append(AuditEvent(actor=f"actor-{n}", action="login"))


def _flip_frames(segment: Path, seqs: set[int]) -> None:
    """Flip one payload byte of every frame that starts at one of *seqs*."""
    fd = os.open(segment, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        header = read_header(fd, str(segment), size)
        frames = list(scan_frames(fd, header.header_len, size, header.first_seq - 1))
    finally:
        os.close(fd)
    data = bytearray(segment.read_bytes())
    for frame in frames:
        if getattr(frame, "first_seq", None) in seqs:
            data[frame.offset + 50] ^= 0xFF  # type: ignore[union-attr]
    segment.write_bytes(bytes(data))


def _read_all_resuming(journal: Journal) -> tuple[list[int], list[tuple[int, int]]]:
    seen: list[int] = []
    damage: list[tuple[int, int]] = []
    position = 0
    while True:
        try:
            for event in journal.read(after_seq=position):
                assert event.seq is not None
                seen.append(event.seq)
                position = event.seq
            return seen, damage
        except CorruptSegment as err:
            assert err.first_seq is not None and err.last_seq is not None
            damage.append((err.first_seq, err.last_seq))
            position = err.last_seq


def test_resume_reads_every_intact_event(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 60)
    _flip_frames(directory / "00000000000000000001.seg", {10, 12, 13, 30})
    with Journal.open(directory, readonly=True) as journal:
        seen, damage = _read_all_resuming(journal)
    assert damage == [(10, 10), (12, 13), (30, 30)]
    assert sorted(set(range(1, 61)) - set(seen)) == [10, 12, 13, 30]
    assert seen == sorted(seen)


def test_recent_skips_nothing_newer_than_damage(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 60)
    _flip_frames(directory / "00000000000000000001.seg", {30})
    with Journal.open(directory, readonly=True) as journal:
        assert [e.seq for e in journal.recent(5)] == [60, 59, 58, 57, 56]
        with pytest.raises(CorruptSegment) as caught:
            journal.recent(40)
    assert (caught.value.first_seq, caught.value.last_seq) == (30, 30)


def test_deleted_middle_segment_raises(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 80, segment_max_bytes=4096)
    segments = sorted(directory.glob("*.seg"))
    assert len(segments) >= 3
    middle = segments[1]
    middle.unlink()
    with Journal.open(directory, readonly=True) as journal:
        with pytest.raises(CorruptSegment, match="missing") as caught:
            list(journal.read())
        first_missing = caught.value.first_seq
        assert first_missing == int(middle.name[:20])
        after = list(journal.read(after_seq=caught.value.last_seq))
        assert after[-1].seq == 80
        with pytest.raises(CorruptSegment, match="missing"):
            journal.recent(80)


def test_appends_continue_after_full_retention(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 10)
    with Journal.open(directory) as journal:
        head = journal.checkpoint()
        report = journal.enforce_retention(max_age=timedelta(0))
        assert report.segments_deleted == 1
        assert journal.last_seq == 10
        assert journal.append(AuditEvent(actor="a", action="b")).seq == 11
        assert [e.seq for e in journal.read()] == [11]
        verified = journal.verify(checkpoint=head)
    assert verified.ok, verified.problems
    assert verified.checkpoint is not None
    assert verified.checkpoint["status"] == "removed by retention"


def test_follow_reports_removed_events(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 5)
    with Journal.open(directory) as journal:
        journal.enforce_retention(max_age=timedelta(0))
        journal.append(AuditEvent(actor="a", action="b"))
        follower = journal.follow(after_seq=2, poll_interval=0.01)
        with pytest.raises(SegmentExpired) as caught:
            next(follower)
    assert caught.value.next_seq == 6


def test_self_referencing_metadata_rejected(tmp_path: Path) -> None:
    metadata: dict[str, object] = {}
    metadata["self"] = metadata
    with (
        Journal.open(tmp_path / "journal") as journal,
        pytest.raises(InvalidEvent) as caught,
    ):
        journal.append(AuditEvent(actor="a", action="b", metadata=metadata))
    assert caught.value.field == "metadata"


@pytest.mark.parametrize("command", ["verify", "recent", "stats", "segments", "export"])
def test_cli_rejects_non_journal_directory(tmp_path: Path, command: str) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    result = CliRunner().invoke(main, [command, str(plain)])
    assert result.exit_code == 1
    assert "not a journal directory" in result.output


def test_retention_leaves_non_journal_untouched(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    result = CliRunner().invoke(main, ["retention", str(plain), "--days", "1"])
    assert result.exit_code == 1
    assert list(plain.iterdir()) == []


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["retention", "{d}", "--days", "nan"], id="days-nan"),
        pytest.param(["retention", "{d}", "--days", "inf"], id="days-inf"),
        pytest.param(
            ["retention", "{d}", "--days", "1", "--lock-timeout", "nan"], id="lt"
        ),
        pytest.param(["query", "{d}", "--since", "9999999d"], id="since-overflow"),
        pytest.param(["tail", "{d}", "-f", "--interval", "nan"], id="interval-nan"),
    ],
)
def test_cli_rejects_non_finite_numbers(tmp_path: Path, arguments: list[str]) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 1)
    argv = [a.replace("{d}", str(directory)) for a in arguments]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_import_skips_oversized_record(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    lines = [f'{{"actor": "a{n}", "action": "x"}}' for n in range(5)]
    lines.append('{"actor": "big", "action": "x", "blob": "' + "y" * 2_000_000 + '"}')
    lines += [f'{{"actor": "b{n}", "action": "x"}}' for n in range(5)]
    source.write_text("\n".join(lines) + "\n")
    directory = tmp_path / "journal"
    result = CliRunner().invoke(
        main, ["import", str(directory), str(source), "--format", "jsonl", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert f"{source}:6: skipped (invalid-event)" in result.output
    with Journal.open(directory, readonly=True) as journal:
        assert len(list(journal.read())) == 10


def test_import_missing_file_creates_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    result = CliRunner().invoke(
        main, ["import", str(directory), str(tmp_path / "absent.log")]
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not directory.exists()


def test_import_empty_file_is_not_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "auth.log"
    empty.write_text("")
    result = CliRunner().invoke(main, ["import", str(tmp_path / "journal"), str(empty)])
    assert result.exit_code == 0, result.output


def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "journal") as journal:
        barrier = threading.Barrier(8)

        def work(worker: int) -> None:
            barrier.wait()
            for n in range(50):
                journal.append(AuditEvent(actor=f"w{worker}", action=f"n{n}"))

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seqs = [e.seq for e in journal.read()]
        acquisitions = journal.stats()["lock"]["acquisitions"]
    assert seqs == list(range(1, 401))
    assert acquisitions < 400


def test_deleted_first_segment_raises(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 80, segment_max_bytes=4096)
    first = sorted(directory.glob("*.seg"))[0]
    first.unlink()
    first.with_suffix(".idx").unlink()
    with Journal.open(directory, readonly=True) as journal:
        newest = journal.recent(5)
        assert [e.seq for e in newest] == [80, 79, 78, 77, 76]
        with pytest.raises(CorruptSegment, match="missing") as caught:
            journal.recent(80)
        assert caught.value.first_seq == 1
        with pytest.raises(CorruptSegment, match="missing"):
            list(journal.query(actor="nobody"))


def test_cursor_behind_retention_raises(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 80, segment_max_bytes=4096)
    with Journal.open(directory) as journal:
        report = journal.enforce_retention(max_segments=1)
        removed_through = max(d.last_seq for d in report.deleted)
        with pytest.raises(SegmentExpired) as caught:
            list(journal.query(after_seq=5))
        assert caught.value.next_seq == removed_through + 1
        assert f"after_seq={removed_through}" in str(caught.value)
        resumed = [e.seq for e in journal.read(after_seq=removed_through)]
        assert resumed[0] == removed_through + 1
        # Reading from the start is not a cursor, so it returns what is left.
        assert [e.seq for e in journal.read()] == resumed


def test_cli_cursor_behind_retention_fails(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, 80, segment_max_bytes=4096)
    with Journal.open(directory) as journal:
        report = journal.enforce_retention(max_segments=1)
    removed_through = max(d.last_seq for d in report.deleted)
    result = CliRunner().invoke(main, ["query", str(directory), "--after-seq", "5"])
    assert result.exit_code == 1
    assert f"--after-seq {removed_through}" in result.output
    resumed = CliRunner().invoke(
        main, ["query", str(directory), "--after-seq", str(removed_through), "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.count("\n") == 80 - removed_through
