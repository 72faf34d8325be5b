"""Failing writes and foreign files: a full disk, a file size limit, permissions, locks.

A full disk comes from a 256 KiB tmpfs that the test mounts and later grows to
8 MiB. Mounting needs root, so the test skips without root or when mount fails.
A file size limit comes from RLIMIT_FSIZE in a child process. In both, the append that hits
the limit must raise JournalError, leave the failed event wholly absent (or wholly
present), keep the journal verifiable, and succeed again once the limit is lifted,
on the same Journal object.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

try:
    import faultkit
except ImportError:  # tests/ is a package, or pytest runs with another rootdir
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import faultkit

from journal import Journal
from journal.lock import LOCK_FILE

#: The unprivileged user the permission tests switch to (``nobody`` on most systems).
NOBODY = 65534


@contextmanager
def small_tmpfs(mount_point: Path) -> Iterator[Path]:
    """Mount a 256 KiB tmpfs at *mount_point*; skip the test if that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point.mkdir()
    mounted = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=256k,mode=0755",
            "tmpfs",
            str(mount_point),
        ],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def grow_tmpfs(mount_point: Path) -> None:
    """Free space by growing the tmpfs to 8 MiB."""
    subprocess.run(["mount", "-o", "remount,size=8m", str(mount_point)], check=True)


def check_fill_outcome(outcome: dict[str, Any], strerror: str) -> None:
    """Check what :func:`faultkit.fill_until_error` observed around a failed write."""
    acked, failed = outcome["acked"], outcome["failed"]
    assert outcome["error"] is not None, "the limit was never reached"
    assert outcome["error_is_journal_error"], outcome["error"]
    assert strerror in outcome["error"]
    assert acked, "the limit was hit before any event was stored"
    # The failed event is wholly absent or wholly present.
    assert outcome["stored_while_full"] in (acked, [*acked, failed])
    assert outcome["problems_while_full"] == []
    assert outcome["recovery_error"] is None
    assert outcome["stored"] in ([*acked, "after-0"], [*acked, failed, "after-0"])
    assert outcome["mismatches"] == []
    assert outcome["problems"] == []


SEGMENT_SIZES = {"one-segment": 16 << 20, "rolling-segments": 8192}


@pytest.mark.root
@pytest.mark.parametrize("segments", list(SEGMENT_SIZES))
@pytest.mark.parametrize("durability", ["fsync", "flush", "batch"])
def test_full_tmpfs(tmp_path: Path, durability: str, segments: str) -> None:
    with small_tmpfs(tmp_path / "mnt") as mount_point:
        directory = mount_point / "journal"
        journal = Journal.open(
            directory,
            durability=durability,  # type: ignore[arg-type]
            segment_max_bytes=SEGMENT_SIZES[segments],
            flush_interval=30,
        )
        try:
            outcome = faultkit.fill_until_error(
                journal, lambda: grow_tmpfs(mount_point)
            )
        finally:
            journal.close()
        check_fill_outcome(outcome, "No space left on device")
        violations, _ = faultkit.check_journal(
            directory, dict(enumerate(outcome["stored"], start=1))
        )
        assert violations == []


# Fills a journal (argv[1], durability argv[2]) under RLIMIT_FSIZE of 64 KiB with
# SIGXFSZ ignored, so writes fail with EFBIG, then lifts the limit and appends again.
FSIZE_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    sys.path.insert(0, sys.argv[3])
    import faultkit
    from journal import Journal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    journal = Journal.open(sys.argv[1], durability=sys.argv[2], flush_interval=30)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    outcome = faultkit.fill_until_error(
        journal, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    )
    journal.close()
    print(json.dumps(outcome))
    """
)


@pytest.mark.parametrize("durability", ["fsync", "flush", "batch"])
def test_file_size_limit(tmp_path: Path, durability: str) -> None:
    directory = tmp_path / "journal"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            FSIZE_SCRIPT,
            str(directory),
            durability,
            str(Path(faultkit.__file__).parent),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=faultkit.python_env(),
    )
    assert child.returncode == 0, child.stderr[-3000:]
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    check_fill_outcome(outcome, "File too large")
    violations, _ = faultkit.check_journal(
        directory, dict(enumerate(outcome["stored"], start=1))
    )
    assert violations == []


# --- permissions ------------------------------------------------------------------------

# Switches to uid/gid argv[2] unless it is "-" (imports first: the interpreter's files
# may be private to root), opens the journal argv[1] for writing, and prints the
# outcome as JSON.
PERMISSION_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time, pwd
    import journal.journal, journal.verify, journal.retention
    from journal import Journal, PermissionProblem
    if sys.argv[2] != "-":
        os.setgid(int(sys.argv[2]))
        os.setuid(int(sys.argv[2]))
    started = time.monotonic()
    out = {}
    try:
        Journal.open(sys.argv[1], lock_timeout=5).close()
        out["opened"] = True
    except PermissionProblem as err:
        out["permission_problem"] = str(err)
    except BaseException as err:
        out["other_error"] = f"{type(err).__name__}: {err}"
    out["seconds"] = time.monotonic() - started
    print(json.dumps(out))
    """
)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory that any user can reach (the parents of tmp_path are 0700)."""
    with tempfile.TemporaryDirectory(prefix="journal-perm-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path
        # Let the cleanup remove what a test made read-only.
        for inner in path.iterdir():
            inner.chmod(0o700)


def run_as(directory: Path, uid: int | None) -> dict[str, Any]:
    """Run PERMISSION_SCRIPT as *uid* (``None``: as this user) and return its output."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            PERMISSION_SCRIPT,
            str(directory),
            "-" if uid is None else str(uid),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=faultkit.python_env(),
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def write_small_journal(directory: Path) -> None:
    with Journal.open(directory, durability="flush") as journal:
        for n in range(5):
            journal.append(faultkit.make_event("perm", n))


