"""Tests of the write lock against real processes, threads and files."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from journal.errors import ForkedJournal, LockTimeout, PermissionProblem
from journal.lock import (
    HOLDER_FILE,
    LOCK_FILE,
    HolderRecord,
    WriteLock,
    holder_alive,
    probe,
    read_holder,
)

REPO = Path(__file__).resolve().parents[1]

# Holds the lock of argv[1] for argv[2] seconds, or until a line arrives on
# stdin when argv[2] is negative; prints "locked" once it holds it.
HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from journal.lock import WriteLock
    lock = WriteLock(sys.argv[1])
    lock.acquire("test-hold")
    print("locked", flush=True)
    hold = float(sys.argv[2])
    if hold < 0:
        sys.stdin.readline()
    else:
        time.sleep(hold)
    lock.release()
    print("released", flush=True)
    """
)

# Prints "waiting", acquires the lock of argv[1], appends "<label> enter <t>"
# and "<label> exit <t>" (monotonic seconds) to argv[4] around a hold of
# argv[3] seconds.
WORKER_SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    from journal.lock import WriteLock
    logging.basicConfig()
    directory, label, hold, log = sys.argv[1:5]
    lock = WriteLock(directory, timeout=20)
    print("waiting", flush=True)
    lock.acquire(label)
    print("locked", flush=True)
    with open(log, "a") as file:
        file.write(f"{label} enter {time.monotonic()}\\n")
    time.sleep(float(hold))
    with open(log, "a") as file:
        file.write(f"{label} exit {time.monotonic()}\\n")
    lock.release()
    """
)


def python_env() -> dict[str, str]:
    """Return an environment in which a child python imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def start_script(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )


