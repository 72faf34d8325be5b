"""Fault-injection helpers for the crash, corruption, tamper, disk-full and retention tests.

The module has three parts:

* deterministic events: :func:`make_event` builds an event whose every field follows
  from its id, so a checker can rebuild what a killed writer wrote from the id alone;
* segment surgery: read a segment's frames, re-encode a frame with changed events
  and a valid CRC-32C, recompute the hash chain as an attacker would, flip bits;
* the kill -9 campaign: writer processes append and record each acknowledged event
  in an ack file, the campaign kills them at random moments and checks the journal.

Run ``python tests/faultkit.py writer --help`` for the writer used by exec'd children.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import zstandard

from journal import chain, codec
from journal.errors import JournalError
from journal.event import AuditEvent
from journal.journal import Journal
from journal.segment import (
    FLAG_DICT,
    FLAG_ZSTD,
    KIND_EVENTS,
    DamagedRange,
    Frame,
    SegmentHeader,
    pack_frame,
    pack_header,
    read_header,
    scan_frames,
)

#: Event times start here; an event's time is this plus its number in milliseconds.
BASE_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

#: Every 97th event carries 8 KiB of random bytes as 16 KiB of hex text, which zstd
#: only halves, so some frames span several pages and a kill can tear their write.
LARGE_EVERY = 97

REPO = Path(__file__).resolve().parents[1]

_ACTIONS = ("login", "logout", "record.read", "record.update", "policy.change")
_OUTCOMES = ("success", "failure", "denied")


# --- deterministic events ---------------------------------------------------------


def make_event(tag: str, n: int) -> AuditEvent:
    """Build event *n* of writer *tag*; its id is ``"{tag}-{n}"``."""
    metadata: dict[str, Any] = {
        "n": n,
        "tag": tag,
        "pad": "p" * (n % 61),
        "nested": {"list": [n, str(n), n % 2 == 0, None], "ratio": n / 7},
    }
    if n % LARGE_EVERY == LARGE_EVERY - 1:
        metadata["blob"] = random.Random(f"{tag}/{n}").randbytes(8192).hex()
    return AuditEvent(
        id=f"{tag}-{n}",
        actor=f"actor-{n % 7}",
        action=_ACTIONS[n % len(_ACTIONS)],
        target=None if n % 5 == 0 else f"object/{n}",
        outcome=_OUTCOMES[n % len(_OUTCOMES)],
        time=BASE_TIME + timedelta(milliseconds=n),
        source=tag,
        metadata=metadata,
    )


def expected_event(event_id: str) -> AuditEvent:
    """Rebuild the event that :func:`make_event` made with this id."""
    tag, _, number = event_id.rpartition("-")
    return make_event(tag, int(number))


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """Return every stored field of *event* (``seq`` excluded) for comparison."""
    return {
        "id": event.id,
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "time": event.time.astimezone(timezone.utc),
        "source": event.source,
        "metadata": event.metadata,
    }


def event_mismatch(event: AuditEvent) -> str | None:
    """Describe how *event* differs from the event its id names, or return ``None``."""
    try:
        written = event_fields(expected_event(event.id))
    except ValueError:
        return f"seq {event.seq}: id {event.id!r} was never written by a test writer"
    stored = event_fields(event)
    for name, value in written.items():
        if stored[name] != value:
            return (
                f"seq {event.seq} id {event.id}: field {name} is {stored[name]!r:.80}, "
                f"written as {value!r:.80}"
            )
    return None


# --- segment surgery --------------------------------------------------------------


@dataclass
class SegmentFile:
    """A segment read from disk: header, intact frames and its bytes."""

    path: Path
    header: SegmentHeader
    data: bytes
    frames: list[Frame]

    @property
    def header_bytes(self) -> bytes:
        """The header (and dictionary) bytes that precede the first frame."""
        return self.data[: self.header.header_len]

    def frame_bytes(self, frame: Frame) -> bytes:
        """The bytes of *frame* as stored."""
        return self.data[frame.offset : frame.end]

    def frame_at(self, offset: int) -> Frame:
        """Return the frame that starts at *offset*."""
        for frame in self.frames:
            if frame.offset == offset:
                return frame
        raise KeyError(f"no frame starts at offset {offset} of {self.path}")

    def events_frames(self) -> list[Frame]:
        """Return the frames of kind events (every frame but the seal frame)."""
        return [f for f in self.frames if f.kind == KIND_EVENTS]

    def raw_payload(self, frame: Frame) -> bytes:
        """Return the decompressed payload of *frame*."""
        if not frame.flags & FLAG_ZSTD:
            return frame.stored
        decompressor = codec.Decompressor(self.header.dictionary)
        return decompressor.decompress(
            frame.stored, frame.raw_len, bool(frame.flags & FLAG_DICT)
        )

    def events(self, frame: Frame) -> list[AuditEvent]:
        """Decode the events of *frame*, with their seqs."""
        events = codec.decode_payload(self.raw_payload(frame))
        for i, event in enumerate(events):
            event.seq = frame.first_seq + i
        return events


def load_segment(path: str | os.PathLike[str]) -> SegmentFile:
    """Read a segment; raise AssertionError if any stretch of it is damaged."""
    path = Path(path)
    data = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        header = read_header(fd, str(path), len(data))
        frames: list[Frame] = []
        for item in scan_frames(fd, header.header_len, len(data), header.first_seq - 1):
            if isinstance(item, DamagedRange):
                raise AssertionError(
                    f"{path} is damaged at offset {item.offset}: {item.reason}"
                )
            frames.append(item)
    finally:
        os.close(fd)
    return SegmentFile(path, header, data, frames)


def segment_paths(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the segment files of a journal directory, oldest first."""
    return sorted(Path(directory).glob("[0-9]" * 20 + ".seg"))


