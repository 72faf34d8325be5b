"""Run a command under a deadline and report who holds the journal's write lock.

This is the engine of ``journal debug-run``. It helps find out why a journal
command hangs: it names the process that holds the write lock while the command
runs, and at the deadline it kills the command's whole process group and prints
what the command wrote so far.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

from journal.errors import JournalError
from journal.lock import LOCK_FILE, describe_command, probe

__all__ = ["CAPTURE_LIMIT", "EXIT_TIMEOUT", "find_journal_dir", "run"]

#: Exit code after the deadline, as timeout(1) uses.
EXIT_TIMEOUT = 124
#: Bytes of each output stream that are kept for the report after a timeout.
CAPTURE_LIMIT = 1 << 20

# Commands of the journal CLI whose first positional argument is the journal directory.
_DIRECTORY_COMMANDS = frozenset(
    {
        "recent",
        "query",
        "tail",
        "export",
        "import",
        "append",
        "retention",
        "verify",
        "checkpoint",
        "segments",
        "stats",
        "locks",
    }
)
# Options of the root ``journal`` group that take a value.
_ROOT_OPTIONS_WITH_VALUE = frozenset({"--log-level"})
# Options of the Python interpreter that take a value (``python -X dev -m journal``).
_PYTHON_OPTIONS_WITH_VALUE = frozenset({"-X", "-W", "--check-hash-based-pycs"})
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?")
# How often the loop checks whether the command exited when no output arrives:
# a grandchild that keeps the pipes open means no EOF announces the exit.
_EXIT_CHECK_INTERVAL = 0.05
# After the final SIGKILL, how long to drain output that is already in the pipes.
_FINAL_DRAIN = 0.2
_READ_SIZE = 65536
_PREFIX = "journal debug-run: "


# --- finding the journal directory in a command line ---------------------------


def find_journal_dir(cmd: list[str]) -> str | None:
    """Return the journal directory that a ``journal`` command line names, or ``None``.

    *cmd* counts as a journal command when its program's base name is
    ``journal`` or when it is ``python -m journal``. The directory is the value
    of ``--db-path DIR`` or ``--db-path=DIR``; without that option, it is a
    positional argument after a subcommand that takes a directory (``recent``,
    ``retention``, ``locks`` and the like). Which options of that subcommand
    take a value is not known here, so among its positional-looking arguments
    the first that contains a lock file wins, then the first existing
    directory, then the first argument.
    """
    args = _journal_arguments(cmd)
    if args is None:
        return None
    for index, argument in enumerate(args):
        if argument == "--":
            break
        if argument == "--db-path" and index + 1 < len(args):
            return args[index + 1]
        if argument.startswith("--db-path="):
            return argument.partition("=")[2]
    index = 0
    while index < len(args) and args[index].startswith("-"):
        index += 2 if args[index] in _ROOT_OPTIONS_WITH_VALUE else 1
    if index >= len(args) or args[index] not in _DIRECTORY_COMMANDS:
        return None
    candidates = _positional_arguments(args[index + 1 :])
    for candidate in candidates:
        if (Path(candidate) / LOCK_FILE).exists():
            return candidate
    for candidate in candidates:
        if Path(candidate).is_dir():
            return candidate
    return candidates[0] if candidates else None


def _journal_arguments(cmd: list[str]) -> list[str] | None:
    """Return the arguments after ``journal`` or ``python -m journal``, or None."""
    if not cmd:
        return None
    program = Path(cmd[0]).name
    if program == "journal":
        return cmd[1:]
    if not _PYTHON_NAME.fullmatch(program):
        return None
    index = 1
    while index < len(cmd):
        argument = cmd[index]
        if argument == "-m":
            module = cmd[index + 1] if index + 1 < len(cmd) else None
            return cmd[index + 2 :] if module == "journal" else None
        if argument == "-mjournal":
            return cmd[index + 1 :]
        if not argument.startswith("-") or argument == "-c":
            return None
        index += 2 if argument in _PYTHON_OPTIONS_WITH_VALUE else 1
    return None


def _positional_arguments(args: list[str]) -> list[str]:
    positional: list[str] = []
    for index, argument in enumerate(args):
        if argument == "--":
            positional.extend(args[index + 1 :])
            break
        if not argument.startswith("-"):
            positional.append(argument)
    return positional


# --- output capture ------------------------------------------------------------


class _Tail:
    """The last *limit* bytes of a stream, with a count of what was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            # CPython deletes from the front of a bytearray without copying.
            del self.data[:excess]

    def heading(self, name: str) -> str:
        if self.total == len(self.data):
            return f"--- partial {name} ({self.total} bytes) ---"
        return (
            f"--- partial {name} (last {len(self.data)} of {self.total} bytes; "
            f"{self.total - len(self.data)} earlier bytes dropped) ---"
        )


