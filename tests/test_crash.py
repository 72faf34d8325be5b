"""Kill -9 of writer processes at random moments, and the states such kills leave.

Writers append in every durability mode and write ``"<seq> <id>"`` to an ack file
after ``append`` returns (batch mode: after ``flush()``). After each kill the journal
must open, hold every acknowledged event exactly once with identical content, keep
seqs gapless, verify clean and accept appends. ``JOURNAL_STRESS_TRIALS`` scales the
trial counts (the default run is about 200 trials); ``tests/stress_crash.py`` runs
the same campaign from the command line.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

try:
    import faultkit
except ImportError:  # tests/ is a package, or pytest runs with another rootdir
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import faultkit

from journal import Journal
from journal.segment import KIND_SEAL, segment_name


def assert_campaign_clean(result: faultkit.CampaignResult) -> None:
    """Fail with the first findings of a campaign, if it had any."""
    assert result.trials > 0
    assert not result.violations, (
        result.summary() + "\n" + "\n".join(result.violations[:10])
    )


def stress_enabled(config: pytest.Config) -> bool:
    """Return whether the long campaigns should run (``--stress`` or the variable)."""
    return bool(config.getoption("--stress", default=False)) or bool(
        os.environ.get("JOURNAL_STRESS_TRIALS")
    )


# --- random kills -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modes", "trials"),
    [
        (("fsync",), 50),
        (("flush",), 50),
        (("batch",), 40),
        (("fsync", "flush", "batch"), 60),
    ],
    ids=["fsync", "flush", "batch", "mixed"],
)
def test_kill9_writers(tmp_path: Path, modes: tuple[str, ...], trials: int) -> None:
    result = faultkit.run_campaign(
        tmp_path,
        faultkit.trial_count(trials),
        modes=modes,
        seed=len(modes) * 1000 + trials,
    )
    assert_campaign_clean(result)


def test_kill9_exec_writers(tmp_path: Path) -> None:
    """Writers in fresh interpreters, so some kills land during import and open."""
    result = faultkit.run_campaign(
        tmp_path,
        faultkit.trial_count(16),
        writers=(1, 2),
        run_time=(0.1, 0.4),
        use_exec=True,
        trials_per_journal=4,
        seed=7,
    )
    assert_campaign_clean(result)


@pytest.mark.stress
def test_kill9_long_campaign(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if not stress_enabled(request.config):
        pytest.skip("long campaign: set JOURNAL_STRESS_TRIALS or pass --stress")
    trials = int(os.environ.get("JOURNAL_STRESS_TRIALS") or 2000)
    result = faultkit.run_campaign(tmp_path, trials, seed=11, trials_per_journal=20)
    assert_campaign_clean(result)


# --- states that a kill can leave, built by hand -------------------------------------


def build_rolled_journal(directory: Path) -> tuple[list[str], Path]:
    """Write a journal whose first segment is sealed; return the ids and that segment."""
    ids = []
    with Journal.open(directory, durability="flush", segment_max_bytes=4096) as journal:
        for n in range(60):
            event = faultkit.make_event("base", n)
            journal.append(event)
            ids.append(event.id)
    return ids, faultkit.segment_paths(directory)[0]


def keep_only_first_segment(directory: Path) -> list[str]:
    """Delete every segment after the first (and its index); return the kept ids."""
    first = faultkit.load_segment(faultkit.segment_paths(directory)[0])
    assert first.frames[-1].kind == KIND_SEAL
    for path in faultkit.segment_paths(directory)[1:]:
        path.unlink()
        faultkit.drop_index(path)
    return [e.id for f in first.events_frames() for e in first.events(f)]


@pytest.mark.parametrize("header_bytes", [0, 30, 67])
def test_kill_before_new_segment_header(tmp_path: Path, header_bytes: int) -> None:
    """A kill between creating a segment file and writing its 68-byte header."""
    directory = tmp_path / "journal"
    build_rolled_journal(directory)
    kept = keep_only_first_segment(directory)
    first_new = len(kept) + 1
    # The state after the kill: the previous segment sealed, the new file short.
    complete = tmp_path / "complete"
    shutil.copytree(directory, complete)
    with Journal.open(complete, durability="flush", segment_max_bytes=4096) as journal:
        journal.append(faultkit.make_event("probe", 0))
    full_header = (complete / segment_name(first_new)).read_bytes()[:header_bytes]
    (directory / segment_name(first_new)).write_bytes(full_header)

    with Journal.open(directory, durability="flush", segment_max_bytes=4096) as journal:
        assert [e.id for e in journal.read()] == kept
        # Opening for writing is the recovery point: a crash is not damage.
        assert journal.verify().problems == []
        event = journal.append(faultkit.make_event("after", 0))
        assert event.seq == first_new
        report = journal.verify()
    assert report.problems == []


def test_kill_between_seal_and_new_segment(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    build_rolled_journal(directory)
    kept = keep_only_first_segment(directory)
    with Journal.open(directory, durability="flush", segment_max_bytes=4096) as journal:
        assert [e.id for e in journal.read()] == kept
        event = journal.append(faultkit.make_event("after", 0))
        assert event.seq == len(kept) + 1
        assert journal.verify().problems == []
    assert (directory / segment_name(len(kept) + 1)).exists()


def test_kill_during_recovery_after_side_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery copied the torn bytes aside and was killed before the truncate."""
    directory = tmp_path / "journal"
    with Journal.open(directory, durability="flush") as journal:
        for n in range(10):
            journal.append(faultkit.make_event("base", n))
    path = faultkit.segment_paths(directory)[0]
    segment = faultkit.load_segment(path)
    last = segment.frames[-1]
    cut = last.offset + (last.end - last.offset) // 2
    path.write_bytes(segment.data[:cut])
    side = Path(f"{path}.torn-{last.offset}")
    side.write_bytes(segment.data[last.offset : cut])

    with (
        caplog.at_level(logging.WARNING, logger="journal"),
        Journal.open(directory, durability="flush") as journal,
    ):
        assert [e.id for e in journal.read()] == [f"base-{n}" for n in range(9)]
        assert journal.append(faultkit.make_event("after", 0)).seq == 10
        assert journal.verify().problems == []
    assert side.read_bytes() == segment.data[last.offset : cut]
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_torn_tail_cut_by_open_writer(tmp_path: Path) -> None:
    """A writer that was already open cuts the torn tail another process left."""
    directory = tmp_path / "journal"
    with Journal.open(directory, durability="flush") as journal:
        for n in range(5):
            journal.append(faultkit.make_event("base", n))
    survivor = Journal.open(directory, durability="flush")
    try:
        survivor.append(faultkit.make_event("survivor", 0))
        path = faultkit.segment_paths(directory)[0]
        # Another process tears its write of frame 7: half a copy of frame 6.
        segment = faultkit.load_segment(path)
        frame = segment.frames[-1]
        torn = segment.frame_bytes(frame)[: (frame.end - frame.offset) // 2]
        with path.open("ab") as fh:
            fh.write(torn)
        event = survivor.append(faultkit.make_event("survivor", 1))
        assert event.seq == 7
        ids = [e.id for e in survivor.read()]
        assert ids == [*(f"base-{n}" for n in range(5)), "survivor-0", "survivor-1"]
        assert survivor.verify().problems == []
    finally:
        survivor.close()
    assert Path(f"{path}.torn-{frame.end}").read_bytes() == torn


def test_kill_during_index_save_leaves_usable_journal(tmp_path: Path) -> None:
    """A temporary index file left by a kill during save_index is ignored."""
    directory = tmp_path / "journal"
    with Journal.open(directory, durability="flush") as journal:
        for n in range(5):
            journal.append(faultkit.make_event("base", n))
    path = faultkit.segment_paths(directory)[0]
    index = path.with_suffix(".idx")
    Path(f"{index}.tmp-999999-deadbeef").write_bytes(index.read_bytes()[:20])
    index.unlink()
    with Journal.open(directory, durability="flush") as journal:
        assert [e.id for e in journal.read()] == [f"base-{n}" for n in range(5)]
        assert journal.append(faultkit.make_event("after", 0)).seq == 6
        assert journal.verify().problems == []


@pytest.mark.parametrize("reason", ["age", "size"])
def test_roll_of_empty_active_segment(tmp_path: Path, reason: str) -> None:
    """A segment left empty by a kill (header only) rolls without breaking the chain.

    ``age``: the empty segment outlived segment_max_age. ``size``: its header contains
    a zstd dictionary of at least 16 KiB, so it alone reaches a segment_max_bytes of 16 KiB.
    """
    directory = tmp_path / "journal"
    options: dict[str, object] = {"durability": "flush"}
    if reason == "age":
        with Journal.open(directory, segment_max_bytes=4096, **options) as journal:
            for n in range(30):
                journal.append(faultkit.make_event("base", n))
        roll_options = {"segment_max_age": 0.5, **options}
    else:
        # Single-event frames make the journal train a dictionary for a later segment.
        with Journal.open(directory, **options) as journal:
            for n in range(5000):
                journal.append(faultkit.make_event("base", n))
                if n % 100 == 99 and faultkit.newest_has_dictionary(directory):
                    break
        roll_options = {"segment_max_bytes": 16384, **options}
    # The state after a kill between writing a new segment's header and its first frame.
    newest = faultkit.load_segment(faultkit.segment_paths(directory)[-1])
    if reason == "size":
        assert len(newest.header.dictionary) > 0, "no dictionary was trained"
    newest.path.write_bytes(newest.header_bytes)
    faultkit.drop_index(newest.path)
    kept = newest.header.first_seq - 1
    if reason == "age":
        time.sleep(0.6)

    with Journal.open(directory, **roll_options) as journal:  # type: ignore[arg-type]
        event = journal.append(faultkit.make_event("after", 0))
        assert event.seq == kept + 1
        assert [e.seq for e in journal.read()] == list(range(1, kept + 2))
        assert journal.verify().problems == []
    assert list(directory.glob("*.torn-*")) == []