def newest_has_dictionary(directory: str | os.PathLike[str]) -> bool:
    """Return whether the newest segment's header contains a zstd dictionary."""
    paths = segment_paths(directory)
    return bool(paths) and bool(load_segment(paths[-1]).header.dictionary)


def drop_index(segment_path: str | os.PathLike[str]) -> None:
    """Remove the index sidecar of a segment, so the next open rebuilds it."""
    Path(segment_path).with_suffix(".idx").unlink(missing_ok=True)


def encode_payload(events: Iterable[AuditEvent]) -> bytes:
    """Return the raw frame payload (msgpack array) of *events*, as a writer builds it."""
    encoded = []
    for event in events:
        copy = AuditEvent(**{**event_fields(event), "seq": None})
        encoded.append(codec.encode_event(copy))
    return codec.build_payload(encoded)


def build_frame(
    kind: int,
    count: int,
    first_seq: int,
    raw: bytes,
    link: bytes,
    *,
    compress: bool = True,
) -> bytes:
    """Return one frame with a valid CRC; the payload is zstd-compressed without dictionary."""
    stored, flags = raw, 0
    if compress:
        packed = zstandard.ZstdCompressor(level=3).compress(raw)
        if len(packed) < len(raw):
            stored, flags = packed, FLAG_ZSTD
    return pack_frame(kind, flags, count, first_seq, len(raw), link, stored)


def write_segment(
    path: str | os.PathLike[str], header_bytes: bytes, blobs: Iterable[bytes]
) -> None:
    """Replace a segment file with a header and frame bytes, and drop its stale index."""
    Path(path).write_bytes(header_bytes + b"".join(blobs))
    drop_index(path)


def rewrite_frame(
    path: str | os.PathLike[str],
    offset: int,
    mutate: Callable[[list[AuditEvent]], None],
) -> int:
    """Change the events of the frame at *offset* and fix up its CRC, keeping its link.

    This is a careless edit: the chain link stays the one computed for the original
    events. Returns the length of the new frame. Later frames keep their bytes.
    """
    segment = load_segment(path)
    target = segment.frame_at(offset)
    events = segment.events(target)
    mutate(events)
    raw = encode_payload(events)
    blob = build_frame(KIND_EVENTS, len(events), target.first_seq, raw, target.link)
    blobs = [blob if f is target else segment.frame_bytes(f) for f in segment.frames]
    write_segment(path, segment.header_bytes, blobs)
    return len(blob)