class _Stream:
    """One output pipe of the command: where it goes live and what is kept."""

    def __init__(self, name: str, target: IO[bytes]) -> None:
        self.name = name
        self.target: IO[bytes] | None = target
        self.tail = _Tail(CAPTURE_LIMIT)

    def write(self, chunk: bytes) -> None:
        self.tail.add(chunk)
        if self.target is None:
            return
        try:
            self.target.write(chunk)
            self.target.flush()
        except BrokenPipeError:
            # Our reader went away (``| head``); keep capturing for the report.
            self.target = None


class _Pipes:
    """Non-blocking readers of the command's stdout and stderr."""

    def __init__(self, streams: dict[int, _Stream]) -> None:
        self.selector = selectors.DefaultSelector()
        self.streams = streams
        for fd in streams:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)

    @property
    def open(self) -> bool:
        return bool(self.selector.get_map())

    def pump(self, timeout: float) -> bool:
        """Pass through what arrives within *timeout* s; return whether any did."""
        if not self.open:
            time.sleep(max(timeout, 0.0))
            return False
        got_data = False
        for key, _events in self.selector.select(max(timeout, 0.0)):
            fd = key.fd
            assert isinstance(fd, int)
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            if not chunk:
                self.selector.unregister(fd)
                continue
            got_data = True
            self.streams[fd].write(chunk)
        return got_data

    def drain_available(self, limit: float) -> None:
        """Read only what is already in the pipes, for at most *limit* seconds."""
        end = time.monotonic() + limit
        while self.open and time.monotonic() < end and self.pump(0.0):
            pass

    def close(self) -> None:
        self.selector.close()


# --- lock watching -------------------------------------------------------------


@dataclass
class _HolderSeen:
    description: str
    max_held_for: float = 0.0
    in_command_group: bool = False


@dataclass
class _LockWatch:
    """Findings of the periodic probes of the write lock during one run."""

    journal_dir: str
    interval: float
    command_group: int
    command_started: float  # epoch seconds
    report: IO[bytes]
    contended_intervals: int = 0
    longest_wait: float = 0.0
    holders: dict[tuple[int, float], _HolderSeen] = field(default_factory=dict)
    # Epoch time since which other processes held the lock without a gap seen.
    streak_start: float | None = None
    probe_error: str | None = None

    def poll(self) -> None:
        """Probe the lock once and report a hold longer than the interval.

        The reported wait is how long other processes have held the lock with
        no free probe in between, counted from the command's start at the
        earliest. It is an upper bound: the command may not be waiting at all.
        """
        now = time.time()
        info = self._probe()
        if info is None or info["state"] != "held":
            self.streak_start = None
            return

        holder: dict[str, Any] | None = info["holder"]
        held_for: float | None = info["held_for"]
        if holder is None or held_for is None:
            self._note_unknown_holder(info["path"], now)
            return

        seen = self._remember(holder, held_for)
        if seen.in_command_group:
            # The command itself holds the lock, so it is not waiting for it.
            self.streak_start = None
            if held_for > self.interval:
                _say(
                    self.report,
                    f"lock on {info['path']} held by {seen.description} for "
                    f"{held_for:.1f} s (inside the command's process group)",
                )
            return

        if self.streak_start is None:
            self.streak_start = max(self.command_started, now - held_for)
        if held_for <= self.interval:
            return
        waited = now - self.streak_start
        self.contended_intervals += 1
        self.longest_wait = max(self.longest_wait, waited)
        _say(
            self.report,
            f"lock on {info['path']} held by {seen.description} for {held_for:.1f} s; "
            f"command has waited {waited:.1f} s",
        )

    def _probe(self) -> dict[str, Any] | None:
        """Return probe() of the journal, or ``None`` when it cannot be checked."""
        try:
            return probe(self.journal_dir)
        except FileNotFoundError:
            # The command may not have created the journal yet.
            return None
        except (OSError, JournalError) as error:
            message = f"cannot check the lock in {self.journal_dir}: {error}"
            # Report each distinct failure once, not at every interval.
            if message != self.probe_error:
                self.probe_error = message
                _say(self.report, message)
            return None

    def _remember(self, holder: dict[str, Any], held_for: float) -> _HolderSeen:
        key = (holder["pid"], holder["start_time"])
        seen = self.holders.get(key)
        if seen is None:
            in_group = _process_group(holder["pid"]) == self.command_group
            seen = _HolderSeen(_describe_holder_dict(holder), in_command_group=in_group)
            self.holders[key] = seen
        seen.max_held_for = max(seen.max_held_for, held_for)
        return seen

    def _note_unknown_holder(self, path: str, now: float) -> None:
        # The holder wrote no current record: it is between its flock and its
        # record, or it is not a journal writer (a plain filelock user).
        if self.streak_start is None:
            self.streak_start = now
            return
        waited = now - self.streak_start
        if waited <= self.interval:
            return
        self.contended_intervals += 1
        self.longest_wait = max(self.longest_wait, waited)
        _say(
            self.report,
            f"lock on {path} held by an unknown process (no current holder record) "
            f"for at least {waited:.1f} s; command has waited {waited:.1f} s",
        )

    def summary(self) -> str:
        if not self.holders and not self.contended_intervals:
            return (
                f"lock contention summary: the write lock in {self.journal_dir} "
                f"was never seen held for longer than {self.interval:g} s"
            )
        holders = "; ".join(
            f"{seen.description} held it up to {seen.max_held_for:.1f} s"
            + (" (inside the command's process group)" if seen.in_command_group else "")
            for seen in self.holders.values()
        )
        return (
            f"lock contention summary: {self.contended_intervals} checks "
            f"{self.interval:g} s apart found the lock held by another process; "
            f"longest wait {self.longest_wait:.1f} s; holders: {holders or 'unknown'}"
        )


