"""Damaged segment bytes: torn tails, bit flips, damaged frames and malformed payloads.

Every case checks the same promises: the journal opens, no read returns an event
that differs from what was written (a read may raise CorruptSegment instead),
verify() reports the damage, events outside the damage stay readable, and appends
continue. Malformed payloads run in a child limited to 1 GiB of address space.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

try:
    import faultkit
except ImportError:  # tests/ is a package, or pytest runs with another rootdir
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import faultkit

from journal import CorruptSegment, Journal
from journal.segment import FRAME_HEADER, KIND_EVENTS, KIND_SEAL, pack_frame

#: Address-space limit of the child that decodes malformed frames.
CHILD_MEMORY_LIMIT = 1 << 30


def write_journal(
    directory: Path, *, segment_max_bytes: int = 4096, events: int = 60
) -> None:
    """Write *events* events (some in multi-event frames) to a new journal."""
    with Journal.open(
        directory, durability="flush", segment_max_bytes=segment_max_bytes
    ) as j:
        n = 0
        while n < events:
            if n % 7 == 3:
                batch = [
                    faultkit.make_event("w", n + k) for k in range(min(3, events - n))
                ]
                j.append_many(batch)
                n += len(batch)
            else:
                j.append(faultkit.make_event("w", n))
                n += 1


def read_all(journal: Journal, after_seq: int = 0) -> list[Any]:
    """Read events until the end or a CorruptSegment; return [events, error or None]."""
    events = []
    try:
        for event in journal.read(after_seq=after_seq):
            events.append(event)
    except CorruptSegment as err:
        return [events, err]
    return [events, None]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal of three sealed segments and an active one, never modified."""
    directory = tmp_path_factory.mktemp("pristine") / "journal"
    write_journal(directory, events=80)
    assert len(faultkit.segment_paths(directory)) >= 4
    return directory


@pytest.fixture(scope="module")
def written(pristine: Path) -> dict[int, Any]:
    """The events of *pristine* by seq."""
    with Journal.open(pristine, readonly=True) as journal:
        return {e.seq: e for e in journal.read()}


# --- torn tails ---------------------------------------------------------------------


