"""The write lock: one writer at a time, across processes and across threads.

Cross-process exclusion is an ``flock(2)`` on ``journal.lock`` in the journal
directory, taken with :func:`filelock.lock_descriptor`, the same primitive that
:class:`filelock.FileLock` uses on Linux, so the two exclude each other. The lock
file stays open for the life of the :class:`WriteLock` and is locked and unlocked
in place. ``FileLock`` instead opens and closes the file on every acquisition,
which measured about 100 µs per acquire+release against about 5 µs for the open
descriptor (filelock 4.3.2, CPython 3.11, ext4). That matters because writers
take this lock for every durable append.

A waiter polls with non-blocking ``flock`` calls, 0.5 ms apart at first and
5 ms apart later, so that it can log warnings and honour its deadline.
NOTE: polling gives no FIFO order, so a process that releases and re-acquires
at once can win the lock over a waiter many times in a row.

Within one process, every :class:`WriteLock` on the same directory shares one
state object (a registry keyed by the directory's real path): one descriptor,
one ``threading.Lock`` that serialises the process's threads, and a per-thread
re-entrancy depth. A second ``flock`` on another descriptor of the same process
would otherwise block forever, because ``flock`` locks belong to the open file
description, not to the process.

After each acquisition the holder writes a :class:`HolderRecord` (JSON) to
``journal.lock.holder`` so that waiters, ``journal locks`` and
``journal debug-run`` can name it. The record is a diagnostic, not part of the
locking protocol, and readers tolerate torn or garbled records.

The journal never deletes the lock file. If someone deletes or replaces it
anyway, a waiter that then locks the orphaned inode notices that the path names
another file, drops that lock and retries on the new file. So a waiter never
holds the lock beside a newcomer that locked the new file. A holder that took
the old inode before the deletion does overlap with such a newcomer, and no
lock protocol on the file can prevent that.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pwd
import shlex
import socket
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Annotated, Any

import msgspec
import psutil
from filelock import lock_descriptor, unlock_descriptor

from journal.errors import (
    ForkedJournal,
    InvalidArgument,
    JournalClosed,
    JournalError,
    LockTimeout,
    PermissionProblem,
)

__all__ = [
    "HOLDER_FILE",
    "LOCK_FILE",
    "HolderRecord",
    "LockStats",
    "WriteLock",
    "describe_command",
    "describe_holder",
    "format_command_line",
    "format_rfc3339",
    "holder_alive",
    "probe",
    "read_holder",
]

#: Name of the lock file in the journal directory. The journal never deletes it.
LOCK_FILE = "journal.lock"
#: Name of the holder record file (JSON) next to the lock file.
HOLDER_FILE = "journal.lock.holder"

logger = logging.getLogger("journal")

# Two start times of one process, computed by psutil from the same boot time and
# clock ticks (10 ms), agree far more closely than this.
_START_TIME_TOLERANCE = 0.1
# Bounds the sleep between non-blocking flock attempts while another process
# holds the lock: the first retries come within 50 µs, then at most 1,000 per
# second, which keeps a waiter cheap and the hand-over between writers quick.
_POLL_MIN = 0.00005
_POLL_MAX = 0.001
# Holder records are padded with spaces to a multiple of this size, so that
# successive records of similar length keep the file size unchanged and the
# writer can skip an ftruncate (about 5 µs) on every acquisition.
_RECORD_BLOCK = 512
# Caps the command line stored in a holder record, so a command with thousands
# of arguments cannot make every acquisition write a large record.
_MAX_ARGV_CHARS = 2048
# read_holder reads at most this much; a larger file is not a record we wrote.
_MAX_RECORD_BYTES = 1 << 20


class HolderRecord(msgspec.Struct, kw_only=True):
    """The current or last holder of the write lock, stored in ``journal.lock.holder``.

    ``start_time`` is the holder process's start time (epoch seconds, from psutil).
    Together with ``pid`` and ``host`` it identifies the process even after its pid
    is reused. ``released_at`` is set when the holder released the lock normally,
    so a record without it whose process is gone was left by a holder that died.
    """

    pid: Annotated[int, msgspec.Meta(gt=0)]
    host: str
    thread_name: str
    #: Native thread id (the TID that ``ps -L``, ``top -H`` and py-spy show).
    thread_id: int
    #: ``sys.argv[0]``, or ``sys.executable`` when the program ran as ``python -c``.
    program: str
    #: The process's command line (from /proc), shortened to about 2,000 characters.
    argv: list[str]
    uid: int
    start_time: float
    acquired_at: float
    #: What the holder is doing: ``append``, ``retention``, ``lock()`` and so on.
    purpose: str = ""
    released_at: float | None = None


class LockStats(msgspec.Struct):
    """Acquisition counters of one :class:`WriteLock`; waits are in seconds.

    ``contended`` counts acquisitions whose first non-blocking attempt failed.
    ``acquisitions`` includes re-entrant ones, which never wait.
    """

    acquisitions: int = 0
    contended: int = 0
    total_wait: float = 0.0
    max_wait: float = 0.0

    def snapshot(self) -> LockStats:
        """Return an independent copy."""
        return msgspec.structs.replace(self)


_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in range(32)} | {
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\r"): "\\r",
}

_record_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(HolderRecord)


# --- identity of this process -------------------------------------------------


@dataclass(frozen=True)
class _ProcessIdentity:
    pid: int
    host: str
    uid: int
    start_time: float
    program: str
    argv: list[str]


_identity: _ProcessIdentity | None = None


def _process_identity() -> _ProcessIdentity:
    """Return this process's identity, computed once per pid (so again after a fork)."""
    global _identity  # noqa: PLW0603 - a per-process cache; psutil is too slow per call
    identity = _identity
    pid = os.getpid()
    if identity is not None and identity.pid == pid:
        return identity
    process = psutil.Process(pid)
    try:
        argv = process.cmdline()
    except psutil.Error:
        argv = list(sys.argv)
    # python -c and a script on standard input leave no program name in argv[0].
    program = sys.argv[0] if sys.argv and sys.argv[0] not in {"", "-", "-c"} else None
    identity = _ProcessIdentity(
        pid=pid,
        host=socket.gethostname(),
        uid=os.geteuid(),
        start_time=process.create_time(),
        program=program or sys.executable,
        argv=_shorten_argv(argv or list(sys.argv)),
    )
    _identity = identity
    return identity