def _describe_holder_dict(holder: dict[str, Any]) -> str:
    argv = holder.get("argv") or [holder.get("program") or "?"]
    return f"pid {holder['pid']} ({describe_command(argv)})"


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _say(stream: IO[bytes], message: str) -> None:
    with suppress(BrokenPipeError):
        stream.write((_PREFIX + message + "\n").encode(errors="replace"))
        stream.flush()


# --- process group control -----------------------------------------------------


def _signal_group(group: int, signum: int) -> None:
    # The group is gone once every member has exited and been reaped.
    with suppress(ProcessLookupError):
        os.killpg(group, signum)


def _group_alive(group: int) -> bool:
    """Return whether a process of *group* is still running (zombies do not count).

    Zombies are skipped because an init that does not reap orphans (as in some
    containers) would keep a dead group "existing" until its SIGKILL.
    """
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and (
                process.status() != psutil.STATUS_ZOMBIE
            ):
                return True
        except (OSError, psutil.Error):
            continue
    return False


@contextmanager
def _forward_signals(group: int) -> Iterator[None]:
    """Forward SIGINT, SIGTERM and SIGHUP to the command's process group.

    The command runs in its own session, so the terminal's Ctrl-C reaches only
    this process. A second SIGINT sends SIGKILL. Python sets signal handlers
    only in the main thread, so elsewhere nothing is forwarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupts = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupts
        if signum == signal.SIGINT:
            interrupts += 1
            if interrupts > 1:
                signum = signal.SIGKILL
        _signal_group(group, signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- the runner ----------------------------------------------------------------


def run(
    cmd: list[str],
    *,
    timeout: float,
    journal_dir: str | None,
    interval: float = 1.0,
    grace: float = 2.0,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
) -> int:
    """Run *cmd* for at most *timeout* seconds; return its exit code, or 124 on timeout.

    The command runs in a new session (so in its own process group). Its
    stdout and stderr pass through live to *stdout* and *stderr* (default: this
    process's) and the last 1 MiB of each is kept. Every *interval* seconds the
    write lock of *journal_dir* is probed, and a hold by another process longer
    than *interval* is reported on *stderr*.

    At the deadline the process group gets SIGTERM, then SIGKILL *grace*
    seconds later if any member is left. The captured output and a contention
    summary go to *stderr*, and the result is 124. A process that keeps the
    pipes open cannot delay this, because pipes are read without blocking.
    A command killed by signal N returns 128 + N, as shells report it.

    After a normal exit, output is read until both pipes close, but for at most
    *grace* seconds; processes the command left behind are not killed.

    Raises FileNotFoundError when the program does not exist and
    PermissionError when it is not executable, as ``subprocess.Popen`` does.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
    if interval <= 0:
        raise ValueError(f"interval must be > 0 seconds, not {interval!r}")
    if grace < 0:
        raise ValueError(f"grace must be >= 0 seconds, not {grace!r}")
    out = stdout if stdout is not None else sys.stdout.buffer
    err = stderr if stderr is not None else sys.stderr.buffer

    started = time.monotonic()
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    # start_new_session makes the child a session and group leader.
    group = process.pid
    assert process.stdout is not None
    assert process.stderr is not None
    streams = {
        process.stdout.fileno(): _Stream("stdout", out),
        process.stderr.fileno(): _Stream("stderr", err),
    }
    pipes = _Pipes(streams)
    watch = None
    if journal_dir is not None:
        watch = _LockWatch(journal_dir, interval, group, time.time(), err)
    try:
        with _forward_signals(group):
            timed_out = _supervise(process, pipes, watch, started + timeout, interval)
            if timed_out:
                return _stop_after_timeout(
                    process, pipes, watch, timeout=timeout, grace=grace, report=err
                )
            _linger(pipes, grace, err)
    finally:
        pipes.close()
        if process.poll() is None:
            # Reached only on an error in this function: leave nothing running.
            _signal_group(group, signal.SIGKILL)
            process.wait()
        process.stdout.close()
        process.stderr.close()
    if watch is not None and watch.contended_intervals:
        _say(err, watch.summary())
    code = process.returncode
    return 128 - code if code < 0 else code


def _supervise(
    process: subprocess.Popen[bytes],
    pipes: _Pipes,
    watch: _LockWatch | None,
    deadline: float,
    interval: float,
) -> bool:
    """Pass output through and probe the lock until exit or deadline.

    Returns whether the deadline passed first.
    """
    next_probe = time.monotonic() + interval
    while True:
        if process.poll() is not None:
            return False
        now = time.monotonic()
        if now >= deadline:
            return True
        if watch is not None and now >= next_probe:
            watch.poll()
            next_probe = now + interval
        wake = min(deadline, next_probe if watch is not None else deadline)
        pipes.pump(min(wake - now, _EXIT_CHECK_INTERVAL))


def _linger(pipes: _Pipes, grace: float, report: IO[bytes]) -> None:
    """After a normal exit, pass through the rest of the output for up to *grace* s."""
    end = time.monotonic() + grace
    while pipes.open and time.monotonic() < end:
        pipes.pump(min(end - time.monotonic(), _EXIT_CHECK_INTERVAL))
    if pipes.open:
        _say(
            report,
            "the command exited, but a process it started still holds its stdout "
            "or stderr open; stopped reading",
        )


def _stop_after_timeout(
    process: subprocess.Popen[bytes],
    pipes: _Pipes,
    watch: _LockWatch | None,
    *,
    timeout: float,
    grace: float,
    report: IO[bytes],
) -> int:
    group = process.pid
    _say(
        report,
        f"timed out after {timeout:g} s; sending SIGTERM to process group {group}",
    )
    _signal_group(group, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        pipes.pump(min(end - time.monotonic(), _EXIT_CHECK_INTERVAL))
        if process.poll() is not None and not _group_alive(group):
            break
    if _group_alive(group):
        _say(report, f"sending SIGKILL to process group {group} after {grace:g} s")
        _signal_group(group, signal.SIGKILL)
    try:
        process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        # A process in uninterruptible sleep dies only when its I/O ends.
        _say(report, f"pid {group} did not exit within 1 s of SIGKILL")
    pipes.drain_available(_FINAL_DRAIN)
    for stream in pipes.streams.values():
        _print_capture(stream, report)
    if watch is not None:
        _say(report, watch.summary())
    else:
        _say(report, "lock contention summary: no journal directory was watched")
    return EXIT_TIMEOUT


def _print_capture(stream: _Stream, report: IO[bytes]) -> None:
    tail = stream.tail
    with suppress(BrokenPipeError):
        report.write(tail.heading(stream.name).encode() + b"\n")
        report.write(bytes(tail.data))
        if tail.data and not tail.data.endswith(b"\n"):
            report.write(b"\n")
        report.write(f"--- end of partial {stream.name} ---\n".encode())
        report.flush()