def relink(
    directory: str | os.PathLike[str],
    key: bytes | None,
    start: str | None = None,
    offset: int = 0,
) -> None:
    """Recompute every chain link, and every header's prev_link, as an attacker would.

    Links are computed with *key* (``None``: the unkeyed chain, all that an attacker
    without the key can compute). Frames before the one at *offset* of the segment
    named *start* (all segments when *start* is ``None``) keep their bytes, and the
    last of them seeds the recomputation.
    """
    prev_link = chain.ZERO_LINK
    started = start is None
    for path in segment_paths(directory):
        segment = load_segment(path)
        if not started and path.name != start:
            prev_link = (
                segment.frames[-1].link if segment.frames else segment.header.prev_link
            )
            continue
        header = segment.header
        if started:
            header_bytes = pack_header(
                header.first_seq,
                header.created_ns,
                prev_link,
                header.key_id,
                header.dictionary,
            )
        else:
            header_bytes = segment.header_bytes
            prev_link = header.prev_link
        blobs = []
        for frame in segment.frames:
            if not started and frame.offset < offset:
                blobs.append(segment.frame_bytes(frame))
                prev_link = frame.link
                continue
            started = True
            raw = segment.raw_payload(frame)
            prev_link = chain.next_link(
                key, prev_link, frame.kind, frame.count, frame.first_seq, raw
            )
            blobs.append(
                pack_frame(
                    frame.kind,
                    frame.flags,
                    frame.count,
                    frame.first_seq,
                    frame.raw_len,
                    prev_link,
                    frame.stored,
                )
            )
        started = True
        write_segment(path, header_bytes, blobs)


def flip_bit(data: bytes, bit: int) -> bytes:
    """Return *data* with bit number *bit* (0 is the low bit of byte 0) inverted."""
    buf = bytearray(data)
    buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf)


# --- checking a journal -------------------------------------------------------------