def _shorten_argv(argv: list[str]) -> list[str]:
    kept: list[str] = []
    used = 0
    for index, argument in enumerate(argv):
        if used + len(argument) > _MAX_ARGV_CHARS:
            kept.append(f"...({len(argv) - index} more arguments)")
            break
        kept.append(argument)
        used += len(argument)
    return kept


# --- reading and judging holder records ---------------------------------------


def read_holder(directory: str | os.PathLike[str]) -> HolderRecord | None:
    """Read the holder record of the journal in *directory*.

    Returns ``None`` when the record file is missing, empty, half-written or
    garbled, because a record is only a diagnostic. Raises ``OSError`` for other
    failures to read it, such as ``PermissionError``.
    """
    path = Path(directory) / HOLDER_FILE
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_RECORD_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError):
        return None
    if len(data) > _MAX_RECORD_BYTES:
        return None
    try:
        return _record_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def holder_alive(record: HolderRecord) -> bool:
    """Return whether the process that wrote *record* still runs.

    It must run on this host, have the record's pid and the record's start time
    (so a reused pid does not count), and not be a zombie.
    """
    if record.host != _process_identity().host:
        return False
    try:
        process = psutil.Process(record.pid)
        started = process.create_time()
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        # The pid exists but its start time is unreadable, so a reused pid
        # cannot be ruled out; on Linux /proc/PID/stat is readable by everyone.
        return True
    return abs(float(started) - record.start_time) <= _START_TIME_TOLERANCE


def format_rfc3339(epoch: float) -> str:
    """Format epoch seconds as RFC 3339 UTC, e.g. ``2024-05-01T12:00:00.123Z``."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_command_line(argv: list[str]) -> str:
    """Return *argv* quoted as a shell would need it, on one line.

    Control characters (the newlines of a ``python -c`` script) are escaped,
    so the result never spans several lines of a report.
    """
    return shlex.join(argv).translate(_CONTROL_ESCAPES)


def describe_command(argv: list[str], limit: int = 80) -> str:
    """Return *argv* as one short line: the program's base name, then its arguments."""
    if not argv:
        return "?"
    text = format_command_line([Path(argv[0]).name, *argv[1:]])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_holder(record: HolderRecord) -> str:
    """Return ``pid N (command line)``, the form every lock message uses."""
    return f"pid {record.pid} ({describe_command(record.argv or [record.program])})"


