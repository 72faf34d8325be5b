"""The :class:`Journal`: open a directory, append events, read them back."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from journal import chain, codec
from journal.errors import (
    CorruptSegment,
    ForkedJournal,
    InvalidArgument,
    InvalidEvent,
    JournalClosed,
    JournalError,
    PermissionProblem,
    SegmentExpired,
    permission_message,
)
from journal.event import (
    DEFAULT_MAX_EVENT_BYTES,
    AuditEvent,
    EventFields,
    check_time,
    format_time,
    validate_event,
)
from journal.index import IndexBuilder, SegmentIndex, value_hash
from journal.lock import WriteLock
from journal.segment import (
    FLAG_DICT,
    FLAG_ZSTD,
    HEADER_FIXED,
    KIND_EVENTS,
    KIND_SEAL,
    SEGMENT_NAME_RE,
    SEGMENT_TEMP_SUFFIX,
    SealRecord,
    encode_seal,
    fsync_directory,
    pack_frame,
    pack_header,
    read_header,
    segment_name,
    write_all,
)
from journal.store import PartialBlock, Record, Segment, Store, decode_records

if TYPE_CHECKING:
    from journal.retention import RetentionReport
    from journal.verify import VerifyReport

log = logging.getLogger("journal")

Durability = Literal["fsync", "flush", "batch"]
DURABILITY_MODES: tuple[str, ...] = ("fsync", "flush", "batch")

#: Default segment size that triggers a roll.
DEFAULT_SEGMENT_MAX_BYTES = 16 << 20
#: Default segment age that triggers a roll.
DEFAULT_SEGMENT_MAX_AGE = timedelta(days=1)
#: A frame takes events until its uncompressed payload reaches this size. Larger
#: frames compress a little better (about 150 bytes per event of the benchmark
#: corpus at 1 MiB against 190 at 128 KiB) but make ``recent`` and filtered reads
#: decompress more than they return.
FRAME_TARGET_RAW = 128 << 10
#: Largest ``max_event_bytes`` accepted: half the largest frame a reader accepts.
MAX_EVENT_BYTES_LIMIT = 32 << 20
#: In ``batch`` mode the buffer is written once it contains this many bytes.
BATCH_MAX_BYTES = 1 << 20
#: The active index is stored again after the segment grew by this much.
INDEX_SAVE_EVERY = 1 << 20
#: A segment without a dictionary rolls early once it contains this many events in
#: small frames, so that the next segment compresses single events well.
DICT_BOOTSTRAP_EVENTS = 512
#: Encoded events kept in memory as dictionary training samples.
DICT_SAMPLES = 4096

Filter = str | Sequence[str] | None
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


class SegmentInfo(msgspec.Struct, kw_only=True):
    """Summary of one segment, as ``journal segments`` prints it."""

    name: str
    path: str
    first_seq: int
    last_seq: int
    events: int
    min_time: str | None
    max_time: str | None
    bytes: int
    raw_bytes: int
    ratio: float
    sealed: bool
    created: str
    damaged_blocks: int


class _Group:
    """Events of one ``append`` or ``append_many`` call waiting for group commit."""

    __slots__ = ("error", "items", "lead", "wake")

    def __init__(self, items: list[tuple[AuditEvent, bytes]]) -> None:
        self.items = items
        self.error: BaseException | None = None
        self.lead = False  # set when this caller must take over as leader
        # Created only for callers that wait for a leader, under the queue lock.
        self.wake: threading.Event | None = None


#: Maximum time, in seconds, a group-commit leader waits for woken callers.
_GATHER_SECONDS = 0.0002
#: A leader writes at most this many rounds of queued groups before it hands
#: leadership to the oldest waiting caller, so that its own caller returns.
_LEADER_ROUNDS = 8


def _us(value: datetime) -> int:
    return (value - _EPOCH) // _ONE_US


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _seconds(value: float | timedelta | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if not isinstance(value, int | float) or value < 0:
        raise InvalidArgument(
            f"{name} must be a non-negative number of seconds, got {value!r}"
        )
    return float(value)


def _normalize_filters(**filters: Filter) -> dict[str, list[str | None]]:
    result: dict[str, list[str | None]] = {}
    for field, value in filters.items():
        if value is None:
            continue
        if isinstance(value, str):
            options: list[str | None] = [value]
        elif isinstance(value, list | tuple | set | frozenset):
            options = list(value)
        else:
            raise InvalidArgument(
                f"{field} filter must be a str or a list of str, got "
                f"{type(value).__name__} {value!r:.40}"
            )
        for option in options:
            if not isinstance(option, str):
                raise InvalidArgument(
                    f"{field} filter values must be str, got {type(option).__name__} "
                    f"{option!r:.40}"
                )
        result[field] = options
    return result


def _check_bound(name: str, value: datetime | None) -> None:
    if value is None:
        return
    try:
        check_time(name, value)
    except InvalidEvent as err:
        raise InvalidArgument(
            str(err).replace("invalid event: ", "invalid query: ")
        ) from None


class Journal:
    """An append-only audit journal stored in one directory.

    Create one with :meth:`Journal.open`; use it as a context manager or call
    :meth:`close`. One object may be shared by threads. Each process opens its own.
    """

    def __init__(
        self,
        directory: str,
        *,
        durability: Durability,
        segment_max_bytes: int,
        segment_max_age: float,
        lock_timeout: float | None,
        lock_warn_after: float,
        flush_interval: float,
        max_event_bytes: int,
        key: bytes | None,
        compression_level: int,
        file_mode: int,
        readonly: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self.directory = directory
        self.durability = durability
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age = segment_max_age
        self.lock_timeout = lock_timeout
        self.flush_interval = flush_interval
        self.max_event_bytes = max_event_bytes
        self.readonly = readonly
        self.file_mode = file_mode
        self._key = key
        self._key_id = chain.key_id(key)
        self._level = compression_level
        self._clock = clock
        self._pid = os.getpid()
        self._fork_generation = _fork_generation
        # The fork generation while the journal is open for appending, else None:
        # one comparison replaces the checks of _check_usable on the hot path.
        self._usable_for_append: int | None = None if readonly else _fork_generation
        self._closed = False
        self._mutex = threading.RLock()
        self._store = Store(directory, file_mode, readonly=readonly)
        self._lock = (
            WriteLock(
                directory,
                timeout=lock_timeout,
                warn_after=lock_warn_after,
                file_mode=file_mode,
            )
            if not readonly
            else None
        )
        self._write_fd: int | None = None
        self._write_name: str | None = None
        self._compressor: codec.Compressor | None = None
        self._samples: deque[bytes] = deque(maxlen=DICT_SAMPLES)
        # Group commit: one thread at a time writes every queued group.
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Group] = []
        self._leader = False
        self._active = 0  # callers inside _commit, leader included
        # Batch mode buffer and its background flusher.
        self._buffer: list[tuple[AuditEvent, bytes]] = []
        self._buffer_bytes = 0
        self._buffer_since = 0.0
        self._buffer_lock = threading.Lock()
        self._flush_error: BaseException | None = None
        self._flusher: threading.Thread | None = None
        self._stop_flusher = threading.Event()

    # -- opening and closing -------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_age: float | timedelta = DEFAULT_SEGMENT_MAX_AGE,
        lock_timeout: float | timedelta | None = None,
        lock_warn_after: float = 1.0,
        flush_interval: float = 0.2,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        key: bytes | str | None = None,
        compression_level: int = codec.DEFAULT_LEVEL,
        file_mode: int = 0o600,
        dir_mode: int = 0o700,
        readonly: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> Journal:
        """Open the journal in *path*, creating the directory if it is missing.

        :param durability: ``"fsync"`` (default): ``append`` returns once the event is
            on stable storage. ``"flush"``: written to the operating system, so it
            survives a crash of this process but not of the machine. ``"batch"``:
            kept in memory and written as one frame every *flush_interval* seconds,
            when about 1 MiB is buffered, on :meth:`flush` and on :meth:`close`.
        :param segment_max_bytes: roll to a new segment once the active one is this big.
        :param segment_max_age: roll once the active segment is this old (seconds or
            a timedelta); it bounds how long an expired event can outlive retention.
        :param lock_timeout: seconds to wait for the write lock; ``None`` waits
            without limit, logging a warning every few seconds.
        :param key: a secret that makes the hash chain keyed, so that a consistent
            chain cannot be forged without it.
        :param readonly: open for reading only: no lock, no recovery, no writes.
        :raises PermissionProblem: the directory or its files are not accessible.
        :raises InvalidArgument: an option is out of range.
        """
        if durability not in DURABILITY_MODES:
            raise InvalidArgument(
                f"durability {durability!r} is not one of {', '.join(DURABILITY_MODES)}"
            )
        if not isinstance(segment_max_bytes, int) or segment_max_bytes < 4096:
            raise InvalidArgument(
                f"segment_max_bytes must be an int of at least 4096, got {segment_max_bytes!r}"
            )
        max_age = _seconds(segment_max_age, "segment_max_age")
        if not max_age:
            raise InvalidArgument("segment_max_age must be positive")
        if not isinstance(max_event_bytes, int) or max_event_bytes < 256:
            raise InvalidArgument(
                f"max_event_bytes must be an int of at least 256, got {max_event_bytes!r}"
            )
        if max_event_bytes > MAX_EVENT_BYTES_LIMIT:
            raise InvalidArgument(
                f"max_event_bytes {max_event_bytes} is above the limit of "
                f"{MAX_EVENT_BYTES_LIMIT} bytes"
            )
        if not 1 <= compression_level <= 22:
            raise InvalidArgument(
                f"compression_level must be between 1 and 22, got {compression_level}"
            )
        interval = _seconds(flush_interval, "flush_interval") or 0.2
        directory = os.path.abspath(os.fspath(path))
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise InvalidArgument(
                f"{directory} is not a directory; give the path of a journal directory"
            )
        if not readonly:
            try:
                os.makedirs(directory, mode=dir_mode, exist_ok=True)
            except PermissionError as err:
                raise PermissionProblem(
                    permission_message(directory, "create")
                ) from err
        if not os.path.isdir(directory):
            raise InvalidArgument(f"{directory} is not a directory")
        need = os.R_OK | os.X_OK | (0 if readonly else os.W_OK)
        if not os.access(directory, need):
            action = "read" if readonly else "write to"
            raise PermissionProblem(permission_message(directory, action))
        journal = cls(
            directory,
            durability=durability,
            segment_max_bytes=segment_max_bytes,
            segment_max_age=max_age,
            lock_timeout=_seconds(lock_timeout, "lock_timeout"),
            lock_warn_after=lock_warn_after,
            flush_interval=interval,
            max_event_bytes=max_event_bytes,
            key=chain.normalize_key(key),
            compression_level=compression_level,
            file_mode=file_mode,
            readonly=readonly,
            clock=clock or (lambda: datetime.now(timezone.utc)),
        )
        try:
            journal._open_existing()
        except BaseException:
            journal._release_files()
            raise
        return journal

    def _open_existing(self) -> None:
        with self._mutex:
            self._store.refresh(writer=False)
            segments = self._store.segments
            if not segments:
                return
            newest = segments[-1]
            self._check_key(newest)
            if not self.readonly:
                self._remove_stale_temporaries()
                self._recover_incomplete_creation()
            if self.readonly or newest.index.sealed:
                return
            size = os.fstat(self._store.fd(newest.name)).st_size
            if size != newest.index.covered:
                # An incomplete final frame: recover it under the write lock.
                with self._locked("recovery"):
                    self._store.refresh(writer=True)

    def _check_key(self, segment: Segment) -> None:
        if segment.damaged is not None:
            return
        header = self._store.header(segment)
        if header.keyed and self._key is None and not self.readonly:
            raise InvalidArgument(
                f"journal {self.directory} uses a keyed chain; pass key= (or --key-file / "
                "JOURNAL_KEY_FILE) to append to it"
            )
        if self._key is not None and header.key_id != self._key_id:
            state = (
                "is not keyed" if not header.keyed else "was written with another key"
            )
            use = "verify or append to it" if header.keyed else "omit the key"
            raise InvalidArgument(
                f"journal {self.directory} {state}: the key given does not match segment "
                f"{segment.name}; {use} with the key it was written with"
                if header.keyed
                else f"journal {self.directory} {state}: segment {segment.name} has no "
                f"key, so {use}"
            )

    def close(self) -> None:
        """Write buffered events, store the index and release every file."""
        if self._closed:
            return
        if os.getpid() != self._pid:
            self._closed = True
            self._usable_for_append = None
            return
        self._usable_for_append = None
        try:
            if self.durability == "batch":
                self._stop_flusher.set()
                if self._flusher is not None:
                    self._flusher.join()
                self.flush()
        finally:
            with self._mutex:
                if self._store.segments and not self.readonly:
                    self._store.save(self._store.segments[-1])
                self._release_files()
            self._closed = True

    def _release_files(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self._store.close()
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({self.directory!r}, durability={self.durability!r})"

    def _check_usable(self, writing: bool = False) -> None:
        if _fork_generation != self._fork_generation:
            raise ForkedJournal(
                f"journal {self.directory} was opened in process {self._pid} and used in "
                f"process {os.getpid()} after fork(); open it again in the child with "
                "Journal.open()"
            )
        if self._closed:
            raise JournalClosed(f"journal {self.directory} is closed; open it again")
        if writing and self.readonly:
            raise JournalError(
                f"journal {self.directory} was opened read-only; open it without "
                "readonly=True to append"
            )

    # -- locking -------------------------------------------------------------

    @contextmanager
    def _locked(self, purpose: str) -> Iterator[None]:
        assert self._lock is not None
        self._lock.acquire(purpose)
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def lock(self) -> Iterator[Journal]:
        """Hold the write lock for a block of work (a backup, a maintenance script).

        Appends from this thread inside the block take the lock again without
        waiting; other threads and processes wait until the block ends.
        """
        self._check_usable(writing=True)
        with self._locked("lock()"), self._mutex:
            self._store.refresh(writer=True)
            yield self

    # -- appending -----------------------------------------------------------

    def _encode(self, event: AuditEvent) -> bytes:
        validate_event(event)
        try:
            data = codec.encode_event(event)
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as err:
            raise InvalidEvent(f"invalid event: cannot be encoded: {err}") from err
        if len(data) > self.max_event_bytes:
            raise InvalidEvent(
                f"invalid event: encoded size {len(data)} bytes is over max_event_bytes "
                f"{self.max_event_bytes}; shrink metadata or open the journal with a "
                "larger max_event_bytes",
                "metadata",
            )
        return data

    def check(self, event: AuditEvent) -> None:
        """Raise :class:`InvalidEvent` if *event* could not be appended; write nothing."""
        self._encode(event)

    def append(self, event: AuditEvent) -> AuditEvent:
        """Validate and store *event*; return it with ``seq`` assigned.

        In ``batch`` mode the event is buffered and ``seq`` is filled in when the
        buffer is written (on :meth:`flush`, :meth:`close` or the flush interval).

        :raises InvalidEvent: a field is invalid; nothing was written.
        :raises LockTimeout: the write lock was not free within ``lock_timeout``.
        """
        if self._usable_for_append != _fork_generation:
            self._check_usable(writing=True)
        validate_event(event)
        try:
            data = _encode_event(event)
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as err:
            raise InvalidEvent(f"invalid event: cannot be encoded: {err}") from err
        if len(data) > self.max_event_bytes:
            self._encode(event)  # raises the size error
        if self.durability == "batch":
            self._buffer_event(event, data)
            return event
        self._commit(_Group([(event, data)]))
        return event

    def append_many(self, events: Iterable[AuditEvent]) -> list[int]:
        """Store *events* under one hold of the write lock; return their seqs.

        Every event is validated first; if one is invalid, none is written.
        """
        self._check_usable(writing=True)
        items: list[tuple[AuditEvent, bytes]] = []
        for i, event in enumerate(events):
            try:
                items.append((event, self._encode(event)))
            except InvalidEvent as err:
                raise InvalidEvent(f"event {i}: {err}", err.field) from None
        if not items:
            return []
        if self.durability == "batch":
            self.flush()
        self._commit(_Group(items))
        return [event.seq for event, _ in items]  # type: ignore[misc]

    def flush(self) -> None:
        """Write events buffered in ``batch`` mode (a no-op in other modes)."""
        self._check_usable(writing=True)
        with self._buffer_lock:
            items, self._buffer = self._buffer, []
            self._buffer_bytes = 0
            error, self._flush_error = self._flush_error, None
        if items:
            try:
                self._commit(_Group(items))
            except BaseException:
                with self._buffer_lock:
                    self._buffer[:0] = items
                    self._buffer_bytes += sum(len(d) for _, d in items)
                raise
        if error is not None:
            raise JournalError(
                f"an earlier background flush failed: {error}"
            ) from error

    def _buffer_event(self, event: AuditEvent, data: bytes) -> None:
        with self._buffer_lock:
            if self._flush_error is not None:
                error, self._flush_error = self._flush_error, None
                raise JournalError(
                    f"a background flush of buffered events failed: {error}; they are "
                    "kept and written again on the next flush"
                ) from error
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.append((event, data))
            self._buffer_bytes += len(data)
            full = self._buffer_bytes >= BATCH_MAX_BYTES
        if self._flusher is None:
            self._start_flusher()
        if full:
            self.flush()

    def _start_flusher(self) -> None:
        with self._buffer_lock:
            if self._flusher is not None:
                return
            thread = threading.Thread(
                target=self._flush_loop,
                name=f"journal-flush {self.directory}",
                daemon=True,
            )
            self._flusher = thread
        thread.start()

    def _flush_loop(self) -> None:
        while not self._stop_flusher.wait(self.flush_interval / 2):
            with self._buffer_lock:
                due = self._buffer and (
                    time.monotonic() - self._buffer_since >= self.flush_interval
                )
            if not due:
                continue
            try:
                self.flush()
            except JournalError as err:
                log.error("background flush of %s failed: %s", self.directory, err)
                with self._buffer_lock:
                    self._flush_error = err
            except Exception as err:
                log.error("background flush of %s failed: %s", self.directory, err)
                with self._buffer_lock:
                    self._flush_error = err

    def _commit(self, group: _Group) -> None:
        """Write *group*, sharing one lock hold and one fsync with concurrent callers.

        The first caller becomes the leader and writes every queued group in one
        lock hold. Callers arriving meanwhile queue up and sleep on their own
        event until a leader has written their group or makes them the leader.
        """
        with self._cond:
            self._active += 1
            self._queue.append(group)
            follow = self._leader
            self._leader = True
            if follow:
                group.wake = threading.Event()
                self._cond.notify()
        try:
            if follow:
                assert group.wake is not None
                group.wake.wait()
                if not group.lead:
                    if group.error is not None:
                        raise group.error
                    return
            self._lead(group)
        finally:
            with self._cond:
                self._active -= 1
                # A leader gathering callers may be waiting for this one to go.
                self._cond.notify()
        if group.error is not None:
            raise group.error

    def _lead(self, group: _Group) -> None:
        for round_number in range(_LEADER_ROUNDS):
            with self._cond:
                if round_number:
                    # Callers just woken by the previous round queue their next
                    # events within microseconds. Waiting briefly for them lets
                    # one fsync cover all of them, instead of alternating between
                    # a small and a large round.
                    self._cond.wait_for(
                        lambda: len(self._queue) >= self._active - 1,
                        timeout=_GATHER_SECONDS,
                    )
                groups, self._queue = self._queue, []
            if not groups:
                break
            error: BaseException | None = None
            try:
                with self._locked("append"), self._mutex:
                    self._store.refresh(writer=True)
                    self._write([item for g in groups for item in g.items])
            except BaseException as err:
                error = err
            for g in groups:
                g.error = error
                g.lead = False
                if g is not group and g.wake is not None:
                    g.wake.set()
        with self._cond:
            if self._queue:
                # Hand over to the oldest waiting caller instead of writing forever.
                successor = self._queue[0]
                successor.lead = True
                assert successor.wake is not None
                successor.wake.set()
            else:
                self._leader = False

    # -- writing (caller holds the lock and the mutex) -------------------------

    def _now(self) -> datetime:
        return self._clock()

    def _active_for_write(self) -> Segment:
        segments = self._store.segments
        segment = segments[-1] if segments else None
        if segment is not None and not segment.index.sealed:
            reason = self._roll_reason(segment)
            if reason is not None:
                self._seal(segment, reason)
        if segment is None or segment.index.sealed:
            segment = self._create_segment(segment)
        if self._write_name != segment.name:
            self._open_for_write(segment)
        return segment

    def _roll_reason(self, segment: Segment) -> str | None:
        index = segment.index
        if index.count == 0:
            # An empty segment never rolls: its successor would take its name.
            return None
        if index.covered - index.header_len >= self.segment_max_bytes:
            return "size"
        age = self._now().timestamp() - index.created_ns / 1e9
        if age >= self.segment_max_age:
            return "age"
        header = self._store.header(segment)
        if (
            not header.dictionary
            and index.count >= DICT_BOOTSTRAP_EVENTS
            and index.raw_bytes >= 3 * codec.DICT_SIZE
            and _small_frames(index)
        ):
            return "dictionary"
        return None

    def _open_for_write(self, segment: Segment) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        try:
            self._write_fd = os.open(segment.path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError as err:
            raise PermissionProblem(
                permission_message(segment.path, "write to")
            ) from err
        self._write_name = segment.name
        self._compressor = codec.Compressor(
            self._level, self._store.header(segment).dictionary
        )

    def _seal(self, segment: Segment, reason: str) -> None:
        """Append a seal frame so that the next event starts a new segment."""
        if self._write_name != segment.name:
            self._open_for_write(segment)
        assert self._write_fd is not None and segment.builder is not None
        index = segment.index
        sealed_ns = int(self._now().timestamp() * 1e9)
        payload = encode_seal(
            SealRecord(
                sealed_ns=sealed_ns,
                last_seq=index.last_seq,
                events=index.count,
                reason=reason,
            )
        )
        link = chain.next_link(
            self._key, index.last_link, KIND_SEAL, 0, index.last_seq + 1, payload
        )
        data = pack_frame(
            KIND_SEAL, 0, 0, index.last_seq + 1, len(payload), link, payload
        )
        self._pwrite(segment, data)
        os.fsync(self._write_fd)
        segment.builder.add_seal(index.covered + len(data), sealed_ns, link)
        self._store.save(segment)
        log.debug(
            "sealed segment %s (%s): seq %d..%d",
            segment.path,
            reason,
            index.first_seq,
            index.last_seq,
        )

    def _training_samples(self, previous: Segment | None) -> list[bytes]:
        if len(self._samples) >= 256 or previous is None or not previous.index.blocks:
            return list(self._samples)
        samples: list[bytes] = []
        for block in reversed(previous.index.blocks[-64:]):
            if block.damaged is not None:
                continue
            try:
                for chunk in self._store.block_chunks(previous, block):
                    samples.extend(bytes(raw) for raw in chunk.raws())
            except CorruptSegment:
                continue  # damage is reported by reads and verify, not by a roll
            if len(samples) >= DICT_SAMPLES:
                break
        return samples

    def _create_segment(self, previous: Segment | None) -> Segment:
        first_seq = previous.index.last_seq + 1 if previous else 1
        prev_link = chain.ZERO_LINK
        if previous is not None and len(previous.index.last_link) == chain.LINK_SIZE:
            prev_link = previous.index.last_link
        removed = self._store.removals.records()
        if previous is None and removed:
            # Retention removed every segment: continue the seqs and the chain
            # where the newest removed segment ended.
            newest_removed = max(removed, key=lambda r: r.last_seq)
            first_seq = newest_removed.last_seq + 1
            prev_link = bytes.fromhex(newest_removed.last_link)
        dictionary = b""
        if previous is not None and _small_frames(previous.index):
            dictionary = codec.train_dictionary(self._training_samples(previous))
        name = segment_name(first_seq)
        path = os.path.join(self.directory, name)
        created_ns = int(self._now().timestamp() * 1e9)
        data = pack_header(first_seq, created_ns, prev_link, self._key_id, dictionary)
        try:
            self._write_new_segment(path, data)
        except OSError as err:
            raise JournalError(
                f"cannot create segment {path}: {err.strerror or err}; nothing of this "
                "batch was stored; free space (or fix the file system) and append again"
            ) from err
        index = SegmentIndex(
            name=name,
            first_seq=first_seq,
            created_ns=created_ns,
            header_len=len(data),
            covered=len(data),
            last_seq=first_seq - 1,
            last_link=prev_link,
        )
        segment = Segment(self.directory, name, index)
        segment.builder = IndexBuilder(index)
        segment.saved_covered = -1
        segment.header = read_header(self._store.fd(name), path, len(data))
        self._store.segments.append(segment)
        self._samples.clear()
        log.debug("created segment %s (dictionary %d bytes)", path, len(dictionary))
        return segment

    def _write_new_segment(self, path: str, header: bytes) -> None:
        """Create a segment file holding *header*, durably, or leave no file.

        The header is written and synced under a temporary name and then linked
        to the segment name, so a crash never leaves a segment with a partial
        header. ``os.link`` fails rather than replace a segment that exists.
        """
        temporary = f"{path}{SEGMENT_TEMP_SUFFIX}{os.getpid()}"
        fd = os.open(
            temporary,
            os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
            self.file_mode,
        )
        try:
            try:
                write_all(fd, header)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, path)
            except FileExistsError:
                if not self._move_aside_incomplete(path):
                    raise JournalError(
                        f"segment {path} already exists although the journal expected to "
                        "create it; run `journal verify` and check for another program "
                        "writing to this directory"
                    ) from None
                os.link(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        fsync_directory(self.directory)

    def _move_aside_incomplete(self, path: str) -> bool:
        """Move a segment file shorter than its header aside; return whether it was."""
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return True
        if size >= HEADER_FIXED:
            return False
        side = f"{path}.torn-{time.time_ns()}"
        os.replace(path, side)
        log.warning(
            "segment %s had an incomplete header (%d bytes), left by an interrupted "
            "creation or truncated by hand; moved it to %s",
            path,
            size,
            side,
        )
        return True

    def _recover_incomplete_creation(self) -> None:
        """Move aside segment files shorter than a header, under the write lock.

        Releases before this one wrote a new segment's header in place, so a
        crash could leave such a file; it holds no event.
        """
        known = {segment.name for segment in self._store.segments}
        short = []
        for name in os.listdir(self.directory):
            if not SEGMENT_NAME_RE.match(name) or name in known:
                continue
            try:
                size = os.stat(os.path.join(self.directory, name)).st_size
            except FileNotFoundError:
                continue
            if size < HEADER_FIXED:
                short.append(name)
        if not short:
            return
        with self._locked("recovery"):
            for name in short:
                self._move_aside_incomplete(os.path.join(self.directory, name))
            self._store.refresh(writer=True)

    def _remove_stale_temporaries(self) -> None:
        """Delete header files left by writers that died while creating a segment."""
        for name in os.listdir(self.directory):
            if SEGMENT_TEMP_SUFFIX in name and SEGMENT_NAME_RE.match(
                name.split(SEGMENT_TEMP_SUFFIX)[0]
            ):
                pid = name.rsplit(SEGMENT_TEMP_SUFFIX, 1)[1]
                if pid.isdigit() and not _process_exists(int(pid)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.directory, name))

    def _pwrite(self, segment: Segment, data: bytes) -> None:
        assert self._write_fd is not None
        offset = segment.index.covered
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self._write_fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as err:
            # Leave the segment as it was, so that the failed events are wholly
            # absent; if even the truncate fails, the next writer cuts the tail.
            try:
                os.ftruncate(self._write_fd, segment.index.covered)
            except OSError:
                log.warning("could not truncate %s after a failed write", segment.path)
            raise JournalError(
                f"write to {segment.path} failed: {err.strerror or err}; nothing of this "
                "batch was stored; free space (or fix the file system) and append again"
            ) from err

    def _write(self, items: list[tuple[AuditEvent, bytes]]) -> None:
        segment = self._active_for_write()
        builder = segment.builder
        compressor = self._compressor
        assert (
            builder is not None
            and compressor is not None
            and self._write_fd is not None
        )
        index = segment.index
        link = index.last_link
        seq = index.last_seq + 1
        offset = index.covered
        chunks: list[bytes] = []
        done: list[tuple[int, int, int, int, list[AuditEvent], bytes]] = []
        start = 0
        while start < len(items):
            stop = start
            raw = 0
            while stop < len(items) and (
                stop == start or raw + len(items[stop][1]) <= FRAME_TARGET_RAW
            ):
                raw += len(items[stop][1])
                stop += 1
            chunk = items[start:stop]
            payload = codec.build_payload([data for _, data in chunk])
            stored, used_dict = compressor.compress(payload, len(chunk))
            flags = FLAG_ZSTD | (FLAG_DICT if used_dict else 0)
            if len(stored) >= len(payload):
                stored, flags = payload, 0
            link = chain.next_link(
                self._key, link, KIND_EVENTS, len(chunk), seq, payload
            )
            frame = pack_frame(
                KIND_EVENTS, flags, len(chunk), seq, len(payload), link, stored
            )
            chunks.append(frame)
            done.append(
                (
                    offset,
                    offset + len(frame),
                    seq,
                    len(payload),
                    [event for event, _ in chunk],
                    link,
                )
            )
            offset += len(frame)
            seq += len(chunk)
            start = stop
        self._pwrite(segment, b"".join(chunks))
        if self.durability == "fsync":
            try:
                os.fdatasync(self._write_fd)
            except OSError as err:
                try:
                    os.ftruncate(self._write_fd, index.covered)
                except OSError:
                    pass
                raise JournalError(
                    f"fsync of {segment.path} failed: {err.strerror or err}; the batch "
                    "was not stored; check the file system and append again"
                ) from err
        for frame_offset, end, first, raw_len, events, frame_link in done:
            for i, event in enumerate(events):
                event.seq = first + i
            builder.add_frame(frame_offset, end, first, raw_len, events, frame_link)
        for _, data in items[-DICT_SAMPLES:]:
            self._samples.append(data)
        if index.covered - segment.saved_covered >= INDEX_SAVE_EVERY:
            self._store.save(segment)

    # -- reading -------------------------------------------------------------

    def _refresh(self) -> list[Segment]:
        with self._mutex:
            self._store.refresh(writer=False)
            return list(self._store.segments)

    def read(self, after_seq: int = 0) -> Iterator[AuditEvent]:
        """Yield every event with a seq above *after_seq*, oldest first."""
        return self.query(after_seq=after_seq)

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: Filter = None,
        action: Filter = None,
        target: Filter = None,
        outcome: Filter = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditEvent]:
        """Yield events oldest first by seq, with event time in ``[since, until)``.

        Filters combine with AND; a list of values matches any of them. Passing the
        last seq seen as *after_seq* resumes without skipping or repeating events.

        :raises InvalidArgument: a naive datetime or a bad filter value.
        :raises CorruptSegment: the scan reached damaged bytes; resume after its
            ``last_seq``.
        :raises SegmentExpired: retention removed events after a non-zero
            *after_seq*; ``next_seq`` is the oldest event left.
        """
        self._check_usable()
        _check_bound("since", since)
        _check_bound("until", until)
        if after_seq is not None and (not isinstance(after_seq, int) or after_seq < 0):
            raise InvalidArgument(
                f"after_seq must be a non-negative int, got {after_seq!r}"
            )
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidArgument(f"limit must be a non-negative int, got {limit!r}")
        filters = _normalize_filters(
            actor=actor, action=action, target=target, outcome=outcome
        )
        return self._query(since, until, filters, after_seq or 0, limit)

    def _expired(self, after_seq: int, removed_through: int) -> SegmentExpired:
        return SegmentExpired(
            f"retention removed events {after_seq + 1}..{removed_through} of "
            f"{self.directory} before they were read; continue with "
            f"after_seq={removed_through} (--after-seq {removed_through} on the "
            "command line)",
            self.directory,
            removed_through + 1,
        )

    def _query(
        self,
        since: datetime | None,
        until: datetime | None,
        filters: dict[str, list[str | None]],
        after_seq: int,
        limit: int | None,
    ) -> Iterator[AuditEvent]:
        if limit == 0:
            return
        wanted = [[value_hash(f, v) for v in opts] for f, opts in filters.items()]
        since_us = _us(since) if since is not None else None
        until_us = _us(until) if until is not None else None
        match = _matcher(since, until, filters)
        position = after_seq
        produced = 0
        segments = self._refresh()
        expected = self._removed_through() + 1
        if 0 < after_seq < expected - 1:
            # A cursor must not skip events silently. Reading from the start
            # (after_seq 0) returns what retention left.
            raise self._expired(after_seq, expected - 1)
        for segment in segments:
            index = segment.index
            if segment.first_seq > expected and position < segment.first_seq - 1:
                raise self._missing(expected, segment)
            expected = max(expected, index.last_seq + 1)
            if index.last_seq <= position or not _segment_may_match(
                index, since_us, until_us, filters
            ):
                continue
            for block in list(index.blocks):
                if block.last_seq <= position:
                    continue
                if block.count and (
                    (since_us is not None and block.max_us < since_us)
                    or (until_us is not None and block.min_us >= until_us)
                ):
                    continue
                if not block.may_contain(wanted):
                    continue
                damage: PartialBlock | None = None
                with self._mutex:
                    try:
                        chunks = self._store.block_chunks(segment, block, position)
                    except PartialBlock as err:
                        # Hand out the events before the damage, then raise.
                        damage = err
                        start = err.first_seq or 0
                        chunks = [c for c in err.chunks if c.last_seq < start]
                # Events are decoded one at a time as they are yielded, so an event
                # the caller drops is freed at once. The cyclic garbage collector,
                # triggered by the count of live objects, then seldom runs.
                for chunk in chunks:
                    if match is None and limit is None:
                        # A plain scan needs no summary and no count.
                        yield from chunk.iter_events(position)
                        continue
                    for seq, raw, _ in chunk.records():
                        if seq <= position or (
                            match is not None and not match(chunk.summary(seq, raw))
                        ):
                            continue
                        yield chunk.event(seq, raw)
                        produced += 1
                        if limit is not None and produced >= limit:
                            return
                if damage is not None:
                    raise _as_corrupt(damage)
                position = max(position, block.last_seq)

    def _removed_through(self) -> int:
        """Return the last seq removed by retention (0 when nothing was removed)."""
        return max((r.last_seq for r in self._store.removals.records()), default=0)

    def _missing(self, first: int, following: Segment) -> CorruptSegment:
        last = following.first_seq - 1
        return CorruptSegment(
            f"events {first}..{last} are missing: no segment before {following.path} "
            "contains them and retention did not remove them; run `journal verify` for "
            f"the full report, or resume after them with --after-seq {last} "
            "(after_seq= in Python)",
            following.path,
            0,
            first,
            last,
        )

    def recent(
        self,
        limit: int = 20,
        *,
        actor: Filter = None,
        action: Filter = None,
        target: Filter = None,
        outcome: Filter = None,
    ) -> list[AuditEvent]:
        """Return up to *limit* of the newest matching events, newest first by seq."""
        self._check_usable()
        if not isinstance(limit, int) or limit < 0:
            raise InvalidArgument(f"limit must be a non-negative int, got {limit!r}")
        filters = _normalize_filters(
            actor=actor, action=action, target=target, outcome=outcome
        )
        wanted = [[value_hash(f, v) for v in opts] for f, opts in filters.items()]
        match = _matcher(None, None, filters)
        result: list[AuditEvent] = []
        if limit == 0:
            return result
        segments = self._refresh()
        for position, segment in enumerate(reversed(segments)):
            if position:
                # Moving to an older segment: its events must end where the
                # newer one starts, or the events between are missing.
                newer = segments[-position]
                if newer.first_seq > segment.index.last_seq + 1:
                    raise self._missing(segment.index.last_seq + 1, newer)
            if not _segment_may_match(segment.index, None, None, filters):
                continue
            for block in reversed(list(segment.index.blocks)):
                if not block.may_contain(wanted):
                    continue
                damages: list[PartialBlock] = []
                with self._mutex:
                    try:
                        chunks = self._store.block_chunks(
                            segment,
                            block,
                            newest=0 if match else limit - len(result),
                        )
                    except PartialBlock as err:
                        chunks, damages = err.chunks, err.damages
                chosen: list[Record] = []
                records = [r for chunk in chunks for r in chunk.records()]
                for record in reversed(records):
                    seq, raw, chunk = record
                    for damage in damages:
                        # Reaching an event older than a damaged stretch means
                        # the newest matching events may be among the damaged.
                        if seq < (damage.first_seq or 0):
                            raise _as_corrupt(damage)
                    if match is None or match(chunk.summary(seq, raw)):
                        chosen.append(record)
                        if len(result) + len(chosen) >= limit:
                            break
                result.extend(decode_records(chosen))
                if len(result) >= limit:
                    return result
                if damages:
                    raise _as_corrupt(damages[-1])
        # Every segment was read without finding enough events, so events before
        # the oldest segment that retention did not remove are missing.
        removed_through = self._removed_through()
        if segments and segments[0].first_seq > removed_through + 1:
            raise self._missing(removed_through + 1, segments[0])
        return result

    def follow(
        self,
        after_seq: int | None = None,
        poll_interval: float = 0.5,
        **filters: Filter,
    ) -> Iterator[AuditEvent]:
        """Yield events as they are appended, like ``tail -f``; never returns by itself.

        With ``after_seq=None`` it starts after the newest event present now.

        :raises SegmentExpired: retention removed events after the cursor before
            they were read. ``next_seq`` is the oldest event left, so following
            again with ``after_seq=next_seq - 1`` continues from there.
        """
        self._check_usable()
        position = self.last_seq if after_seq is None else after_seq
        while True:
            removed_through = self._removed_through()
            if position < removed_through:
                raise self._expired(position, removed_through)
            found = False
            for event in self.query(after_seq=position, **filters):  # type: ignore[arg-type]
                found = True
                assert event.seq is not None
                position = event.seq
                yield event
            if not found:
                time.sleep(poll_interval)

    @property
    def last_seq(self) -> int:
        """Seq of the newest event appended (0 for a journal never written to)."""
        segments = self._refresh()
        if segments:
            return segments[-1].index.last_seq
        removed = self._store.removals.records()
        return max((r.last_seq for r in removed), default=0)

    def segments(self) -> list[SegmentInfo]:
        """Describe every segment, oldest first."""
        self._check_usable()
        infos = []
        for segment in self._refresh():
            index = segment.index
            try:
                size = os.stat(segment.path).st_size
            except FileNotFoundError:
                continue
            infos.append(
                SegmentInfo(
                    name=segment.name,
                    path=segment.path,
                    first_seq=index.first_seq,
                    last_seq=index.last_seq,
                    events=index.count,
                    min_time=format_time(_from_us(index.min_us))
                    if index.count
                    else None,
                    max_time=format_time(_from_us(index.max_us))
                    if index.count
                    else None,
                    bytes=size,
                    raw_bytes=index.raw_bytes,
                    ratio=round(index.raw_bytes / size, 2) if size else 0.0,
                    sealed=index.sealed,
                    created=format_time(_from_us(index.created_ns // 1000)),
                    damaged_blocks=sum(
                        1 for b in index.blocks if b.damaged is not None
                    ),
                )
            )
        return infos

    def stats(self) -> dict[str, Any]:
        """Return totals, sizes, the index health and write-lock statistics."""
        infos = self.segments()
        events = sum(i.events for i in infos)
        size = sum(i.bytes for i in infos)
        raw = sum(i.raw_bytes for i in infos)
        indexes = [s.index for s in self._refresh() if s.index.count]
        oldest = min((i.min_us for i in indexes), default=None)
        newest = max((i.max_us for i in indexes), default=None)
        from journal.lock import probe

        lock: dict[str, Any] = {}
        if self._lock is not None:
            lock = msgspec.to_builtins(self._lock.stats)
        try:
            state = probe(self.directory)
        except FileNotFoundError:
            state = {"state": "free", "holder": None}
        lock["state"] = state.get("state")
        lock["holder"] = state.get("holder") if state.get("state") == "held" else None
        return {
            "directory": self.directory,
            "segments": len(infos),
            "events": events,
            "first_seq": infos[0].first_seq if infos else None,
            "last_seq": self.last_seq,
            "bytes": size,
            "raw_bytes": raw,
            "ratio": round(raw / size, 2) if size else 0.0,
            "oldest_event": format_time(_from_us(oldest))
            if oldest is not None
            else None,
            "newest_event": format_time(_from_us(newest))
            if newest is not None
            else None,
            "damaged_blocks": sum(i.damaged_blocks for i in infos),
            "index_files_missing": sum(
                1 for i in infos if not os.path.exists(i.path[:-4] + ".idx")
            ),
            "lock": lock,
        }

    # -- integrity and retention --------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Return the chain head (seq and link) to store outside the journal."""
        self._check_usable()
        segments = self._refresh()
        if not segments:
            removed = self._store.removals.records()
            newest_removed = max(removed, key=lambda r: r.last_seq, default=None)
            return {
                "seq": newest_removed.last_seq if newest_removed else 0,
                "link": newest_removed.last_link
                if newest_removed
                else chain.ZERO_LINK.hex(),
                "segment": None,
                "keyed": self._key is not None,
                "time": format_time(self._now()),
            }
        newest = segments[-1]
        return {
            "seq": newest.index.last_seq,
            "link": newest.index.last_link.hex(),
            "segment": newest.name,
            "keyed": self._store.header(newest).keyed,
            "time": format_time(self._now()),
        }

    def verify(
        self,
        *,
        checkpoint: dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport:
        """Read every segment and check checksums, seqs and the hash chain.

        :param checkpoint: a chain head from :meth:`checkpoint`, stored elsewhere;
            verification then also proves that nothing up to it was cut off.
        :param progress: called with (segments done, segments in all).
        """
        self._check_usable()
        from journal.verify import verify_journal

        return verify_journal(self, checkpoint=checkpoint, progress=progress)

    def enforce_retention(
        self,
        max_age: timedelta | None = None,
        max_bytes: int | None = None,
        max_segments: int | None = None,
        now: datetime | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> RetentionReport:
        """Delete whole expired segments, oldest first; see :mod:`journal.retention`."""
        self._check_usable(writing=not dry_run)
        from journal.retention import enforce

        return enforce(
            self,
            max_age=max_age,
            max_bytes=max_bytes,
            max_segments=max_segments,
            now=now,
            dry_run=dry_run,
            progress=progress,
        )


# Incremented in a child process after fork(), so a journal can tell cheaply that
# it is used in a process other than the one that opened it.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation  # noqa: PLW0603 (a process-wide counter by design)
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_encode_event = codec.encode_event


def _as_corrupt(damage: CorruptSegment) -> CorruptSegment:
    """Return a plain CorruptSegment (picklable, no event payload) for *damage*."""
    return CorruptSegment(
        str(damage), damage.path, damage.offset, damage.first_seq, damage.last_seq
    )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _small_frames(index: SegmentIndex) -> bool:
    """Return whether a segment's frames average so few events that a dictionary helps."""
    return index.frames > 0 and index.count < index.frames * 8


def _segment_may_match(
    index: SegmentIndex,
    since_us: int | None,
    until_us: int | None,
    filters: dict[str, list[str | None]],
) -> bool:
    if (
        (since_us is not None or until_us is not None)
        and index.count
        and not any(b.damaged for b in index.blocks)
    ):
        if since_us is not None and index.max_us < since_us:
            return False
        if until_us is not None and index.min_us >= until_us:
            return False
    return all(index.may_contain(field, options) for field, options in filters.items())


def _matcher(
    since: datetime | None, until: datetime | None, filters: dict[str, list[str | None]]
) -> Callable[[EventFields], bool] | None:
    if since is None and until is None and not filters:
        return None
    checks = [(field, set(options)) for field, options in filters.items()]

    def match(event: EventFields) -> bool:
        if since is not None and event.time < since:
            return False
        if until is not None and event.time >= until:
            return False
        return all(getattr(event, field) in options for field, options in checks)

    return match