def describe_exception(error: BaseException) -> str:
    """Return ``Type: message (at file:line in function)`` for the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return f"{type(error).__name__}: {error}{where}"


def check_journal(
    directory: str | os.PathLike[str],
    acked: dict[int, str],
    *,
    key: bytes | None = None,
    first_seq: int = 1,
) -> tuple[list[str], int]:
    """Check a journal against the acknowledged events; return (violations, last seq).

    The journal must open for writing (running crash recovery), every event must be
    one a test writer made, with identical content, seqs must run without gaps from
    *first_seq*, every acknowledged seq must hold its event, and verify() must be clean.
    """
    violations: list[str] = []
    try:
        journal = Journal.open(directory, durability="flush", key=key, lock_timeout=30)
    except Exception as err:  # any failure to open is the finding
        return [f"open failed: {describe_exception(err)}"], 0
    try:
        try:
            events = list(journal.read())
        except Exception as err:
            violations.append(f"read failed: {describe_exception(err)}")
            events = []
        by_seq: dict[int, AuditEvent] = {}
        ids: dict[str, int] = {}
        for position, event in enumerate(events):
            assert event.seq is not None
            if event.seq != first_seq + position:
                violations.append(
                    f"seq gap: event {position} has seq {event.seq}, expected "
                    f"{first_seq + position}"
                )
                break
            if event.id in ids:
                violations.append(
                    f"event {event.id} stored twice, at seq {ids[event.id]} and {event.seq}"
                )
            ids[event.id] = event.seq
            by_seq[event.seq] = event
            problem = event_mismatch(event)
            if problem:
                violations.append(problem)
        for seq, event_id in sorted(acked.items()):
            found = by_seq.get(seq)
            if found is None:
                violations.append(
                    f"acknowledged event {event_id} (seq {seq}) is missing"
                )
            elif found.id != event_id:
                violations.append(
                    f"acknowledged seq {seq} was {event_id}, the journal holds {found.id}"
                )
        try:
            report = journal.verify()
        except Exception as err:
            violations.append(f"verify failed: {describe_exception(err)}")
        else:
            for problem in report.problems:
                violations.append(
                    f"verify: {problem.kind} in {problem.segment} at offset {problem.offset} "
                    f"seq {problem.seq}: {problem.message}"
                )
        last_seq = events[-1].seq if events else first_seq - 1
        assert last_seq is not None
    finally:
        journal.close()
    return violations, last_seq


def read_acks(path: Path) -> dict[int, str]:
    """Parse an ack file: one ``"<seq> <id>"`` line per acknowledged event.

    A final line without its newline was cut by the kill and is ignored.
    """
    acked: dict[int, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return acked
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        seq, event_id = line.split()
        acked[int(seq)] = event_id
    return acked


# --- full disks ------------------------------------------------------------------------


def fill_until_error(
    journal: Journal, free_space: Callable[[], None]
) -> dict[str, Any]:
    """Append large events until a write fails, call *free_space*, then append again.

    Uses the same journal object throughout (no reopening). In batch mode each event
    is followed by ``flush()``, so the write happens in this thread. Returns what
    happened as plain data: the error, the ids acknowledged before it, the ids
    stored while the disk was full and after, verify() problems, content mismatches.
    """
    batch = journal.durability == "batch"
    acked: list[str] = []
    error: BaseException | None = None
    failed = None
    for i in range(2000):
        event = make_event("fill", i * LARGE_EVERY + LARGE_EVERY - 1)
        try:
            journal.append(event)
            if batch:
                journal.flush()
        except Exception as err:  # the first failed write is what the caller checks
            error, failed = err, event.id
            break
        acked.append(event.id)
    stored_while_full = [e.id for e in journal.read()]
    problems_while_full = [p.message for p in journal.verify().problems]
    free_space()
    recovery_error = None
    try:
        journal.append(make_event("after", 0))
        if batch:
            journal.flush()
    except Exception as err:
        recovery_error = describe_exception(err)
    events = list(journal.read())
    return {
        "error": None if error is None else describe_exception(error),
        "error_is_journal_error": isinstance(error, JournalError),
        "acked": acked,
        "failed": failed,
        "stored_while_full": stored_while_full,
        "problems_while_full": problems_while_full,
        "recovery_error": recovery_error,
        "stored": [e.id for e in events],
        "mismatches": [m for m in map(event_mismatch, events) if m],
        "problems": [p.message for p in journal.verify().problems],
    }


# --- writer processes -----------------------------------------------------------------


def writer_loop(
    directory: str,
    tag: str,
    durability: str,
    ack_path: str,
    *,
    seed: int,
    segment_max_bytes: int,
    key: bytes | None = None,
) -> None:
    """Append events until killed, recording each in *ack_path* once it is acknowledged.

    An event counts as acknowledged when ``append``/``append_many`` returned in the
    fsync and flush modes, and when a later ``flush()`` or ``append_many`` returned
    in batch mode (``append_many`` flushes the buffer first).
    """
    rng = random.Random(seed)
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def ack(events: list[AuditEvent]) -> None:
        lines = "".join(f"{e.seq} {e.id}\n" for e in events)
        os.write(ack_fd, lines.encode())

    def open_journal() -> Journal:
        return Journal.open(
            directory,
            durability=durability,  # type: ignore[arg-type]
            segment_max_bytes=segment_max_bytes,
            flush_interval=0.03,
            key=key,
            lock_timeout=60,
        )

    journal = open_journal()
    pending: list[AuditEvent] = []
    n = 0
    while True:
        choice = rng.random()
        if choice < 0.02:
            # Only large events: a write of a few hundred KiB spans many pages, so a
            # kill can tear it.
            first = n + LARGE_EVERY - 1 - n % LARGE_EVERY
            numbers = [first + i * LARGE_EVERY for i in range(rng.randint(8, 24))]
            n = numbers[-1] + 1
            events = [make_event(tag, number) for number in numbers]
            journal.append_many(events)
            ack([*pending, *events])
            pending = []
        elif choice < 0.15:
            events = [make_event(tag, n + i) for i in range(rng.randint(2, 6))]
            n += len(events)
            journal.append_many(events)
            ack([*pending, *events])
            pending = []
        elif choice < 0.16:
            journal.close()
            ack(pending)
            pending = []
            journal = open_journal()
        else:
            event = make_event(tag, n)
            n += 1
            journal.append(event)
            if durability == "batch":
                pending.append(event)
            else:
                ack([event])
        if durability == "batch" and (len(pending) > 20 or rng.random() < 0.1):
            journal.flush()
            ack(pending)
            pending = []


def fork_writer(
    directory: str,
    tag: str,
    durability: str,
    ack_path: str,
    *,
    seed: int,
    segment_max_bytes: int,
    key: bytes | None = None,
) -> int:
    """Start :func:`writer_loop` in a forked child; return its pid.

    The caller must not hold the journal open. The child never returns into the
    caller's code: it leaves through ``os._exit`` (status 70 after an exception).
    """
    pid = os.fork()
    if pid:
        return pid
    status = 70
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        writer_loop(
            directory,
            tag,
            durability,
            ack_path,
            seed=seed,
            segment_max_bytes=segment_max_bytes,
            key=key,
        )
    except BaseException as err:
        Path(ack_path + ".error").write_text(describe_exception(err))
    finally:
        os._exit(status)


def exec_writer(
    directory: str,
    tag: str,
    durability: str,
    ack_path: str,
    *,
    seed: int,
    segment_max_bytes: int,
) -> subprocess.Popen[bytes]:
    """Start :func:`writer_loop` in a new interpreter (``python faultkit.py writer``)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "writer",
        "--dir",
        directory,
        "--tag",
        tag,
        "--durability",
        durability,
        "--ack",
        ack_path,
        "--seed",
        str(seed),
        "--segment-max-bytes",
        str(segment_max_bytes),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=python_env()
    )