def _record_to_dict(record: HolderRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    converted: dict[str, Any] = msgspec.to_builtins(record)
    return converted


# --- probing a lock without holding it -----------------------------------------


def probe(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Report whether the journal's write lock is held, and by whom.

    Returns a dict with ``path`` (the lock file), ``state`` (``"free"`` or
    ``"held"``), ``holder`` (the holder record as a dict, or ``None`` without a
    readable record), ``alive`` (whether the record's process runs, ``None``
    without a record), ``stale`` (the record claims a hold that no live process
    has: the lock is free or the process is gone, and the record was never
    marked released), ``held_for`` (seconds since the live holder acquired the
    lock, else ``None``) and ``detail`` (why something could not be read, or
    ``None``).

    Held-ness comes from one non-blocking shared ``flock`` on a new descriptor,
    released at once. This works for every process that can read the lock
    file, needs no /proc, and a writer that tries the lock during those few
    microseconds only retries a millisecond later. When the lock file is not
    readable, /proc/locks is consulted instead.

    Raises ``FileNotFoundError`` when the lock file does not exist.
    """
    lock_path = str(Path(directory) / LOCK_FILE)
    held = _lock_is_held(lock_path)
    detail = None
    try:
        record = read_holder(directory)
    except OSError as error:
        record = None
        detail = f"cannot read the holder record {error.filename}: {error.strerror}"
    alive = holder_alive(record) if record is not None else None
    unreleased = record is not None and record.released_at is None
    stale = unreleased and (not held or not alive)
    held_for = None
    if held and unreleased and alive and record is not None:
        held_for = max(0.0, time.time() - record.acquired_at)
    return {
        "path": lock_path,
        "state": "held" if held else "free",
        "holder": _record_to_dict(record),
        "alive": alive,
        "stale": stale,
        "held_for": held_for,
        "detail": detail,
    }


def _lock_is_held(lock_path: str) -> bool:
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except PermissionError as error:
        held = _lock_is_held_per_proc(lock_path)
        if held is None:
            raise _permission_problem(lock_path, "read", error) from error
        return held
    try:
        # A shared lock conflicts with writers' exclusive locks but not with
        # other probes, so two concurrent probes cannot see each other as holders.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        # Closing the descriptor drops the probe's own lock.
        os.close(fd)
    return False


def _lock_is_held_per_proc(lock_path: str) -> bool | None:
    """Look the lock file's inode up in /proc/locks; ``None`` if that is unreadable."""
    try:
        info = Path(lock_path).stat()
        with open("/proc/locks", encoding="ascii", errors="replace") as file:
            lines = file.readlines()
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in lines:
        fields = line.split()
        # Lines of blocked waiters have "->" after the index and hold no lock.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return True
    return False


# --- error messages ----------------------------------------------------------


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "no user name"


def _permission_problem(path: str, action: str, error: OSError) -> PermissionProblem:
    """Build the error for a journal file this process may not use.

    The message names the file, its owner and mode, and this process's user,
    because the usual cause is two users (a cron job and a service) writing one
    journal.
    """
    me = os.geteuid()
    reason = error.strerror or str(error)
    if error.errno == errno.EROFS:
        return PermissionProblem(f"cannot {action} {path}: read-only file system")
    try:
        info = Path(path).stat()
        ownership = (
            f"it is owned by uid {info.st_uid} ({_user_name(info.st_uid)}) "
            f"with mode {stat.S_IMODE(info.st_mode):04o}"
        )
    except OSError as stat_error:
        ownership = f"its owner and mode are unknown ({stat_error.strerror})"
    return PermissionProblem(
        f"cannot {action} {path}: {reason}; {ownership}, and this process runs "
        f"as uid {me} ({_user_name(me)}). Run every writer of this journal as "
        f"the same user, or change the owner or mode of {path} (chown, chmod)."
    )


def _open_journal_file(path: str, mode: int) -> int:
    """Open *path* read-write, creating it with exactly *mode* if it is missing.

    Raises PermissionProblem at once when this user may not open or create it,
    so that a writer running as the wrong user fails instead of waiting.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    directory = str(Path(path).parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, "journal directory not found", directory
        ) from None
    except PermissionError as error:
        raise _permission_problem(directory, "create files in", error) from error
    except OSError as error:
        if error.errno != errno.EROFS:
            raise
        raise _permission_problem(directory, "create files in", error) from error
    else:
        # The umask may have removed bits that the caller asked for.
        os.fchmod(fd, mode)
        return fd
    try:
        return os.open(path, flags)
    except PermissionError as error:
        raise _permission_problem(path, "open for writing", error) from error
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise JournalError(
                f"{path} is a symbolic link; the journal does not follow links "
                f"for its lock files. Replace it with a regular file."
            ) from error
        if error.errno == errno.EROFS:
            raise _permission_problem(path, "open for writing", error) from error
        raise


# --- per-process shared state --------------------------------------------------


class _SharedLock:
    """The state that every WriteLock of one process on one directory shares."""

    def __init__(self, real_directory: str, file_mode: int) -> None:
        self.real_directory = real_directory
        self.lock_path = str(Path(real_directory) / LOCK_FILE)
        self.holder_path = str(Path(real_directory) / HOLDER_FILE)
        self.file_mode = file_mode
        self.pid = os.getpid()
        # Serialises this process's threads. Only the owner thread changes the
        # fields below.
        self.mutex = threading.Lock()
        self.owner: int | None = None
        self.depth = 0
        self.record: HolderRecord | None = None
        self.lock_fd: int | None = None
        self.lock_identity: tuple[int, int] | None = None
        # True until the first acquisition on a newly opened lock file, which also
        # checks the holder record: see WriteLock._lock_file.
        self.fresh_lock_file = False
        self.holder_fd: int | None = None
        self.record_size = 0
        # Changed only under the registry lock.
        self.users = 0
        self.retired = False

    def open_files(self) -> int:
        """Open the lock and holder files if needed; return the lock descriptor."""
        if self.lock_fd is None:
            fd = _open_journal_file(self.lock_path, self.file_mode)
            info = os.fstat(fd)
            self.lock_fd = fd
            self.lock_identity = (info.st_dev, info.st_ino)
            self.fresh_lock_file = True
        if self.holder_fd is None:
            self.holder_fd = _open_journal_file(self.holder_path, self.file_mode)
        return self.lock_fd

    def path_still_names_lock_file(self) -> bool:
        try:
            # os.stat, not Path.stat: this runs on every acquisition and
            # building a Path costs more than the system call.
            info = os.stat(self.lock_path)
        except FileNotFoundError:
            return False
        return (info.st_dev, info.st_ino) == self.lock_identity

    def close_files(self) -> None:
        for fd in (self.lock_fd, self.holder_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.lock_fd = None
        self.lock_identity = None
        self.holder_fd = None

    def write_record(self, record: HolderRecord, *, known_size: int | None) -> int:
        """Overwrite the holder file with *record*; return the new file size.

        *known_size* is the file size if this process wrote it last, or ``None``.
        """
        assert self.holder_fd is not None
        data = _record_encoder.encode(record)
        size = -(-(len(data) + 1) // _RECORD_BLOCK) * _RECORD_BLOCK
        padded = data.ljust(size - 1) + b"\n"
        os.pwrite(self.holder_fd, padded, 0)
        if known_size is None:
            known_size = os.fstat(self.holder_fd).st_size
        # Another writer may have left a longer record, whose tail would
        # follow ours and make the file unreadable.
        if known_size != size:
            os.ftruncate(self.holder_fd, size)
        return size


_registry: dict[str, _SharedLock] = {}
# Reentrant because the garbage collector may run a WriteLock's finalizer
# (_detach) on this thread while _attach holds the lock, which deadlocked with a
# plain Lock.
_registry_lock = threading.RLock()


def _attach(real_directory: str, file_mode: int) -> _SharedLock:
    with _registry_lock:
        state = _registry.get(real_directory)
        if state is None or state.retired:
            state = _SharedLock(real_directory, file_mode)
            _registry[real_directory] = state
        state.users += 1
        return state


def _detach(real_directory: str, state: _SharedLock) -> None:
    """Drop one user of *state*; the last one closes its files (ending any flock)."""
    if state.pid != os.getpid():
        return
    with _registry_lock:
        state.users -= 1
        if state.users > 0:
            return
        if _registry.get(real_directory) is state:
            del _registry[real_directory]
        state.retired = True
    # A thread that still holds the lock closes the files when it releases it.
    if state.mutex.acquire(blocking=False):
        try:
            state.close_files()
        finally:
            state.mutex.release()


def _reset_registry_in_child() -> None:
    """Forget the parent's locks in a forked child.

    Closing the child's copies of the descriptors leaves the parent's flock in
    place, because a flock belongs to the open file description and the parent
    still references it. Without this, a child that outlives a killed parent
    would keep the parent's lock held.
    """
    global _registry, _registry_lock  # noqa: PLW0603 - replaced, not mutated: a parent thread may hold the old lock
    for state in _registry.values():
        state.close_files()
    _registry = {}
    _registry_lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_registry_in_child)


# --- waiting -------------------------------------------------------------------


class _Wait:
    """The clock of one acquisition: deadline, periodic warnings and LockTimeout."""

    def __init__(self, lock: WriteLock, limit: float | None) -> None:
        self.lock = lock
        self.started = time.monotonic()
        self.deadline = None if limit is None else self.started + limit
        self.next_warning = self.started + lock.warn_after

    def slice(self, longest: float) -> float:
        """Return the seconds until the deadline or next warning, at most *longest*."""
        now = time.monotonic()
        until = min(longest, self.next_warning - now)
        if self.deadline is not None:
            until = min(until, self.deadline - now)
        return max(until, 0.0)

    def check(
        self, read_holder: Callable[[], HolderRecord | None], in_process: bool
    ) -> None:
        """Raise LockTimeout past the deadline; log a WARNING when one is due.

        *read_holder* is called only then, so polling does not read the record.
        """
        now = time.monotonic()
        waited = now - self.started
        if self.deadline is not None and now >= self.deadline:
            raise self.timeout_error(read_holder(), in_process, waited)
        if now >= self.next_warning:
            self.next_warning = now + self.lock.warn_every
            logger.warning(
                "waiting for the write lock %s for %.1f s so far: %s",
                self.lock.path,
                waited,
                _describe_hold(read_holder(), in_process),
            )

    def timeout_error(
        self, holder: HolderRecord | None, in_process: bool, waited: float
    ) -> LockTimeout:
        directory = self.lock.directory
        message = (
            f"timed out after {waited:.1f} s waiting for the write lock "
            f"{self.lock.path}: {_describe_hold(holder, in_process)}. Run "
            f"`journal locks {directory}` to see the holder, or raise --lock-timeout."
        )
        return LockTimeout(message, self.lock.path, _record_to_dict(holder), waited)


def _describe_hold(holder: HolderRecord | None, in_process: bool) -> str:
    if holder is None or holder.released_at is not None:
        return "the holder is unknown (it has not written a holder record)"
    held_for = max(0.0, time.time() - holder.acquired_at)
    where = (
        f"thread {holder.thread_name!r} of this process"
        if in_process
        else f"{describe_holder(holder)} on {holder.host}"
    )
    return (
        f"it is held by {where} for {holder.purpose or 'an unknown purpose'} "
        f"since {format_rfc3339(holder.acquired_at)} ({held_for:.1f} s)"
    )


# --- the lock ------------------------------------------------------------------


class WriteLock:
    """The journal's write lock on *directory*, exclusive across processes and threads.

    Re-entrant per thread: a thread that holds the lock may acquire it again
    through this or any other WriteLock on the same directory, and must release
    it as often. A thread must release what it acquired; other threads get
    RuntimeError. A thread that ends while holding the lock leaves it held until
    the process exits.

    *timeout* is the default wait in seconds (``None`` waits forever, ``0`` makes
    one attempt). A wait longer than *warn_after* seconds logs a WARNING on the
    ``journal`` logger naming the holder, repeated every *warn_every* seconds.
    *file_mode* is the mode of the lock and holder files when this lock creates
    them. The first WriteLock of a process on a directory sets it for all others.

    A WriteLock is bound to the process that created it: in a forked child,
    every method raises ForkedJournal.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        warn_after: float = 1.0,
        warn_every: float = 5.0,
        file_mode: int = 0o600,
    ) -> None:
        _check_timeout(timeout)
        if warn_after < 0:
            raise InvalidArgument(f"warn_after must be >= 0 s, not {warn_after!r}")
        if warn_every <= 0:
            raise InvalidArgument(f"warn_every must be > 0 s, not {warn_every!r}")
        if file_mode & 0o600 != 0o600 or file_mode & ~0o777:
            raise InvalidArgument(
                f"file_mode must grant the owner read and write and fit in 0o777, "
                f"not {file_mode:#o}"
            )
        self.directory = os.fspath(directory)
        #: The lock file, as the caller spelled the directory.
        self.path = str(Path(self.directory) / LOCK_FILE)
        self.timeout = timeout
        self.warn_after = warn_after
        self.warn_every = warn_every
        self._pid = os.getpid()
        self._closed = False
        self._stats = LockStats()
        self._stats_lock = threading.Lock()
        real_directory = os.path.realpath(self.directory)
        self._state = _attach(real_directory, file_mode)
        self._finalizer = weakref.finalize(self, _detach, real_directory, self._state)

    # -- public API --

    def acquire(
        self, purpose: str = "append", timeout: float | EllipsisType | None = ...
    ) -> float:
        """Acquire the lock and return the seconds spent waiting.

        *timeout* overrides the default given to the constructor (``...``);
        ``None`` waits forever. *purpose* goes into the holder record.

        Raises LockTimeout when the wait exceeds the timeout, PermissionProblem
        when this user may not open or create the lock files, and
        ForkedJournal or JournalClosed when the lock may no longer be used.
        """
        self._check_usable()
        limit = self.timeout if timeout is ... else timeout
        _check_timeout(limit)
        state = self._state
        if state.owner == threading.get_ident():
            state.depth += 1
            self._count(0.0, contended=False)
            return 0.0

        wait = _Wait(self, limit)
        contended = False
        if not state.mutex.acquire(blocking=False):
            contended = True
            self._wait_for_threads(state, wait)
        try:
            if self._state.retired:
                raise JournalClosed(f"the write lock {self.path} was closed")
            contended = self._lock_file(state, wait) or contended
            self._publish_hold(state, purpose)
        except BaseException:
            # An error or KeyboardInterrupt may strike after the flock was taken.
            # Unlocking an unlocked descriptor is a no-op, and no other thread
            # uses the descriptor while this one holds the mutex.
            if state.lock_fd is not None:
                with contextlib.suppress(OSError):
                    unlock_descriptor(state.lock_fd)
            state.mutex.release()
            raise
        waited = time.monotonic() - wait.started
        self._count(waited, contended=contended)
        if waited >= self.warn_after:
            logger.info("acquired the write lock %s after %.1f s", self.path, waited)
        return waited

    def release(self) -> None:
        """Release one level of the calling thread's hold.

        The last level marks the holder record released, then unlocks the file.
        Raises RuntimeError when the calling thread does not hold the lock.
        """
        self._check_forked()
        state = self._state
        if state.owner != threading.get_ident():
            raise RuntimeError(
                f"release() of the write lock {self.path} by a thread that "
                f"does not hold it"
            )
        state.depth -= 1
        if state.depth > 0:
            return
        self._unlock(state)

    def held(self) -> bool:
        """Return whether some thread of this process holds the lock."""
        self._check_forked()
        return self._state.owner is not None

    def held_by_current_thread(self) -> bool:
        """Return whether the calling thread holds the lock."""
        self._check_forked()
        return self._state.owner == threading.get_ident()

    @property
    def stats(self) -> LockStats:
        """A copy of this object's acquisition counters."""
        with self._stats_lock:
            return self._stats.snapshot()

    def close(self) -> None:
        """Detach from the shared state; the last WriteLock closes the files.

        If the calling thread holds the lock, every level of its hold is
        released first. Further use raises JournalClosed. Idempotent.
        """
        self._check_forked()
        if self._closed:
            return
        state = self._state
        if state.owner == threading.get_ident():
            state.depth = 0
            self._unlock(state)
        self._closed = True
        self._finalizer()

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"WriteLock({self.directory!r}, held={self._state.owner is not None})"

    # -- steps of acquire and release --

    def _check_forked(self) -> None:
        if os.getpid() != self._pid:
            raise ForkedJournal(
                f"the write lock {self.path} was opened in process {self._pid} and "
                f"cannot be used in its forked child {os.getpid()}: open the journal "
                f"again in the child"
            )

    def _check_usable(self) -> None:
        self._check_forked()
        if self._closed:
            raise JournalClosed(f"the write lock {self.path} was closed")

    def _wait_for_threads(self, state: _SharedLock, wait: _Wait) -> None:
        """Wait for the thread of this process that holds the lock."""
        while True:
            # The holder is a thread of this process, whose record is in memory.
            wait.check(lambda: state.record, in_process=True)
            slice_ = wait.slice(longest=self.warn_every)
            if slice_ <= 0:
                continue
            if state.mutex.acquire(timeout=slice_):
                return

    def _lock_file(self, state: _SharedLock, wait: _Wait) -> bool:
        """Take the flock; return whether another process made us wait."""
        contended = False
        delay = _POLL_MIN
        while True:
            fd = state.open_files()
            if lock_descriptor(fd, blocking=False):
                if state.path_still_names_lock_file():
                    if not state.fresh_lock_file or not self._held_elsewhere():
                        state.fresh_lock_file = False
                        return contended
                    # The holder record names a live process that never released
                    # the lock: it holds a lock file that was deleted, and this
                    # descriptor names its replacement. Wait until it releases.
                    unlock_descriptor(fd)
                    contended = True
                    wait.check(self._read_holder_quietly, in_process=False)
                    time.sleep(wait.slice(longest=delay))
                    delay = min(delay * 2, _POLL_MAX)
                    continue
                # The file was deleted or replaced while we waited, and we locked
                # the orphaned inode; a newcomer may hold the file now at the path.
                logger.warning(
                    "the lock file %s was deleted or replaced while this process "
                    "waited for it; retrying on the new file",
                    self.path,
                )
                unlock_descriptor(fd)
                state.close_files()
                continue
            contended = True
            wait.check(self._read_holder_quietly, in_process=False)
            time.sleep(wait.slice(longest=delay))
            delay = min(delay * 2, _POLL_MAX)

    def _held_elsewhere(self) -> bool:
        """Return whether the holder record names another live, unreleased holder."""
        record = self._read_holder_quietly()
        return (
            record is not None
            and record.released_at is None
            and record.pid != os.getpid()
            and holder_alive(record)
        )

    def _read_holder_quietly(self) -> HolderRecord | None:
        try:
            return read_holder(self._state.real_directory)
        except OSError:
            return None

    def _publish_hold(self, state: _SharedLock, purpose: str) -> None:
        identity = _process_identity()
        thread = threading.current_thread()
        record = HolderRecord(
            pid=identity.pid,
            host=identity.host,
            thread_name=thread.name,
            thread_id=threading.get_native_id(),
            program=identity.program,
            argv=identity.argv,
            uid=identity.uid,
            start_time=identity.start_time,
            acquired_at=time.time(),
            purpose=purpose,
        )
        state.record_size = state.write_record(record, known_size=None)
        state.record = record
        state.owner = threading.get_ident()
        state.depth = 1

    def _unlock(self, state: _SharedLock) -> None:
        record = state.record
        try:
            # The record must be marked before the flock goes: afterwards the
            # next holder may already have written its own record.
            if record is not None and state.holder_fd is not None:
                released = msgspec.structs.replace(record, released_at=time.time())
                state.write_record(released, known_size=state.record_size)
        finally:
            try:
                if state.lock_fd is not None:
                    unlock_descriptor(state.lock_fd)
            finally:
                state.owner = None
                state.depth = 0
                state.record = None
                if state.retired:
                    state.close_files()
                state.mutex.release()

    def _count(self, waited: float, *, contended: bool) -> None:
        with self._stats_lock:
            stats = self._stats
            stats.acquisitions += 1
            if contended:
                stats.contended += 1
            stats.total_wait += waited
            stats.max_wait = max(stats.max_wait, waited)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout >= 0:
        raise InvalidArgument(f"timeout must be None or >= 0 seconds, not {timeout!r}")