def test_truncate_newest_at_every_offset(
    tmp_path: Path,
    pristine: Path,
    written: dict[int, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    newest = faultkit.segment_paths(pristine)[-1]
    segment = faultkit.load_segment(newest)
    assert len(segment.frames) >= 3
    before_last, last = segment.frames[-2], segment.frames[-1]
    assert last.end == len(segment.data)
    checked = 0
    for cut in range(before_last.offset, last.end):
        work = tmp_path / f"cut-{cut}"
        shutil.copytree(pristine, work)
        path = work / newest.name
        path.write_bytes(segment.data[:cut])
        if cut % 2:
            faultkit.drop_index(path)
        # The frame the cut lands in is incomplete and must go; everything before stays.
        torn = before_last if cut < last.offset else last
        kept_seq = torn.first_seq - 1
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="journal"):
            journal = Journal.open(work, durability="flush")
        try:
            events = list(journal.read())
            assert [e.seq for e in events] == list(range(1, kept_seq + 1)), (
                f"cut at {cut}"
            )
            for event in events:
                assert faultkit.event_fields(event) == faultkit.event_fields(
                    written[event.seq]
                )
            side = Path(f"{path}.torn-{torn.offset}")
            warnings = [
                r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            ]
            if cut == torn.offset:
                assert not side.exists(), f"cut at frame boundary {cut}"
                assert warnings == [], f"cut at frame boundary {cut}"
            else:
                assert side.read_bytes() == segment.data[torn.offset : cut], (
                    f"cut at {cut}"
                )
                assert path.stat().st_size == torn.offset, f"cut at {cut}"
                assert len(warnings) == 1, f"cut at {cut}: {warnings}"
                assert str(path) in warnings[0]
                assert f"offset {torn.offset}" in warnings[0]
                assert f"{cut - torn.offset} bytes" in warnings[0]
            event = journal.append(faultkit.make_event("after", cut))
            assert event.seq == kept_seq + 1, f"cut at {cut}"
            assert journal.verify().problems == [], f"cut at {cut}"
        finally:
            journal.close()
        shutil.rmtree(work)
        checked += 1
    assert checked == last.end - before_last.offset


# --- bit flips in sealed segments -------------------------------------------------------


def test_bit_flips_in_sealed_segments(
    tmp_path: Path, pristine: Path, written: dict[int, Any]
) -> None:
    rng = random.Random(20240501)
    sealed = faultkit.segment_paths(pristine)[:2]
    originals = {p.name: p.read_bytes() for p in sealed}
    work = tmp_path / "journal"
    shutil.copytree(pristine, work)
    trials = faultkit.trial_count(1000)
    failures: dict[str, list[str]] = {}

    def note(kind: str, detail: str) -> None:
        failures.setdefault(kind, []).append(detail)

    for trial in range(trials):
        name = sealed[trial % len(sealed)].name
        data = originals[name]
        bit = rng.randrange(len(data) * 8)
        where = f"{name} byte {bit // 8} bit {bit % 8}"
        (work / name).write_bytes(faultkit.flip_bit(data, bit))
        index = (work / name).with_suffix(".idx")
        if trial % 2:
            index.unlink(missing_ok=True)
        else:
            shutil.copyfile((pristine / name).with_suffix(".idx"), index)
        try:
            journal = Journal.open(work, readonly=True)
        except CorruptSegment as err:
            note("journal does not open", f"{where}: {err}")
            (work / name).write_bytes(data)
            continue
        try:
            report = journal.verify()
            if report.ok:
                note("verify misses the flip", where)
            for read in (
                lambda: journal.read(),
                lambda: journal.query(actor="actor-3"),
            ):
                try:
                    for event in read():
                        if faultkit.event_fields(event) != faultkit.event_fields(
                            written[event.seq]
                        ):
                            note(
                                "read returns a changed event",
                                f"{where}: seq {event.seq}",
                            )
                except CorruptSegment:
                    pass
                except Exception as err:  # anything but CorruptSegment is a finding
                    note(
                        "read raises another error",
                        f"{where}: {faultkit.describe_exception(err)}",
                    )
        finally:
            journal.close()
        (work / name).write_bytes(data)
    summary = {kind: f"{len(v)} trials, e.g. {v[:3]}" for kind, v in failures.items()}
    assert failures == {}, f"{trials} flips: {json.dumps(summary, indent=1)}"


def test_damaged_header_of_sealed_segment(
    tmp_path: Path, pristine: Path, written: dict[int, Any]
) -> None:
    """A damaged old header costs that segment's events, not the journal."""
    work = tmp_path / "journal"
    shutil.copytree(pristine, work)
    second = faultkit.segment_paths(work)[1]
    data = second.read_bytes()
    second.write_bytes(faultkit.flip_bit(data, 8 * 20))  # inside first_seq
    faultkit.drop_index(second)
    lost = faultkit.load_segment(pristine / second.name)
    lost_seqs = {e.seq for f in lost.events_frames() for e in lost.events(f)}

    with Journal.open(work, durability="flush") as journal:
        events, error = read_all(journal)
        assert [e.seq for e in events] == sorted(
            s for s in written if s < min(lost_seqs)
        )
        assert isinstance(error, CorruptSegment)
        assert error.path == str(second)
        later = [e.seq for e in journal.read(after_seq=max(lost_seqs))]
        assert later == sorted(s for s in written if s > max(lost_seqs))
        report = journal.verify()
        assert [p.segment for p in report.problems][:1] == [second.name]
        assert journal.append(faultkit.make_event("after", 0)).seq == max(written) + 1


# --- a damaged frame in the middle ------------------------------------------------------


@pytest.mark.parametrize("index", ["stored", "rebuilt"])
def test_damaged_middle_frame(tmp_path: Path, index: str) -> None:
    """One flipped payload byte in the middle of the active segment."""
    directory = tmp_path / "journal"
    write_journal(directory, segment_max_bytes=1 << 20, events=40)
    path = faultkit.segment_paths(directory)[0]
    segment = faultkit.load_segment(path)
    frame = segment.frames[len(segment.frames) // 2]
    data = bytearray(segment.data)
    data[frame.offset + FRAME_HEADER + 3] ^= 0x10
    path.write_bytes(bytes(data))
    if index == "rebuilt":
        faultkit.drop_index(path)

    with Journal.open(directory, durability="flush") as journal:
        before, error = read_all(journal)
        assert isinstance(error, CorruptSegment)
        assert error.path == str(path)
        assert error.offset == frame.offset
        assert (error.first_seq, error.last_seq) == (frame.first_seq, frame.last_seq)
        assert [e.seq for e in before] == list(range(1, frame.first_seq))
        after, error_after = read_all(journal, after_seq=error.last_seq)
        assert error_after is None
        assert [e.seq for e in after] == list(range(frame.last_seq + 1, 41))
        for event in before + after:
            assert faultkit.event_mismatch(event) is None
        assert journal.append(faultkit.make_event("after", 0)).seq == 41
        report = journal.verify()
    assert [(p.kind, p.segment, p.offset, p.seq) for p in report.problems] == [
        ("checksum failure", path.name, frame.offset, frame.first_seq)
    ]


# --- malformed frames with a valid CRC, decoded under a memory limit ---------------------


def _zstd(raw: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(raw)


def _event_bytes(n: int) -> bytes:
    from journal import codec

    return codec.encode_event(faultkit.make_event("w", n))


def malformed_frame(case: str, frame: Any, segment: faultkit.SegmentFile) -> bytes:
    """Return the bytes that replace *frame* for one malformed-frame case."""
    raw = segment.raw_payload(frame)
    count, first, link = frame.count, frame.first_seq, frame.link

    if case == "zstd frame ends early":
        stored = _zstd(raw)
        return pack_frame(
            KIND_EVENTS, 1, count, first, len(raw), link, stored[: len(stored) // 2]
        )

    if case == "stored length far past the file":
        blob = bytearray(segment.frame_bytes(frame))
        struct.pack_into("<I", blob, 16, 0x7FFFFFF0)
        return bytes(blob)

    if case == "raw length far over the limit":
        return pack_frame(KIND_EVENTS, 1, count, first, 0xFFFFFFF0, link, _zstd(raw))

    # The remaining cases re-encode a valid zstd frame around a malformed payload.
    if case == "array claims 2**32-1 events":
        body = b"\xdd\xff\xff\xff\xff" + raw[5:]
        return pack_frame(KIND_EVENTS, 1, count, first, len(body), link, _zstd(body))

    if case == "map claims 2**32-1 keys":
        # The first event's map header (fixmap, 0x89 for nine fields) claims 4 billion keys.
        assert raw[5] == 0x89
        body = raw[:5] + b"\xdf\xff\xff\xff\xff" + raw[6:]
        return pack_frame(KIND_EVENTS, 1, count, first, len(body), link, _zstd(body))

    if case == "string claims 4 GiB":
        body = raw[:5] + b"\x81\xa6action\xdb\xff\xff\xff\xf0" + b"x" * 32
        return pack_frame(KIND_EVENTS, 1, count, first, len(body), link, _zstd(body))

    if case == "metadata nested 100000 deep":
        event = _event_bytes(first)
        cut = event.index(b"\xa8metadata") + len(b"\xa8metadata")
        nested = (
            event[:cut] + b"\x81\xa1x" + b"\x91" * 100_000 + b"\xc0" + b"\xa3seq\xc0"
        )
        body = raw[:5] + nested + raw[5 + len(event) :]
        return pack_frame(KIND_EVENTS, 1, count, first, len(body), link, _zstd(body))

    if case == "64 MiB of zeros":
        body = struct.pack(">BI", 0xDD, count).ljust(64 << 20, b"\x00")
        return pack_frame(KIND_EVENTS, 1, count, first, len(body), link, _zstd(body))

    raise ValueError(case)


MALFORMED_CASES = [
    "zstd frame ends early",
    "stored length far past the file",
    "raw length far over the limit",
    "array claims 2**32-1 events",
    "map claims 2**32-1 keys",
    "string claims 4 GiB",
    "metadata nested 100000 deep",
    "64 MiB of zeros",
]

# Opens the journal in argv[1] under an address-space limit, reads past the damage,
# verifies and appends, and prints what happened as one JSON object.
CHECK_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, traceback
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path.insert(0, sys.argv[3])
    import faultkit
    from journal import CorruptSegment, Journal
    out = {}
    try:
        with Journal.open(sys.argv[1], durability="flush") as journal:
            seqs = []
            try:
                for event in journal.read():
                    assert faultkit.event_mismatch(event) is None, event.seq
                    seqs.append(event.seq)
            except CorruptSegment as err:
                out["error"] = [err.path, err.offset, err.first_seq, err.last_seq, str(err)]
                for event in journal.read(after_seq=err.last_seq):
                    assert faultkit.event_mismatch(event) is None, event.seq
                    seqs.append(event.seq)
            out["seqs"] = seqs
            actors = [f"actor-{n}" for n in range(7)]
            for name, call in (
                ("query", lambda: list(journal.query(actor=actors))),
                ("recent", lambda: journal.recent(100, actor=actors)),
            ):
                try:
                    call()
                except CorruptSegment as err:
                    out[name] = [err.offset, err.first_seq, err.last_seq]
            report = journal.verify()
            out["problems"] = [[p.kind, p.segment, p.offset, p.seq] for p in report.problems]
            out["appended"] = journal.append(faultkit.make_event("after", 0)).seq
    except BaseException as err:
        out["unexpected"] = traceback.format_exc(limit=6)
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("case", MALFORMED_CASES)
def test_malformed_frame_bounded(tmp_path: Path, case: str) -> None:
    directory = tmp_path / "journal"
    write_journal(directory, events=60)
    paths = faultkit.segment_paths(directory)
    path = paths[1]  # sealed, with segments before and after it
    segment = faultkit.load_segment(path)
    frame = segment.events_frames()[1]
    blobs = [
        malformed_frame(case, f, segment) if f is frame else segment.frame_bytes(f)
        for f in segment.frames
    ]
    faultkit.write_segment(path, segment.header_bytes, blobs)
    assert segment.frames[-1].kind == KIND_SEAL

    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECK_SCRIPT,
            str(directory),
            str(CHILD_MEMORY_LIMIT),
            str(Path(faultkit.__file__).parent),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=faultkit.python_env(),
    )
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert "unexpected" not in out, out["unexpected"]
    err_path, err_offset, err_first, err_last, message = out["error"]
    assert err_path == str(path)
    assert err_offset == frame.offset
    assert err_first <= frame.first_seq
    assert frame.last_seq <= err_last
    assert str(frame.offset) in message
    assert out["seqs"] == [
        s for s in range(1, 61) if not frame.first_seq <= s <= frame.last_seq
    ]
    # Filtered reads decode summaries first; they stop at the same frame.
    for name in ("query", "recent"):
        offset, first, last = out[name]
        assert offset == frame.offset, name
        assert first <= frame.last_seq, name
        assert frame.first_seq <= last, name
    assert out["problems"], "verify missed the malformed frame"
    kind, problem_segment, problem_offset, _ = out["problems"][0]
    assert kind in ("modified", "checksum failure")
    assert (problem_segment, problem_offset) == (path.name, frame.offset)
    assert out["appended"] == 61