def python_env() -> dict[str, str]:
    """Return an environment in which a child python imports this checkout first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def trial_count(default: int) -> int:
    """Scale *default* by ``JOURNAL_STRESS_TRIALS`` (a total for the default run).

    With the variable unset the default applies; with it set, each campaign runs
    ``default * JOURNAL_STRESS_TRIALS / 200`` trials, at least one.
    """
    value = os.environ.get("JOURNAL_STRESS_TRIALS")
    if not value:
        return default
    return max(1, default * int(value) // 200)


# --- the kill -9 campaign -------------------------------------------------------------


@dataclass
class CampaignResult:
    """Counters and findings of one kill -9 campaign."""

    trials: int = 0
    journals: int = 0
    kills: int = 0
    acknowledged: int = 0
    events: int = 0
    torn_files: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Return a one-line summary."""
        return (
            f"{self.trials} trials on {self.journals} journals, {self.kills} writers "
            f"killed, {self.acknowledged} events acknowledged, {self.events} events "
            f"stored, {self.torn_files} torn tails cut, {len(self.violations)} violations, "
            f"{self.seconds:.1f} s"
        )


def run_campaign(
    base: str | os.PathLike[str],
    trials: int,
    *,
    modes: tuple[str, ...] = ("fsync", "flush", "batch"),
    writers: tuple[int, int] = (1, 3),
    trials_per_journal: int = 10,
    run_time: tuple[float, float] = (0.03, 0.25),
    use_exec: bool = False,
    segment_max_bytes: int = 16384,
    seed: int = 0,
    max_violations: int = 20,
    progress: Callable[[int, CampaignResult], None] | None = None,
) -> CampaignResult:
    """Kill writer processes with SIGKILL at random moments and check after each trial.

    Each trial starts one to ``writers[1]`` writers at staggered moments, with the
    durability modes of *modes* in turn, and kills each at a random moment within
    *run_time* seconds. Then :func:`check_journal` checks the journal against every
    event acknowledged so far in it, and this process appends one event. A journal
    serves *trials_per_journal* trials (a new one starts after a violation), so kills
    also land in recoveries and segment rolls. The campaign stops early once it has
    *max_violations* violations.
    """
    rng = random.Random(seed)
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    result = CampaignResult()
    started = time.monotonic()
    mode_cycle = 0
    acked: dict[int, str] = {}
    last_seq = 0
    directory = base

    def finish_journal() -> None:
        result.acknowledged += len(acked)
        result.events += last_seq
        result.torn_files += len(list(directory.glob("*.torn-*")))

    fresh = True
    for trial in range(trials):
        if fresh or trial % trials_per_journal == 0:
            fresh = False
            if trial:
                finish_journal()
            directory = base / f"journal-{trial:05d}"
            shutil.rmtree(directory, ignore_errors=True)
            acked = {}
            last_seq = 0
            result.journals += 1
        acks_dir = directory.with_name(directory.name + "-acks")
        acks_dir.mkdir(exist_ok=True)
        plan = []
        for i in range(rng.randint(*writers)):
            mode = modes[mode_cycle % len(modes)]
            mode_cycle += 1
            span = rng.uniform(*run_time)
            start_at = rng.uniform(0, span / 2)
            # An exec'd interpreter spends about 0.2 s importing the journal (2-core VM),
            # so its kill comes later.
            kill_at = rng.uniform(start_at, span) + (0.15 if use_exec else 0.0)
            plan.append((start_at, kill_at, f"t{trial}w{i}", mode))
        violations = _run_trial(
            directory, acks_dir, plan, rng, use_exec, segment_max_bytes, result
        )
        for path in acks_dir.glob("*.ack"):
            acked.update(read_acks(path))
            path.unlink()
        found, last_seq = check_journal(directory, acked)
        violations += found
        if not found:
            violations += _append_after_crash(directory, trial, last_seq, acked)
            last_seq += 1
        result.trials += 1
        result.violations += [
            f"trial {trial} ({directory.name}): {v}" for v in violations
        ]
        # A broken journal would report the same finding in every later trial.
        fresh = bool(violations)
        result.seconds = time.monotonic() - started
        if progress is not None:
            progress(trial, result)
        if len(result.violations) >= max_violations:
            break
    finish_journal()
    return result


