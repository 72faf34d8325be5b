"""Tests of the debug runner with real commands, process groups and lock holders."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal.debugrun import CAPTURE_LIMIT, EXIT_TIMEOUT, find_journal_dir, run
from journal.lock import LOCK_FILE, WriteLock

REPO = Path(__file__).resolve().parents[1]

# Holds the lock of argv[1] for argv[2] seconds, or until stdin closes when
# argv[2] is negative; prints "locked" once it holds it.
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
    """
)

# Waits for the lock of argv[1], then prints "got the lock".
WAITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from journal.lock import WriteLock
    lock = WriteLock(sys.argv[1], timeout=30)
    print("waiting", flush=True)
    with lock:
        print("got the lock", flush=True)
    """
)


def python_env() -> dict[str, str]:
    """Return an environment in which a child python imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


@pytest.fixture(autouse=True)
def _child_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the commands that run() starts import this checkout."""
    monkeypatch.setenv("PYTHONPATH", python_env()["PYTHONPATH"])


def start_holder(directory: Path, hold: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(directory), str(hold)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "locked":
        process.kill()
        pytest.fail(f"the holder did not take the lock: {line!r}")
    return process


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    directory.mkdir()
    with WriteLock(directory):
        pass
    return directory


@pytest.fixture
def holder(journal_dir: Path) -> Iterator[subprocess.Popen[str]]:
    process = start_holder(journal_dir, -1)
    try:
        yield process
    finally:
        process.kill()
        process.communicate()


def run_captured(cmd: list[str], **kwargs: object) -> tuple[int, bytes, bytes, float]:
    """Call run() with in-memory streams; return code, stdout, stderr and seconds."""
    out, err = io.BytesIO(), io.BytesIO()
    started = time.monotonic()
    code = run(cmd, stdout=out, stderr=err, **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


# --- exit codes and output -----------------------------------------------------


def test_run_passes_exit_code_and_output() -> None:
    script = (
        "import sys; print('to stdout'); "
        "print('to stderr', file=sys.stderr); sys.exit(3)"
    )
    code, out, err, _ = run_captured(
        [sys.executable, "-c", script], timeout=20, journal_dir=None
    )
    assert code == 3
    assert out == b"to stdout\n"
    assert err == b"to stderr\n"


def test_run_success_has_no_report() -> None:
    code, out, err, _ = run_captured(["true"], timeout=20, journal_dir=None)
    assert code == 0
    assert out == b""
    assert err == b""


def test_run_signal_exit_code() -> None:
    code, _, _, _ = run_captured(
        ["sh", "-c", "kill -TERM $$"], timeout=20, journal_dir=None
    )
    assert code == 128 + 15


def test_run_missing_program_raises() -> None:
    with pytest.raises(FileNotFoundError):
        run_captured(["/nonexistent/program"], timeout=5, journal_dir=None)


def test_run_rejects_bad_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        run_captured(["true"], timeout=0, journal_dir=None)


# --- timeouts ------------------------------------------------------------------


def test_timeout_prints_partial_output() -> None:
    script = (
        "import sys, time; print('partial-out', flush=True); "
        "print('partial-err', file=sys.stderr, flush=True); time.sleep(60)"
    )
    code, out, err, elapsed = run_captured(
        [sys.executable, "-c", script], timeout=1.0, grace=0.5, journal_dir=None
    )
    assert code == EXIT_TIMEOUT
    assert elapsed < 1.0 + 0.5 + 1.0
    assert out == b"partial-out\n"
    report = err.decode()
    assert "timed out after 1 s" in report
    assert "--- partial stdout (12 bytes) ---\npartial-out\n" in report
    assert "--- partial stderr (12 bytes) ---\npartial-err\n" in report
    assert "--- end of partial stderr ---" in report
    assert "lock contention summary" in report


def test_timeout_with_grandchild_holding_pipes() -> None:
    code, out, err, elapsed = run_captured(
        ["sh", "-c", "sleep 100 & echo hi; sleep 100"],
        timeout=1.0,
        grace=0.5,
        journal_dir=None,
    )
    assert code == EXIT_TIMEOUT
    assert elapsed < 1.0 + 0.5 + 1.0
    assert out == b"hi\n"
    assert b"--- partial stdout (3 bytes) ---\nhi\n" in err


def test_timeout_kills_command_ignoring_sigterm() -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    code, _, err, elapsed = run_captured(
        [sys.executable, "-c", script], timeout=1.0, grace=0.5, journal_dir=None
    )
    assert code == EXIT_TIMEOUT
    assert elapsed < 1.0 + 0.5 + 1.0
    assert b"sending SIGKILL to process group" in err


def test_timeout_capture_is_bounded() -> None:
    size = 3 * CAPTURE_LIMIT
    script = (
        "import sys, time; "
        f"sys.stdout.buffer.write(b'x' * {size - 4} + b'END\\n'); sys.stdout.flush(); "
        "time.sleep(60)"
    )
    code, out, err, _ = run_captured(
        [sys.executable, "-c", script], timeout=1.5, grace=0.5, journal_dir=None
    )
    assert code == EXIT_TIMEOUT
    assert len(out) == size
    heading = f"--- partial stdout (last {CAPTURE_LIMIT} of {size} bytes;"
    assert heading.encode() in err
    assert b"END\n--- end of partial stdout ---" in err


# --- lock contention -----------------------------------------------------------


def test_timeout_reports_lock_holder(
    journal_dir: Path, holder: subprocess.Popen[str]
) -> None:
    code, out, err, elapsed = run_captured(
        [sys.executable, "-c", WAITER_SCRIPT, str(journal_dir)],
        timeout=2.0,
        grace=0.5,
        interval=0.4,
        journal_dir=str(journal_dir),
    )
    assert code == EXIT_TIMEOUT
    assert elapsed < 2.0 + 0.5 + 1.0
    assert out == b"waiting\n"
    report = err.decode()
    assert f"lock on {journal_dir / LOCK_FILE} held by pid {holder.pid}" in report
    assert "command has waited" in report
    summary = next(line for line in report.splitlines() if "contention summary" in line)
    assert f"pid {holder.pid}" in summary
    assert "longest wait" in summary


def test_contention_summary_after_normal_exit(journal_dir: Path) -> None:
    holder = start_holder(journal_dir, 1.5)
    try:
        code, out, err, _ = run_captured(
            [sys.executable, "-c", WAITER_SCRIPT, str(journal_dir)],
            timeout=20,
            interval=0.3,
            journal_dir=str(journal_dir),
        )
    finally:
        holder.kill()
        holder.communicate()
    assert code == 0
    assert out == b"waiting\ngot the lock\n"
    report = err.decode()
    assert f"held by pid {holder.pid}" in report
    assert "contention summary" in report


def test_holder_inside_command_is_marked(journal_dir: Path) -> None:
    code, _, err, _ = run_captured(
        [sys.executable, "-c", HOLDER_SCRIPT, str(journal_dir), "1.0"],
        timeout=20,
        interval=0.3,
        journal_dir=str(journal_dir),
    )
    assert code == 0
    assert b"inside the command's process group" in err
    assert b"command has waited" not in err


def test_missing_journal_dir_is_ignored(tmp_path: Path) -> None:
    code, _, err, _ = run_captured(
        ["sleep", "0.5"],
        timeout=20,
        interval=0.1,
        journal_dir=str(tmp_path / "not-created-yet"),
    )
    assert code == 0
    assert err == b""


# --- finding the journal directory ---------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (["journal", "retention", "--db-path", "./tmp/db", "--days", "1"], "./tmp/db"),
        (["journal", "retention", "--db-path=./tmp/db", "--dry-run"], "./tmp/db"),
        (["journal", "--db-path", "d", "verify"], "d"),
        (["/usr/local/bin/journal", "recent", "./audit"], "./audit"),
        (["journal", "import", "./audit", "events.json"], "./audit"),
        (["journal", "-v", "--log-level", "debug", "verify", "d"], "d"),
        (["journal", "-vv", "locks", "d", "--json"], "d"),
        (["journal", "tail", "-f", "--", "d"], "d"),
        (["python3", "-m", "journal", "stats", "d"], "d"),
        (["/usr/bin/python3.11", "-u", "-m", "journal", "segments", "d"], "d"),
        (["python", "-mjournal", "checkpoint", "d"], "d"),
        (["python", "-X", "dev", "-m", "journal", "export", "d"], "d"),
        (["journal", "debug-run", "--timeout-seconds", "5", "--", "ls"], None),
        (["journal", "--help"], None),
        (["journal", "recent"], None),
        (["journal"], None),
        (["python3", "-c", "import journal"], None),
        (["python3", "-m", "pytest", "tests"], None),
        (["ls", "-l", "d"], None),
        (["journalctl", "recent", "d"], None),
        ([], None),
    ],
)
def test_find_journal_dir(cmd: list[str], expected: str | None) -> None:
    assert find_journal_dir(cmd) == expected


def test_find_journal_dir_skips_option_values(journal_dir: Path) -> None:
    cmd = ["journal", "recent", "-n", "10", str(journal_dir)]
    assert find_journal_dir(cmd) == str(journal_dir)
