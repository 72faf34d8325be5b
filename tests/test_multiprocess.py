"""Several processes appending to one journal, and a reader following them."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from journal import Journal

WRITERS = 4
EVENTS_PER_WRITER = 1000

# Each writer announces itself with a ready file and waits for the start file,
# so that all of them append at once.
WRITER_SCRIPT = """
import os, sys, time
from journal import AuditEvent, Journal

directory, writer, count, segment_max_bytes, start_file = sys.argv[1:6]
writer, count = int(writer), int(count)
open(f"{start_file}.ready-{writer}", "w").close()
deadline = time.monotonic() + 30
while not os.path.exists(start_file) and time.monotonic() < deadline:
    time.sleep(0.001)
with Journal.open(directory, segment_max_bytes=int(segment_max_bytes)) as journal:
    for i in range(count):
        journal.append(AuditEvent(
            actor=f"writer{writer}",
            action="test.append",
            target=f"item/{i}",
            metadata={"writer": writer, "i": i, "pad": f"{writer}-{i}-" + "x" * (i % 50)},
        ))
"""

# The reader pages through the journal with an after_seq cursor until the
# done file exists, then makes one last pass, and prints every seq it saw.
READER_SCRIPT = """
import json, os, sys, time
from journal import Journal

directory, done_file, readonly = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
seen = []
cursor = 0
deadline = time.monotonic() + 120
while not os.path.isdir(directory) or not any(
        n.endswith(".seg") for n in os.listdir(directory)):
    time.sleep(0.001)
with Journal.open(directory, readonly=readonly) as journal:
    while time.monotonic() < deadline:
        finished = os.path.exists(done_file)
        for event in journal.query(after_seq=cursor, limit=97):
            seen.append([event.seq, event.metadata["writer"], event.metadata["i"]])
            cursor = event.seq
        if finished and journal.last_seq == cursor:
            break
        time.sleep(0.002)
json.dump(seen, sys.stdout)
"""


def _start_writers(directory: Path, start_file: Path, segment_max_bytes: int):
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER_SCRIPT,
                str(directory),
                str(k),
                str(EVENTS_PER_WRITER),
                str(segment_max_bytes),
                str(start_file),
            ],
            stderr=subprocess.PIPE,
        )
        for k in range(WRITERS)
    ]


def _release_writers(start_file: Path, processes) -> None:
    """Touch the start file once every writer has started."""
    deadline = time.monotonic() + 60
    ready = [Path(f"{start_file}.ready-{k}") for k in range(WRITERS)]
    while not all(p.exists() for p in ready):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            break
        time.sleep(0.005)
    start_file.touch()


def _wait_all(processes, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            _, stderr = process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail("a writer process did not finish in time")
        assert process.returncode == 0, stderr.decode(errors="replace")


def _check_journal(directory: Path) -> None:
    total = WRITERS * EVENTS_PER_WRITER
    with Journal.open(directory, readonly=True) as journal:
        events = list(journal.read())
        assert [e.seq for e in events] == list(range(1, total + 1))
        per_writer: dict[int, list[int]] = {k: [] for k in range(WRITERS)}
        for event in events:
            writer, i = event.metadata["writer"], event.metadata["i"]
            assert event.actor == f"writer{writer}"
            assert event.target == f"item/{i}"
            assert event.metadata["pad"] == f"{writer}-{i}-" + "x" * (i % 50)
            per_writer[writer].append(i)
        # Each writer appends in order, so its events keep that order.
        for k in range(WRITERS):
            assert per_writer[k] == list(range(EVENTS_PER_WRITER)), f"writer {k}"
        # The writers really ran at the same time: their seqs interleave.
        switches = sum(
            1
            for a, b in itertools.pairwise(events)
            if a.metadata["writer"] != b.metadata["writer"]
        )
        assert switches > WRITERS, "the writers ran one after another"
        assert journal.last_seq == total
        report = journal.verify()
        assert report.ok, report.problems
        assert report.events == total
        infos = journal.segments()
        for before, after in itertools.pairwise(infos):
            assert after.first_seq == before.last_seq + 1
        for k in range(WRITERS):
            assert len(list(journal.query(actor=f"writer{k}"))) == EVENTS_PER_WRITER


@pytest.mark.parametrize(
    "segment_max_bytes", [16 << 20, 8192], ids=["one-segment", "rolling"]
)
def test_four_writers(tmp_path: Path, segment_max_bytes: int) -> None:
    directory = tmp_path / "journal"
    start_file = tmp_path / "start"
    writers = _start_writers(directory, start_file, segment_max_bytes)
    _release_writers(start_file, writers)
    _wait_all(writers)
    _check_journal(directory)
    if segment_max_bytes == 8192:
        with Journal.open(directory, readonly=True) as journal:
            assert len(journal.segments()) > 10


@pytest.mark.parametrize("readonly", [True, False], ids=["readonly", "writable"])
def test_reader_cursor_never_skips(tmp_path: Path, readonly: bool) -> None:
    directory = tmp_path / "journal"
    start_file = tmp_path / "start"
    done_file = tmp_path / "done"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            READER_SCRIPT,
            str(directory),
            str(done_file),
            "1" if readonly else "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    writers = _start_writers(directory, start_file, 8192)
    _release_writers(start_file, writers)

    try:
        _wait_all(writers)
    finally:
        done_file.touch()
    try:
        stdout, stderr = reader.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        reader.kill()
        pytest.fail("the reader process did not finish in time")
    assert reader.returncode == 0, stderr.decode(errors="replace")

    seen = json.loads(stdout)
    total = WRITERS * EVENTS_PER_WRITER
    seen_seqs = [row[0] for row in seen]
    missing = sorted(set(range(1, total + 1)) - set(seen_seqs))
    assert missing == [], f"{len(missing)} seqs skipped, first {missing[:10]}"
    assert len(seen_seqs) == len(set(seen_seqs)), "some seqs were read twice"
    assert seen_seqs == list(range(1, total + 1))
    pairs = {(writer, i) for _, writer, i in seen}
    assert len(pairs) == total
    _check_journal(directory)