def _run_trial(
    directory: Path,
    acks_dir: Path,
    plan: list[tuple[float, float, str, str]],
    rng: random.Random,
    use_exec: bool,
    segment_max_bytes: int,
    result: CampaignResult,
) -> list[str]:
    """Start and kill the writers of one trial on schedule; return writer failures."""
    violations: list[str] = []
    timeline = []
    for start_at, kill_at, tag, mode in plan:
        timeline.append((start_at, "start", tag, mode))
        timeline.append((kill_at, "kill", tag, mode))
    timeline.sort()
    running: dict[str, Any] = {}
    t0 = time.monotonic()
    for moment, action, tag, mode in timeline:
        delay = t0 + moment - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ack_path = str(acks_dir / f"{tag}.ack")
        if action == "start":
            seed = rng.getrandbits(32)
            if use_exec:
                running[tag] = exec_writer(
                    str(directory),
                    tag,
                    mode,
                    ack_path,
                    seed=seed,
                    segment_max_bytes=segment_max_bytes,
                )
            else:
                running[tag] = fork_writer(
                    str(directory),
                    tag,
                    mode,
                    ack_path,
                    seed=seed,
                    segment_max_bytes=segment_max_bytes,
                )
            continue
        child = running.pop(tag)
        pid = child.pid if use_exec else child
        os.kill(pid, signal.SIGKILL)
        if use_exec:
            _, stderr = child.communicate()
            status = child.returncode
        else:
            _, wait_status = os.waitpid(pid, 0)
            status = (
                -os.WTERMSIG(wait_status)
                if os.WIFSIGNALED(wait_status)
                else os.WEXITSTATUS(wait_status)
            )
            stderr = b""
        result.kills += 1
        error_file = Path(ack_path + ".error")
        if status != -signal.SIGKILL:
            detail = error_file.read_text() if error_file.exists() else stderr.decode()
            violations.append(
                f"writer {tag} ({mode}) ended with status {status} before the "
                f"kill: {detail.strip()[-600:]}"
            )
        error_file.unlink(missing_ok=True)
    return violations


def _append_after_crash(
    directory: Path, trial: int, last_seq: int, acked: dict[int, str]
) -> list[str]:
    """Append one event after the kills; return a violation if it fails or gets a wrong seq."""
    event = make_event(f"parent{trial}", 0)
    try:
        with Journal.open(directory, durability="fsync", lock_timeout=30) as journal:
            journal.append(event)
    except Exception as err:
        return [f"append after the kill failed: {describe_exception(err)}"]
    if event.seq != last_seq + 1:
        return [f"append after the kill got seq {event.seq}, expected {last_seq + 1}"]
    acked[event.seq] = event.id
    return []


# --- command line for exec'd writers ---------------------------------------------------


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    writer = commands.add_parser("writer", help="append events until killed")
    writer.add_argument("--dir", required=True, help="journal directory")
    writer.add_argument("--tag", required=True, help="prefix of the event ids")
    writer.add_argument(
        "--durability", required=True, choices=("fsync", "flush", "batch")
    )
    writer.add_argument(
        "--ack", required=True, help="file that receives '<seq> <id>' lines"
    )
    writer.add_argument(
        "--seed", type=int, default=0, help="seed of the random choices"
    )
    writer.add_argument(
        "--segment-max-bytes",
        type=int,
        default=16384,
        help="segment size that triggers a roll, in bytes",
    )
    args = parser.parse_args(argv)
    writer_loop(
        args.dir,
        args.tag,
        args.durability,
        args.ack,
        seed=args.seed,
        segment_max_bytes=args.segment_max_bytes,
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


__all__ = [
    "BASE_TIME",
    "CampaignResult",
    "SegmentFile",
    "build_frame",
    "check_journal",
    "drop_index",
    "encode_payload",
    "event_fields",
    "event_mismatch",
    "exec_writer",
    "expected_event",
    "flip_bit",
    "fork_writer",
    "load_segment",
    "make_event",
    "python_env",
    "read_acks",
    "relink",
    "rewrite_frame",
    "run_campaign",
    "segment_paths",
    "trial_count",
    "write_segment",
]
