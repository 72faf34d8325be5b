"""Deliberate edits of a journal: verify must name each one, with and without a key.

Each test copies one pristine journal (four segments of single-event frames),
changes its files the way an attacker with write access would, and checks the
kind, segment, offset and seq of what ``verify`` reports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import faultkit
except ImportError:  # tests/ is a package, or pytest runs with another rootdir
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import faultkit

from journal import InvalidArgument, Journal

KEY = b"0123456789abcdef-tamper-test-key"
OTHER_KEY = b"fedcba9876543210-another-key-xx"
EVENTS = 70
#: The console script installed next to this interpreter.
JOURNAL_CLI = str(Path(sys.executable).with_name("journal"))


@pytest.fixture(scope="module", params=[None, KEY], ids=["unkeyed", "keyed"])
def pristine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, bytes | None]:
    """A journal of several segments, and the key it was written with."""
    key = request.param
    directory = tmp_path_factory.mktemp("pristine") / "journal"
    with Journal.open(
        directory, durability="flush", segment_max_bytes=4096, key=key
    ) as j:
        for n in range(EVENTS):
            j.append(faultkit.make_event("w", n))
    assert len(faultkit.segment_paths(directory)) >= 3
    return directory, key


@pytest.fixture
def journal_copy(
    tmp_path: Path, pristine: tuple[Path, bytes | None]
) -> tuple[Path, bytes | None]:
    """A fresh copy of the pristine journal for one test to damage."""
    source, key = pristine
    target = tmp_path / "journal"
    shutil.copytree(source, target)
    return target, key


def problems(
    directory: Path, key: bytes | None, **options: object
) -> list[tuple[object, ...]]:
    """Verify the journal read-only (as ``journal verify`` does) and list the problems."""
    with Journal.open(directory, readonly=True, key=key) as journal:
        report = journal.verify(**options)  # type: ignore[arg-type]
    return [(p.kind, p.segment, p.offset, p.seq) for p in report.problems]


def middle_segment(directory: Path) -> faultkit.SegmentFile:
    return faultkit.load_segment(faultkit.segment_paths(directory)[1])


def test_pristine_journal_verifies(journal_copy: tuple[Path, bytes | None]) -> None:
    directory, key = journal_copy
    assert problems(directory, key) == []


def test_edited_event_is_modified(journal_copy: tuple[Path, bytes | None]) -> None:
    directory, key = journal_copy
    segment = middle_segment(directory)
    frame = segment.frames[3]

    def change_actor(events: list[faultkit.AuditEvent]) -> None:
        events[0].actor = "mallory"

    faultkit.rewrite_frame(segment.path, frame.offset, change_actor)
    assert problems(directory, key) == [
        ("modified", segment.path.name, frame.offset, frame.first_seq)
    ]


def test_recomputed_chain(journal_copy: tuple[Path, bytes | None]) -> None:
    """An attacker without the key edits an event and recomputes the unkeyed chain."""
    directory, key = journal_copy
    with Journal.open(directory, readonly=True, key=key) as journal:
        checkpoint = journal.checkpoint()
    segment = middle_segment(directory)
    frame = segment.frames[3]

    def change_actor(events: list[faultkit.AuditEvent]) -> None:
        events[0].actor = "mallory"

    faultkit.rewrite_frame(segment.path, frame.offset, change_actor)
    faultkit.relink(directory, None, segment.path.name, frame.offset)
    found = problems(directory, key)
    if key is None:
        # Documented limit: without a key a recomputed chain is consistent, and only
        # a checkpoint stored elsewhere shows the change.
        assert found == []
        assert problems(directory, key, checkpoint=checkpoint) == [
            ("modified", None, None, checkpoint["seq"])
        ]
    else:
        assert found, "a chain recomputed without the key verified clean"
        assert found[0] == (
            "modified",
            segment.path.name,
            frame.offset,
            frame.first_seq,
        )
        assert {p[0] for p in found} == {"modified"}


def test_deleted_frame(journal_copy: tuple[Path, bytes | None]) -> None:
    directory, key = journal_copy
    segment = middle_segment(directory)
    frame = segment.frames[3]
    blobs = [segment.frame_bytes(f) for f in segment.frames if f is not frame]
    faultkit.write_segment(segment.path, segment.header_bytes, blobs)
    assert problems(directory, key) == [
        ("deleted", segment.path.name, frame.offset, frame.first_seq)
    ]


def test_duplicated_frame_is_inserted(journal_copy: tuple[Path, bytes | None]) -> None:
    directory, key = journal_copy
    segment = middle_segment(directory)
    frame = segment.frames[3]
    blobs = []
    for f in segment.frames:
        blobs.append(segment.frame_bytes(f))
        if f is frame:
            blobs.append(segment.frame_bytes(f))
    faultkit.write_segment(segment.path, segment.header_bytes, blobs)
    assert problems(directory, key) == [
        ("inserted", segment.path.name, frame.end, frame.first_seq)
    ]


def test_swapped_frames_are_reordered(journal_copy: tuple[Path, bytes | None]) -> None:
    directory, key = journal_copy
    segment = middle_segment(directory)
    first, second = segment.frames[3], segment.frames[4]
    blobs = [segment.frame_bytes(f) for f in segment.frames]
    blobs[3], blobs[4] = blobs[4], blobs[3]
    faultkit.write_segment(segment.path, segment.header_bytes, blobs)
    found = problems(directory, key)
    # Frame `second` now sits at first.offset and `first` right after it.
    places = {
        (first.offset, second.first_seq),
        (first.offset + second.end - second.offset, first.first_seq),
    }
    assert found, "swapped frames verified clean"
    assert {p[0] for p in found} == {"reordered"}, found
    assert all(p[1] == segment.path.name for p in found)
    assert all((p[2], p[3]) in places for p in found), found


def test_removed_middle_segment(journal_copy: tuple[Path, bytes | None]) -> None:
    directory, key = journal_copy
    removed = faultkit.segment_paths(directory)[1]
    following = faultkit.segment_paths(directory)[2]
    first_seq = faultkit.load_segment(removed).header.first_seq
    removed.unlink()
    faultkit.drop_index(removed)
    found = problems(directory, key)
    assert len(found) == 1, found
    kind, name, _, seq = found[0]
    assert kind == "segment missing"
    assert name in (removed.name, following.name)
    assert seq == first_seq


def cut_newest_frames(directory: Path, frames: int) -> int:
    """Cut the last *frames* frames of the newest segment at a frame boundary.

    Returns the seq of the last event left.
    """
    newest = faultkit.load_segment(faultkit.segment_paths(directory)[-1])
    keep = newest.frames[-frames - 1]
    newest.path.write_bytes(newest.data[: keep.end])
    faultkit.drop_index(newest.path)
    return keep.last_seq


def test_cut_tail_found_only_with_checkpoint(
    journal_copy: tuple[Path, bytes | None],
) -> None:
    directory, key = journal_copy
    with Journal.open(directory, readonly=True, key=key) as journal:
        checkpoint = journal.checkpoint()
    assert checkpoint["seq"] == EVENTS
    last_left = cut_newest_frames(directory, 2)
    # Documented limit: the chain alone cannot show that its newest frames are gone.
    assert problems(directory, key) == []
    assert problems(directory, key, checkpoint=checkpoint) == [
        ("truncated", None, None, last_left + 1)
    ]


def test_cut_tail_checkpoint_cli(
    journal_copy: tuple[Path, bytes | None], tmp_path: Path
) -> None:
    directory, key = journal_copy
    key_args = []
    if key is not None:
        key_file = tmp_path / "journal.key"
        key_file.write_bytes(key)
        key_args = ["--key-file", str(key_file)]
    head = tmp_path / "head.json"
    checkpoint = journal_cli("checkpoint", str(directory))
    assert checkpoint.returncode == 0, checkpoint.stderr
    head.write_text(checkpoint.stdout)
    last_left = cut_newest_frames(directory, 2)
    clean = journal_cli("verify", str(directory), *key_args)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    cut = journal_cli(
        "verify", str(directory), *key_args, "--checkpoint", str(head), "--json"
    )
    assert cut.returncode == 1, cut.stdout + cut.stderr
    lines = [json.loads(line) for line in cut.stdout.splitlines()]
    found = [(x["kind"], x["seq"]) for x in lines if x["type"] == "problem"]
    assert found == [("truncated", last_left + 1)]


def test_cut_inside_newest_frame_is_truncated(
    journal_copy: tuple[Path, bytes | None],
) -> None:
    """A read-only verify (no recovery) reports an incomplete final frame."""
    directory, key = journal_copy
    newest = faultkit.load_segment(faultkit.segment_paths(directory)[-1])
    last = newest.frames[-1]
    newest.path.write_bytes(newest.data[: last.offset + 20])
    faultkit.drop_index(newest.path)
    assert problems(directory, key) == [
        ("truncated", newest.path.name, last.offset, last.first_seq)
    ]


def test_wrong_or_missing_key(journal_copy: tuple[Path, bytes | None]) -> None:
    directory, key = journal_copy
    if key is None:
        # Opening an unkeyed journal with a key raises, so that no writer appends
        # keyed links to an unkeyed chain.
        with pytest.raises(InvalidArgument, match="not keyed"):
            Journal.open(directory, key=KEY)
        return
    for readonly in (False, True):
        with pytest.raises(InvalidArgument, match="another key"):
            Journal.open(directory, key=OTHER_KEY, readonly=readonly)
    with pytest.raises(InvalidArgument, match="key"):
        Journal.open(directory)
    with (
        Journal.open(directory, readonly=True) as journal,
        pytest.raises(InvalidArgument, match="pass the key"),
    ):
        journal.verify()


def journal_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the journal command line (without JOURNAL_KEY_FILE) and capture its output."""
    env = faultkit.python_env()
    env.pop("JOURNAL_KEY_FILE", None)
    return subprocess.run(
        [JOURNAL_CLI, *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_wrong_or_missing_key_cli(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal.open(directory, durability="flush", key=KEY) as journal:
        for n in range(10):
            journal.append(faultkit.make_event("w", n))
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(OTHER_KEY)
    right = tmp_path / "right.key"
    right.write_bytes(KEY)

    with_wrong = journal_cli("verify", str(directory), "--key-file", str(wrong))
    assert with_wrong.returncode == 1
    assert "another key" in with_wrong.stderr
    without = journal_cli("verify", str(directory))
    assert without.returncode == 1
    assert "--key-file" in without.stderr
    with_right = journal_cli("verify", str(directory), "--key-file", str(right))
    assert with_right.returncode == 0, with_right.stdout + with_right.stderr
    assert with_right.stdout.startswith("OK")


# Appends to the journal argv[1] for argv[2] seconds in flush mode with 1 MiB
# segments, writing "<seq> <id>" to argv[3] after each append. Every second append
# is a batch of 16 large events, a write of about 140 KiB that takes long enough to
# be caught half done. Prints "ready" once the journal is open and exits normally.
APPEND_LOOP = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[4])
    import faultkit
    from journal import Journal
    journal = Journal.open(sys.argv[1], durability="flush", segment_max_bytes=1 << 20)
    ack_fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print("ready", flush=True)
    deadline = time.monotonic() + float(sys.argv[2])
    n = 0
    while time.monotonic() < deadline:
        if n % 2:
            every = faultkit.LARGE_EVERY
            numbers = [(n * 16 + i) * every + every - 1 for i in range(16)]
            events = [faultkit.make_event("bulk", number) for number in numbers]
            journal.append_many(events)
        else:
            events = [journal.append(faultkit.make_event("live", n))]
        acks = "".join(f"{e.seq} {e.id}\\n" for e in events)
        os.write(ack_fd, acks.encode())
        n += 1
    journal.close()
    """
)


def test_verify_while_another_process_appends(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with Journal.open(directory, durability="flush", segment_max_bytes=4096) as journal:
        journal.append(faultkit.make_event("seed", 0))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            APPEND_LOOP,
            str(directory),
            "2.5",
            str(tmp_path / "live.ack"),
            str(Path(faultkit.__file__).parent),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=faultkit.python_env(),
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready"

    findings = []
    runs = 0
    writable = Journal.open(directory, durability="flush", lock_timeout=30)
    readonly = Journal.open(directory, readonly=True)
    try:
        while writer.poll() is None:
            for journal in (writable, readonly):
                report = journal.verify()
                runs += 1
                findings += [
                    (p.kind, p.segment, p.offset, p.message) for p in report.problems
                ]
            if runs % 20 == 0:
                cli = journal_cli("verify", str(directory))
                if cli.returncode != 0:
                    findings.append(("cli", cli.stdout, cli.stderr))
    finally:
        writable.close()
        readonly.close()
    _, stderr = writer.communicate(timeout=60)

    assert writer.returncode == 0, stderr[-3000:]
    acked = faultkit.read_acks(tmp_path / "live.ack")
    assert len(acked) > 100, "the writer appended too little to test anything"
    assert runs >= 6
    assert findings == []
    violations, _ = faultkit.check_journal(directory, {**acked, 1: "seed-0"})
    assert violations == []


# Appends five events to the journal argv[1]. Then, holding the write lock, it writes
# the first half of a valid sixth frame, as a writer in the middle of its pwrite
# would, and prints "half". After a line on stdin it writes the second half and exits.
HALF_WRITER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    import faultkit
    from journal import Journal, chain
    from journal.segment import KIND_EVENTS
    journal = Journal.open(sys.argv[1], durability="flush")
    for n in range(5):
        journal.append(faultkit.make_event("w", n))
    path = faultkit.segment_paths(sys.argv[1])[-1]
    with journal.lock():
        last = faultkit.load_segment(path).frames[-1]
        raw = faultkit.encode_payload([faultkit.make_event("w", 5)])
        link = chain.next_link(None, last.link, KIND_EVENTS, 1, 6, raw)
        frame = faultkit.build_frame(KIND_EVENTS, 1, 6, raw, link)
        with open(path, "ab") as fh:
            fh.write(frame[: len(frame) // 2])
        print("half", flush=True)
        sys.stdin.readline()
        with open(path, "ab") as fh:
            fh.write(frame[len(frame) // 2 :])
    journal.close()
    """
)


def test_readonly_verify_during_write(tmp_path: Path) -> None:
    """A frame half written under the write lock is work in progress, not damage."""
    directory = tmp_path / "journal"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HALF_WRITER,
            str(directory),
            str(Path(faultkit.__file__).parent),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=faultkit.python_env(),
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "half"
        during = problems(directory, None)
        cli = journal_cli("verify", str(directory))
    finally:
        _, stderr = writer.communicate(input="\n", timeout=60)
    assert writer.returncode == 0, stderr[-3000:]
    assert during == []
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert problems(directory, None) == []
    with Journal.open(directory, readonly=True) as journal:
        assert [e.id for e in journal.read()] == [f"w-{n}" for n in range(6)]