def test_read_only_directory(world_dir: Path) -> None:
    """A directory of mode 0500. Run as root, the check switches to uid 65534, its owner."""
    directory = world_dir / "journal"
    write_small_journal(directory)
    uid = NOBODY if os.geteuid() == 0 else None
    if uid is not None:
        for path in [directory, *directory.iterdir()]:
            os.chown(path, uid, uid)
    owner = pwd.getpwuid(os.geteuid() if uid is None else uid).pw_name
    directory.chmod(0o500)
    out = run_as(directory, uid)
    message = out.get("permission_problem")
    assert message is not None, out
    assert str(directory) in message
    assert owner in message
    assert "500" in message
    assert out["seconds"] < 2.0


def test_segments_of_another_user(world_dir: Path) -> None:
    """A writable directory whose segment files belong to root, mode 0600."""
    if os.geteuid() != 0:
        pytest.skip("files of another user can only be made as root")
    directory = world_dir / "journal"
    write_small_journal(directory)
    directory.chmod(0o777)
    out = run_as(directory, NOBODY)
    message = out.get("permission_problem")
    assert message is not None, out
    segment = faultkit.segment_paths(directory)[0]
    assert str(segment) in message
    assert "root" in message or "uid 0" in message
    assert "600" in message
    assert out["seconds"] < 2.0


# --- the lock file removed while writers wait ---------------------------------------------

# Appends for argv[3] seconds inside `with journal.lock()`, holding it argv[4] seconds
# each time. Inside the lock it creates the directory argv[5] with mkdir, which fails
# if another process is inside too; prints "overlap" then. Acks go to argv[6].
LOCKED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[7])
    import faultkit
    from journal import Journal
    directory, tag = sys.argv[1], sys.argv[2]
    seconds, hold, marker, ack = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
    journal = Journal.open(directory, durability="flush", lock_timeout=30)
    ack_fd = os.open(ack, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        with journal.lock():
            try:
                os.mkdir(marker)
                alone = True
            except FileExistsError:
                alone = False
                print("overlap", tag, flush=True)
            event = journal.append(faultkit.make_event(tag, n))
            n += 1
            time.sleep(hold)
            if alone:
                os.rmdir(marker)
        os.write(ack_fd, f"{event.seq} {event.id}\\n".encode())
    journal.close()
    print("done", n, flush=True)
    """
)


def start_locked_writer(
    directory: Path, tag: str, seconds: float, hold: float, tmp_path: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            LOCKED_WRITER,
            str(directory),
            tag,
            str(seconds),
            str(hold),
            str(tmp_path / "inside"),
            str(tmp_path / f"{tag}.ack"),
            str(Path(faultkit.__file__).parent),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=faultkit.python_env(),
    )


def collect_acks(tmp_path: Path, tags: list[str]) -> dict[int, str]:
    acked: dict[int, str] = {}
    for tag in tags:
        acked.update(faultkit.read_acks(tmp_path / f"{tag}.ack"))
    return acked


def test_lock_file_removed_while_writer_waits(tmp_path: Path) -> None:
    """Two writers take turns while the lock file is deleted every 20 ms."""
    directory = tmp_path / "journal"
    Journal.open(directory).close()
    tags = ["w0", "w1"]
    writers = [
        start_locked_writer(directory, tag, 2.0, 0.005, tmp_path) for tag in tags
    ]
    for writer in writers:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
    removed = 0
    while any(w.poll() is None for w in writers):
        try:
            (directory / LOCK_FILE).unlink()
            removed += 1
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    outputs = [w.communicate(timeout=60) for w in writers]
    for writer, (stdout, stderr) in zip(writers, outputs):
        assert writer.returncode == 0, stderr[-2000:]
        assert "overlap" not in stdout, "two writers held the lock at once"
    assert removed > 10
    acked = collect_acks(tmp_path, tags)
    violations, last_seq = faultkit.check_journal(directory, acked)
    assert violations == []
    assert last_seq == len(acked)


def test_lock_file_removed_while_held(tmp_path: Path) -> None:
    """A writer that starts after the lock file was deleted must wait for the holder."""
    directory = tmp_path / "journal"
    Journal.open(directory).close()
    holder = start_locked_writer(directory, "holder", 0.1, 1.5, tmp_path)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 10
    while not (tmp_path / "inside").exists():
        assert time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.01)
    (directory / LOCK_FILE).unlink()
    newcomer = start_locked_writer(directory, "newcomer", 0.1, 0.01, tmp_path)
    outputs = {
        name: p.communicate(timeout=60)
        for name, p in (("holder", holder), ("newcomer", newcomer))
    }
    for name, (stdout, stderr) in outputs.items():
        assert "Traceback" not in stderr, stderr[-2000:]
        assert "overlap" not in stdout, f"{name} found another writer inside the lock"
    acked = collect_acks(tmp_path, ["holder", "newcomer"])
    violations, _ = faultkit.check_journal(directory, acked)
    assert violations == []