def expect_line(process: subprocess.Popen[str], expected: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != expected:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(
            f"expected {expected!r} from pid {process.pid}, got {line!r}: {stderr}"
        )


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    directory.mkdir()
    return directory


@pytest.fixture
def holder(journal_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that holds the lock until the test ends (or kills it)."""
    process = start_script(HOLDER_SCRIPT, str(journal_dir), "-1")
    try:
        expect_line(process, "locked")
        yield process
    finally:
        process.kill()
        process.communicate()


# --- timeouts, stats and warnings ----------------------------------------------


def test_timeout_names_holder(journal_dir: Path, holder: subprocess.Popen[str]) -> None:
    lock = WriteLock(journal_dir, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as caught:
        lock.acquire()
    elapsed = time.monotonic() - started
    error = caught.value
    assert error.holder is not None
    assert error.holder["pid"] == holder.pid
    assert error.holder["purpose"] == "test-hold"
    assert f"pid {holder.pid}" in str(error)
    assert "timed out after 0.5 s" in str(error)
    assert f"journal locks {journal_dir}" in str(error)
    assert error.path == str(journal_dir / LOCK_FILE)
    assert 0.5 <= error.waited < 1.5
    assert elapsed < 1.5
    assert not lock.held()


def test_lock_timeout_pickles(journal_dir: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockTimeout) as caught:
        WriteLock(journal_dir, timeout=0.1).acquire()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(copy, LockTimeout)
    assert str(copy) == str(caught.value)
    assert copy.path == caught.value.path
    assert copy.holder == caught.value.holder
    assert copy.waited == caught.value.waited


def test_acquire_timeout_zero_is_one_attempt(
    journal_dir: Path, holder: subprocess.Popen[str]
) -> None:
    lock = WriteLock(journal_dir, timeout=30)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        lock.acquire(timeout=0)
    assert time.monotonic() - started < 0.5


def test_stats_count_contended_waits(journal_dir: Path) -> None:
    process = start_script(HOLDER_SCRIPT, str(journal_dir), "0.4")
    try:
        expect_line(process, "locked")
        lock = WriteLock(journal_dir, timeout=10)
        waited = lock.acquire()
        lock.release()
    finally:
        process.communicate()
    assert waited > 0.1
    stats = lock.stats
    assert stats.acquisitions == 1
    assert stats.contended == 1
    assert stats.max_wait == pytest.approx(waited, abs=0.01)
    assert stats.total_wait == pytest.approx(waited, abs=0.01)

    assert lock.acquire() < 0.1
    lock.release()
    stats = lock.stats
    assert stats.acquisitions == 2
    assert stats.contended == 1


def test_stats_snapshot_is_a_copy(journal_dir: Path) -> None:
    lock = WriteLock(journal_dir)
    before = lock.stats
    with lock:
        pass
    assert before.acquisitions == 0
    assert lock.stats.acquisitions == 1


def test_long_wait_logs_warnings(
    journal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process = start_script(HOLDER_SCRIPT, str(journal_dir), "0.7")
    try:
        expect_line(process, "locked")
        lock = WriteLock(journal_dir, timeout=10, warn_after=0.1, warn_every=0.2)
        with caplog.at_level(logging.WARNING, logger="journal"):
            lock.acquire()
        lock.release()
    finally:
        process.communicate()
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "journal"
    ]
    # Due at about 0.1, 0.3 and 0.5 s of a wait of about 0.7 s.
    assert len(warnings) >= 2
    message = warnings[0].getMessage()
    assert "waiting for the write lock" in message
    assert f"pid {process.pid}" in message
    assert "test-hold" in message


# --- holder records, liveness and probe ----------------------------------------


def test_probe_reports_live_holder(
    journal_dir: Path, holder: subprocess.Popen[str]
) -> None:
    info = probe(journal_dir)
    assert info["state"] == "held"
    assert info["holder"]["pid"] == holder.pid
    assert info["alive"] is True
    assert info["stale"] is False
    assert info["held_for"] is not None
    assert 0 <= info["held_for"] < 30


def test_kill_9_frees_lock_and_leaves_stale_record(journal_dir: Path) -> None:
    process = start_script(HOLDER_SCRIPT, str(journal_dir), "-1")
    expect_line(process, "locked")
    process.send_signal(signal.SIGKILL)
    process.communicate()

    info = probe(journal_dir)
    assert info["state"] == "free"
    assert info["holder"]["pid"] == process.pid
    assert info["holder"]["released_at"] is None
    assert info["alive"] is False
    assert info["stale"] is True
    assert info["held_for"] is None

    lock = WriteLock(journal_dir)
    assert lock.acquire(timeout=0) < 0.1
    lock.release()
    assert probe(journal_dir)["stale"] is False


def test_release_marks_record_released(journal_dir: Path) -> None:
    lock = WriteLock(journal_dir)
    lock.acquire("retention")
    record = read_holder(journal_dir)
    assert record is not None
    assert record.pid == os.getpid()
    assert record.purpose == "retention"
    assert record.released_at is None
    assert record.thread_name == threading.current_thread().name
    lock.release()
    record = read_holder(journal_dir)
    assert record is not None
    assert record.released_at is not None
    assert record.released_at >= record.acquired_at
    info = probe(journal_dir)
    assert info["state"] == "free"
    assert info["stale"] is False


def test_lock_files_are_private(journal_dir: Path) -> None:
    with WriteLock(journal_dir):
        pass
    assert (journal_dir / LOCK_FILE).stat().st_mode & 0o777 == 0o600
    assert (journal_dir / HOLDER_FILE).stat().st_mode & 0o777 == 0o600


def test_file_mode_is_applied_despite_umask(journal_dir: Path) -> None:
    old = os.umask(0o077)
    try:
        with WriteLock(journal_dir, file_mode=0o640):
            pass
    finally:
        os.umask(old)
    assert (journal_dir / LOCK_FILE).stat().st_mode & 0o777 == 0o640


def _valid_record_bytes() -> bytes:
    record = HolderRecord(
        pid=os.getpid(),
        host="host",
        thread_name="MainThread",
        thread_id=1,
        program="prog",
        argv=["prog", "--flag"],
        uid=0,
        start_time=1.0,
        acquired_at=2.0,
    )
    return msgspec.json.encode(record)


BAD_RECORDS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"   \n", id="blank"),
    pytest.param(b"\x00" * 512, id="zeros"),
    pytest.param(b"not json", id="text"),
    pytest.param(b"\xff\xfe\x00garbage", id="binary"),
    pytest.param(b"[1, 2, 3]", id="array"),
    pytest.param(b'{"pid": 1', id="truncated-object"),
    pytest.param(_valid_record_bytes()[:40], id="half-written"),
    pytest.param(_valid_record_bytes() + b'ength"]}', id="old-tail-after-record"),
    pytest.param(b'{"pid": "12", "host": "h"}', id="wrong-types"),
    pytest.param(_valid_record_bytes().replace(b'"pid":', b'"pid":-', 1), id="bad-pid"),
]


@pytest.mark.parametrize("content", BAD_RECORDS)
def test_read_holder_tolerates_bad_record(journal_dir: Path, content: bytes) -> None:
    with WriteLock(journal_dir):
        pass
    (journal_dir / HOLDER_FILE).write_bytes(content)
    assert read_holder(journal_dir) is None
    info = probe(journal_dir)
    assert info["state"] == "free"
    assert info["holder"] is None
    assert info["alive"] is None
    assert info["stale"] is False


def test_read_holder_missing_file(journal_dir: Path) -> None:
    assert read_holder(journal_dir) is None
    assert read_holder(journal_dir / "no-such-dir") is None


def test_read_holder_accepts_valid_record(journal_dir: Path) -> None:
    (journal_dir / HOLDER_FILE).write_bytes(_valid_record_bytes() + b"   \n")
    record = read_holder(journal_dir)
    assert record is not None
    assert record.argv == ["prog", "--flag"]


def test_holder_alive_checks_start_time(journal_dir: Path) -> None:
    with WriteLock(journal_dir):
        record = read_holder(journal_dir)
    assert record is not None
    assert holder_alive(record)
    reused_pid = msgspec.structs.replace(record, start_time=record.start_time - 3600)
    assert not holder_alive(reused_pid)
    other_host = msgspec.structs.replace(record, host=record.host + "-elsewhere")
    assert not holder_alive(other_host)


def test_probe_missing_lock_file(journal_dir: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(journal_dir)


# --- exclusion within one process ----------------------------------------------


def test_two_locks_one_process_exclude_threads(journal_dir: Path) -> None:
    first = WriteLock(journal_dir)
    second = WriteLock(journal_dir)
    errors: list[BaseException] = []

    def contend() -> None:
        try:
            second.acquire(timeout=0.2)
        except LockTimeout as error:
            errors.append(error)

    first.acquire()
    thread = threading.Thread(target=contend, name="contender")
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert "of this process" in str(errors[0])

    # The same thread may take the lock through the other object: no deadlock.
    assert second.acquire(timeout=0.5) == 0.0
    second.release()
    first.release()
    assert not first.held()

    thread = threading.Thread(target=second.acquire, kwargs={"timeout": 1})
    thread.start()
    thread.join(5)
    assert second.held()
    assert not second.held_by_current_thread()


def test_threads_never_overlap(journal_dir: Path) -> None:
    inside = 0
    overlaps = 0
    entries = 0
    counter_lock = threading.Lock()

    def work() -> None:
        nonlocal inside, overlaps, entries
        lock = WriteLock(journal_dir, timeout=20)
        for _ in range(200):
            with lock:
                with counter_lock:
                    inside += 1
                    entries += 1
                    if inside > 1:
                        overlaps += 1
                time.sleep(0)
                with counter_lock:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert entries == 6 * 200
    assert overlaps == 0


def test_reentrant_acquire(journal_dir: Path) -> None:
    lock = WriteLock(journal_dir)
    lock.acquire("lock()")
    assert lock.acquire() == 0.0
    assert lock.held_by_current_thread()
    lock.release()
    assert lock.held()
    assert probe(journal_dir)["state"] == "held"
    # The outer purpose stays in the record until the last release.
    record = read_holder(journal_dir)
    assert record is not None
    assert record.purpose == "lock()"
    lock.release()
    assert not lock.held()
    assert probe(journal_dir)["state"] == "free"
    assert lock.stats.acquisitions == 2


def test_release_by_other_thread_raises(journal_dir: Path) -> None:
    lock = WriteLock(journal_dir)
    lock.acquire()
    errors: list[BaseException] = []

    def release() -> None:
        try:
            lock.release()
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=release)
    thread.start()
    thread.join(5)
    assert len(errors) == 1
    assert lock.held_by_current_thread()
    lock.release()


def test_close_releases_and_rejects_use(journal_dir: Path) -> None:
    from journal.errors import JournalClosed

    lock = WriteLock(journal_dir)
    lock.acquire()
    lock.close()
    assert probe(journal_dir)["state"] == "free"
    with pytest.raises(JournalClosed):
        lock.acquire()
    lock.close()


# --- exclusion across processes when the lock file is replaced -----------------


def test_lock_file_removed_while_waiting(journal_dir: Path, tmp_path: Path) -> None:
    """A waiter that locks the deleted inode must not hold it beside a newcomer."""
    log = tmp_path / "holds.log"
    first = start_script(HOLDER_SCRIPT, str(journal_dir), "-1")
    waiter = newcomer = None
    try:
        expect_line(first, "locked")
        waiter = start_script(
            WORKER_SCRIPT, str(journal_dir), "waiter", "0.2", str(log)
        )
        expect_line(waiter, "waiting")
        # Let the waiter open the old lock file and start polling it.
        time.sleep(0.5)
        (journal_dir / LOCK_FILE).unlink()

        newcomer = start_script(
            WORKER_SCRIPT, str(journal_dir), "newcomer", "1.0", str(log)
        )
        expect_line(newcomer, "waiting")
        # The newcomer locks the new file, but the holder record names the first
        # process, still alive and unreleased, so it waits for that release.
        time.sleep(0.5)
        assert not log.exists() or "newcomer enter" not in log.read_text()
        assert first.stdin is not None
        first.stdin.write("\n")
        first.stdin.flush()
        expect_line(first, "released")
        # The waiter now locks the orphaned inode and must retry on the new file.

        _, waiter_stderr = waiter.communicate(timeout=20)
        newcomer.communicate(timeout=20)
    finally:
        for process in (first, waiter, newcomer):
            if process is not None:
                process.kill()
                process.communicate()

    assert waiter.returncode == 0, waiter_stderr
    times = {}
    for line in log.read_text().splitlines():
        label, event, stamp = line.split()
        times[label, event] = float(stamp)
    waiter_span = (times["waiter", "enter"], times["waiter", "exit"])
    newcomer_span = (times["newcomer", "enter"], times["newcomer", "exit"])
    overlap = min(waiter_span[1], newcomer_span[1]) - max(
        waiter_span[0], newcomer_span[0]
    )
    assert overlap <= 0, f"waiter {waiter_span} and newcomer {newcomer_span} overlap"
    assert "deleted or replaced" in waiter_stderr
    assert (journal_dir / LOCK_FILE).exists()


# --- fork and permissions ------------------------------------------------------


def test_forked_child_cannot_use_parent_lock(journal_dir: Path) -> None:
    lock = WriteLock(journal_dir)
    lock.acquire()
    pid = os.fork()
    if pid == 0:  # child: report through the exit code, never return into pytest
        code = 0
        try:
            try:
                lock.acquire()
                code |= 1
            except ForkedJournal as error:
                if "open the journal again in the child" not in str(error):
                    code |= 2
            try:
                lock.release()
                code |= 4
            except ForkedJournal:
                pass
            # A lock opened in the child is a separate holder, excluded by the parent.
            try:
                WriteLock(journal_dir).acquire(timeout=0)
                code |= 8
            except LockTimeout:
                pass
        except BaseException:
            code |= 16
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The child's exit closed its copies of the descriptors, not the parent's lock.
    assert lock.held_by_current_thread()
    assert probe(journal_dir)["state"] == "held"
    lock.release()
    assert probe(journal_dir)["state"] == "free"


def _attempt_as_nobody(directory: Path) -> tuple[int, str]:
    """Acquire the lock of *directory* as uid 65534 in a forked child.

    Returns the child's exit code (0 PermissionProblem raised, 77 setuid not
    permitted, other values another failure) and its message.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        message = ""
        try:
            os.close(read_end)
            try:
                os.setgid(65534)
                os.setuid(65534)
            except PermissionError as error:
                code, message = 77, str(error)
            else:
                started = time.monotonic()
                try:
                    WriteLock(directory, timeout=10).acquire()
                    message = "acquired without error"
                except PermissionProblem as error:
                    message = str(error)
                    code = 0 if time.monotonic() - started < 2 else 3
                except BaseException as error:
                    message = f"{type(error).__name__}: {error}"
            os.write(write_end, message.encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), message


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that uid 65534 can reach (tmp_path's parents are private)."""
    directory = Path(tempfile.mkdtemp(prefix="journal-lock-test-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()


def test_permission_problem_for_foreign_lock_file(shared_dir: Path) -> None:
    with WriteLock(shared_dir):
        pass
    lock_path = shared_dir / LOCK_FILE
    if os.geteuid() == 0:
        code, message = _attempt_as_nobody(shared_dir)
        if code == 77:
            pytest.skip(f"cannot switch to uid 65534: {message}")
        assert code == 0, message
        assert "uid 0 (root)" in message
        assert "uid 65534" in message
    else:
        lock_path.chmod(0o400)
        with pytest.raises(PermissionProblem) as caught:
            WriteLock(shared_dir, timeout=10).acquire()
        message = str(caught.value)
        assert f"uid {os.geteuid()}" in message
    assert str(lock_path) in message
    assert "mode 0" in message


def test_permission_problem_for_unwritable_directory(shared_dir: Path) -> None:
    if os.geteuid() == 0:
        code, message = _attempt_as_nobody(shared_dir)
        if code == 77:
            pytest.skip(f"cannot switch to uid 65534: {message}")
        assert code == 0, message
    else:
        shared_dir.chmod(0o555)
        try:
            with pytest.raises(PermissionProblem) as caught:
                WriteLock(shared_dir, timeout=10).acquire()
        finally:
            shared_dir.chmod(0o755)
        message = str(caught.value)
    assert f"cannot create files in {shared_dir}" in message
    assert "mode 0" in message
