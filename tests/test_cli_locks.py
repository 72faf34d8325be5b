"""Tests of ``journal locks`` and ``journal debug-run`` as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal.lock import LOCK_FILE, WriteLock

REPO = Path(__file__).resolve().parents[1]
JOURNAL = [sys.executable, "-m", "journal"]

# Holds the lock of argv[1] until a line arrives on stdin; prints "locked"
# once it holds it.
HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys
    from journal.lock import WriteLock
    lock = WriteLock(sys.argv[1])
    lock.acquire("test-hold")
    print("locked", flush=True)
    sys.stdin.readline()
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


def journal_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNAL, *args],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=timeout,
        check=False,
    )


def start_holder(directory: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=python_env(),
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
    process = start_holder(journal_dir)
    try:
        yield process
    finally:
        process.kill()
        process.communicate()


# --- journal locks -------------------------------------------------------------


def test_locks_free(journal_dir: Path) -> None:
    result = journal_cli("locks", str(journal_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{journal_dir / LOCK_FILE}: free"
    assert lines[1].startswith(f"last holder: pid {os.getpid()} on ")
    assert "released at" in lines[1]


def test_locks_free_json(journal_dir: Path) -> None:
    result = journal_cli("locks", str(journal_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    info = json.loads(result.stdout)
    assert info["state"] == "free"
    assert info["stale"] is False
    assert info["held_for"] is None
    assert info["holder"]["pid"] == os.getpid()
    assert info["since"].endswith("Z")


def test_locks_held(journal_dir: Path, holder: subprocess.Popen[str]) -> None:
    result = journal_cli("locks", str(journal_dir))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"{journal_dir / LOCK_FILE}: held\n")
    assert f"holder:   pid {holder.pid} on host " in text
    assert "(running)" in text
    assert len(text.splitlines()) == 6
    command_line = text.splitlines()[2]
    assert command_line.startswith(f"command:  {sys.executable} -c '\\nimport sys\\n")
    assert command_line.endswith(f" {journal_dir}")
    assert "thread:   MainThread" in text
    assert "purpose:  test-hold" in text
    assert "since:    " in text
    assert "Z (" in text


def test_locks_held_json(journal_dir: Path, holder: subprocess.Popen[str]) -> None:
    result = journal_cli("locks", str(journal_dir), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["state"] == "held"
    assert info["holder"]["pid"] == holder.pid
    assert info["alive"] is True
    assert info["stale"] is False
    assert 0 <= info["held_for"] < 60


def test_locks_stale(journal_dir: Path) -> None:
    process = start_holder(journal_dir)
    process.send_signal(signal.SIGKILL)
    process.communicate()

    result = journal_cli("locks", str(journal_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{journal_dir / LOCK_FILE}: free\n")
    assert f"stale holder record: pid {process.pid} on " in result.stdout
    assert "no longer runs" in result.stdout

    result = journal_cli("locks", str(journal_dir), "--json")
    info = json.loads(result.stdout)
    assert info["state"] == "free"
    assert info["stale"] is True
    assert info["alive"] is False
    assert info["holder"]["pid"] == process.pid


def test_locks_missing_directory(tmp_path: Path) -> None:
    result = journal_cli("locks", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "is not a journal directory: it does not exist" in result.stderr


def test_locks_directory_without_lock_file(tmp_path: Path) -> None:
    result = journal_cli("locks", str(tmp_path))
    assert result.returncode == 1
    assert f"has no {LOCK_FILE}" in result.stderr


@pytest.mark.parametrize("command", ["locks", "debug-run"])
def test_help_has_example_and_exit_codes(command: str) -> None:
    result = journal_cli(command, "--help")
    assert result.returncode == 0
    assert "Example:" in result.stdout
    assert "Exit codes:" in result.stdout


# --- journal debug-run ---------------------------------------------------------


def test_debug_run_established_usage(journal_dir: Path) -> None:
    """The documented form: a journal command after --; its directory is found."""
    result = journal_cli(
        "debug-run",
        "--timeout-seconds",
        "30",
        "--",
        *JOURNAL,
        "locks",
        str(journal_dir),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert f"watching the write lock in {journal_dir}" in result.stderr
    assert json.loads(result.stdout)["state"] == "free"


def test_debug_run_retention_dry_run(journal_dir: Path) -> None:
    result = journal_cli(
        "debug-run",
        "--timeout-seconds",
        "30",
        "--",
        *JOURNAL,
        "retention",
        "--db-path",
        str(journal_dir),
        "--days",
        "1",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert f"watching the write lock in {journal_dir}" in result.stderr


def test_debug_run_passes_exit_code() -> None:
    result = journal_cli(
        "debug-run", "--timeout-seconds", "30", "--", "sh", "-c", "exit 7"
    )
    assert result.returncode == 7
    assert "no journal directory to watch" in result.stderr


def test_debug_run_without_separator() -> None:
    result = journal_cli(
        "debug-run", "--timeout-seconds", "30", "sh", "-c", "echo $0 --interval", "x"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x --interval\n"


def test_debug_run_timeout(journal_dir: Path, holder: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    result = journal_cli(
        "debug-run",
        "--timeout-seconds",
        "2",
        "--grace",
        "0.5",
        "--interval",
        "0.4",
        "--journal",
        str(journal_dir),
        "--",
        sys.executable,
        "-c",
        "from journal.lock import WriteLock; import sys; "
        "print('about to wait', flush=True); WriteLock(sys.argv[1]).acquire()",
        str(journal_dir),
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 124
    # The CLI's own start-up (imports) adds about a second to the 2.5 s budget.
    assert elapsed < 2.0 + 0.5 + 3.0
    assert result.stdout == "about to wait\n"
    assert f"held by pid {holder.pid}" in result.stderr
    assert "--- partial stdout (14 bytes) ---\nabout to wait\n" in result.stderr
    assert "lock contention summary" in result.stderr


def test_debug_run_command_not_found() -> None:
    result = journal_cli(
        "debug-run", "--timeout-seconds", "5", "--", "no-such-program-x"
    )
    assert result.returncode == 127
    assert "command not found: no-such-program-x" in result.stderr


def test_debug_run_command_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    result = journal_cli("debug-run", "--timeout-seconds", "5", "--", str(script))
    if os.geteuid() == 0 and result.returncode != 126:
        pytest.skip("root may execute files without execute bits on this system")
    assert result.returncode == 126
    assert "is not executable" in result.stderr


def test_debug_run_usage_errors() -> None:
    assert journal_cli("debug-run", "--", "true").returncode == 2
    assert journal_cli("debug-run", "--timeout-seconds", "5").returncode == 2
    assert (
        journal_cli("debug-run", "--timeout-seconds", "0", "--", "true").returncode == 2
    )
