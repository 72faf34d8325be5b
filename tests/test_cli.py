"""The ``journal`` command line, through click's CliRunner and as a real program."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BASE_TIME, make_event

from journal import Journal, __version__, codec
from journal.cli import main
from journal.segment import FLAG_ZSTD, KIND_EVENTS, pack_frame, read_header, scan_frames

JOURNAL_BIN = Path(sys.executable).with_name("journal")
EVENT_KEYS = {
    "seq",
    "id",
    "time",
    "actor",
    "action",
    "target",
    "outcome",
    "source",
    "metadata",
}
ESCAPE = "\x1b"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"NO_COLOR": "1"})


def run_cli(runner: CliRunner, *args: str, code: int = 0):
    """Invoke the CLI in-process and check the exit code."""
    result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    assert ESCAPE not in result.output, args
    return result


def run_real(*args: str, code: int = 0, timeout: float = 60, **options):
    """Run the installed ``journal`` program and check the exit code."""
    env = {**os.environ, "NO_COLOR": "1"}
    completed = subprocess.run(
        [str(JOURNAL_BIN), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **options,
    )
    assert completed.returncode == code, (args, completed.stdout, completed.stderr)
    assert ESCAPE not in completed.stdout + completed.stderr, args
    return completed


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def parse_rfc3339_utc(value: str) -> datetime:
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value[:-1] + "+00:00")
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def check_event_lines(lines: list[dict]) -> None:
    for line in lines:
        assert set(line) == EVENT_KEYS
        assert isinstance(line["seq"], int)
        parse_rfc3339_utc(line["time"])


@pytest.fixture
def filled(journal_dir: Path) -> Path:
    """A journal with 60 events over several segments, times one minute apart."""
    with Journal.open(journal_dir, segment_max_bytes=4096) as journal:
        for i in range(60):
            journal.append(
                make_event(
                    i,
                    actor=["alice", "bob", "carol"][i % 3],
                    action=["login", "logout"][i % 2],
                    outcome="failure" if i % 4 == 0 else "success",
                    time=BASE_TIME + timedelta(minutes=i),
                    source="10.0.0.1",
                    metadata={"i": i, "pad": f"{i:04d}" * 40},
                )
            )
        assert len(journal.segments()) >= 3
    return journal_dir


# -- version and help ----------------------------------------------------------------


def test_version(runner) -> None:
    result = run_cli(runner, "--version")
    assert __version__ in result.stdout
    real = run_real("--version")
    assert real.stdout.strip() == f"journal, version {__version__}"


@pytest.mark.parametrize("command", sorted(main.commands))
def test_help_has_example(runner, command: str) -> None:
    result = run_cli(runner, command, "--help")
    assert "Example" in result.stdout
    assert f"journal {command}" in result.stdout


def test_root_help_lists_commands(runner) -> None:
    result = run_cli(runner, "--help")
    assert "Example" in result.stdout
    for command in main.commands:
        assert command in result.stdout
    real = run_real("-h")
    assert "Example" in real.stdout


# -- append --------------------------------------------------------------------------


def test_append_human_and_json(runner, journal_dir) -> None:
    result = run_cli(
        runner,
        "append",
        journal_dir,
        "--actor",
        "alice",
        "--action",
        "user.create",
        "--target",
        "user/bob",
        "--meta",
        "ticket=OPS-12",
        "--meta",
        "n=3",
        "--meta",
        'tags=["a","b"]',
    )
    assert result.stdout.strip() == "1"
    result = run_cli(
        runner,
        "append",
        journal_dir,
        "--actor",
        "bob",
        "--action",
        "login",
        "--outcome",
        "failure",
        "--source",
        "10.1.2.3",
        "--json",
    )
    (line,) = json_lines(result.stdout)
    check_event_lines([line])
    assert line["seq"] == 2
    assert line["outcome"] == "failure"
    assert line["source"] == "10.1.2.3"
    assert line["target"] is None
    with Journal.open(journal_dir, readonly=True) as journal:
        first, second = list(journal.read())
    assert first.metadata == {"ticket": "OPS-12", "n": 3, "tags": ["a", "b"]}
    assert first.target == "user/bob"
    assert second.id == line["id"]


def test_append_bad_meta_is_usage_error(runner, journal_dir) -> None:
    result = run_cli(
        runner,
        "append",
        journal_dir,
        "--actor",
        "a",
        "--action",
        "b",
        "--meta",
        "novalue",
        code=2,
    )
    assert "KEY=VALUE" in result.stderr


def test_append_invalid_event_exit_1(runner, journal_dir) -> None:
    result = run_cli(
        runner, "append", journal_dir, "--actor", "", "--action", "b", code=1
    )
    assert result.stderr.startswith("journal: error:")
    assert "actor" in result.stderr


def test_append_missing_required_option(runner, journal_dir) -> None:
    result = run_cli(runner, "append", journal_dir, "--actor", "a", code=2)
    assert "--action" in result.stderr


# -- reading commands ----------------------------------------------------------------


def test_recent_human_and_json(runner, filled) -> None:
    human = run_cli(runner, "recent", filled, "-n", "5")
    lines = human.stdout.splitlines()
    assert lines[0].split() == [
        "SEQ",
        "TIME",
        "(UTC)",
        "ACTOR",
        "ACTION",
        "TARGET",
        "OUTCOME",
    ]
    assert [int(line.split()[0]) for line in lines[1:]] == [60, 59, 58, 57, 56]
    result = run_cli(
        runner,
        "recent",
        filled,
        "-n",
        "5",
        "--json",
        "--actor",
        "bob",
        "--actor",
        "carol",
    )
    events = json_lines(result.stdout)
    check_event_lines(events)
    assert [e["seq"] for e in events] == [60, 59, 57, 56, 54]
    assert {e["actor"] for e in events} == {"bob", "carol"}


def test_query_human_and_json(runner, filled) -> None:
    since = (BASE_TIME + timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    until = (BASE_TIME + timedelta(minutes=20)).isoformat()
    result = run_cli(
        runner, "query", filled, "--since", since, "--until", until, "--json"
    )
    events = json_lines(result.stdout)
    check_event_lines(events)
    assert [e["seq"] for e in events] == list(range(11, 21))
    assert events[0]["time"] == "2024-05-01T12:10:00Z"
    result = run_cli(
        runner,
        "query",
        filled,
        "--outcome",
        "failure",
        "--action",
        "login",
        "--after-seq",
        "20",
        "--limit",
        "3",
        "--json",
    )
    assert [e["seq"] for e in json_lines(result.stdout)] == [21, 25, 29]
    human = run_cli(runner, "query", filled, "--actor", "alice", "--limit", "2")
    rows = human.stdout.splitlines()
    assert rows[0].startswith("SEQ")
    assert [row.split()[0] for row in rows[1:]] == ["1", "4"]


def test_query_relative_since(runner, journal_dir) -> None:
    with Journal.open(journal_dir) as journal:
        now = datetime.now(timezone.utc)
        journal.append(make_event(1, time=now - timedelta(hours=3)))
        journal.append(make_event(2, time=now - timedelta(minutes=30)))
    result = run_cli(runner, "query", journal_dir, "--since", "2h", "--json")
    assert [e["seq"] for e in json_lines(result.stdout)] == [2]
    result = run_cli(runner, "query", journal_dir, "--until", "1h", "--json")
    assert [e["seq"] for e in json_lines(result.stdout)] == [1]


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-01T12:00:00", "-2h"]
)
def test_query_bad_since_is_usage_error(runner, filled, value: str) -> None:
    result = run_cli(runner, "query", filled, "--since", value, code=2)
    assert "--since" in result.stderr
    assert result.stdout == ""


def test_tail_human_and_json(runner, filled) -> None:
    human = run_cli(runner, "tail", filled, "-n", "3")
    header, *rows = human.stdout.splitlines()
    assert header.split()[:2] == ["SEQ", "TIME"]
    assert [int(line.split()[0]) for line in rows] == [58, 59, 60]
    result = run_cli(runner, "tail", filled, "-n", "4", "--json")
    events = json_lines(result.stdout)
    check_event_lines(events)
    assert [e["seq"] for e in events] == [57, 58, 59, 60]


def test_tail_follow_real_process(filled) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [
            str(JOURNAL_BIN),
            "tail",
            str(filled),
            "-n",
            "2",
            "-f",
            "--json",
            "--interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    try:
        # The newest events must show before any new event arrives.
        printed = [_next_line(lines, 5), _next_line(lines, 5)]
        with Journal.open(filled) as journal:
            journal.append(make_event(100, actor="late"))
            journal.append(make_event(101, actor="later"))
        printed += [_next_line(lines, 10), _next_line(lines, 10)]
        events = [json.loads(line) for line in printed]
        assert [e["seq"] for e in events] == [59, 60, 61, 62]
        assert [e["actor"] for e in events[2:]] == ["late", "later"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _next_line(lines: queue.Queue[str], timeout: float) -> str:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(
            f"no line from journal tail -f within {timeout} s"
        ) from None


def test_export(runner, filled) -> None:
    result = run_cli(runner, "export", filled)
    events = json_lines(result.stdout)
    check_event_lines(events)
    assert [e["seq"] for e in events] == list(range(1, 61))
    assert events[5]["metadata"] == {"i": 5, "pad": "0005" * 40}
    result = run_cli(runner, "export", filled, "--after-seq", "55")
    assert [e["seq"] for e in json_lines(result.stdout)] == [56, 57, 58, 59, 60]


def test_export_original_skips_native_events(runner, filled) -> None:
    result = run_cli(runner, "export", filled, "--original")
    assert result.stdout == ""
    assert "60 events" in result.stderr


def test_segments_human_and_json(runner, filled) -> None:
    result = run_cli(runner, "segments", filled, "--json")
    infos = json_lines(result.stdout)
    assert len(infos) >= 3
    assert infos[0]["first_seq"] == 1
    assert infos[-1]["last_seq"] == 60
    assert sum(i["events"] for i in infos) == 60
    assert [i["sealed"] for i in infos] == [True] * (len(infos) - 1) + [False]
    for info in infos:
        assert Path(info["path"]).stat().st_size == info["bytes"]
        parse_rfc3339_utc(info["min_time"])
        parse_rfc3339_utc(info["created"])
    human = run_cli(runner, "segments", filled)
    rows = human.stdout.splitlines()
    assert rows[0].split()[:3] == ["FILE", "FIRST", "LAST"]
    assert [row.split()[0] for row in rows[1:]] == [i["name"] for i in infos]
    assert rows[-1].split()[-1] == "active"
    assert all(len(row) <= 100 for row in rows)


def test_inspect_human_and_json(runner, filled) -> None:
    first = sorted(filled.glob("*.seg"))[0]
    human = run_cli(runner, "inspect", first, "--frames")
    assert "format_version:" in human.stdout
    assert "damaged:          0" in human.stdout
    assert "sealed" in human.stdout
    result = run_cli(runner, "inspect", first, "--frames", "--json")
    lines = json_lines(result.stdout)
    header, frames = lines[0], lines[1:]
    assert header["type"] == "header"
    assert header["first_seq"] == 1
    assert header["damaged"] == 0
    assert header["frames"] == len(frames)
    assert frames[-1]["kind"] == "seal"
    assert {f["checksum"] for f in frames} == {"ok"}
    assert sum(f["events"] for f in frames if f["kind"] == "events") == header["events"]


def test_stats_human_and_json(runner, filled) -> None:
    result = run_cli(runner, "stats", filled, "--json")
    (stats,) = json_lines(result.stdout)
    assert stats["events"] == 60
    assert stats["last_seq"] == 60
    assert stats["oldest_event"] == "2024-05-01T12:00:00Z"
    assert stats["newest_event"] == "2024-05-01T12:59:00Z"
    human = run_cli(runner, "stats", filled)
    assert "events:" in human.stdout
    assert "index health:         ok" in human.stdout


def test_stats_names_lock_holder(runner, filled) -> None:
    with Journal.open(filled) as journal, journal.lock():
        result = run_cli(runner, "stats", filled)
    assert f"lock holder:          {os.getpid()}" in result.stdout


def test_verify_and_checkpoint(runner, filled, tmp_path) -> None:
    human = run_cli(runner, "verify", filled)
    assert human.stdout.startswith("OK:")
    result = run_cli(runner, "verify", filled, "--json")
    (summary,) = json_lines(result.stdout)
    assert summary["type"] == "summary"
    assert summary["ok"] is True
    assert summary["events"] == 60
    head = run_cli(runner, "checkpoint", filled)
    (checkpoint,) = json_lines(head.stdout)
    assert checkpoint["seq"] == 60
    parse_rfc3339_utc(checkpoint["time"])
    head_file = tmp_path / "head.json"
    head_file.write_text(head.stdout)
    run_cli(runner, "append", filled, "--actor", "a", "--action", "b")
    result = run_cli(runner, "verify", filled, "--checkpoint", head_file)
    assert "checkpoint ok" in result.stdout


def test_verify_checkpoint_detects_truncation(runner, journal_dir, tmp_path) -> None:
    with Journal.open(journal_dir) as journal:
        journal.append(make_event(1))
    (segment,) = journal_dir.glob("*.seg")
    size = segment.stat().st_size
    run_cli(runner, "append", journal_dir, "--actor", "a", "--action", "b")
    head_file = tmp_path / "head.json"
    head_file.write_text(run_cli(runner, "checkpoint", journal_dir).stdout)
    os.truncate(segment, size)
    for index in journal_dir.glob("*.idx"):
        index.unlink()
    run_cli(runner, "verify", journal_dir)
    result = run_cli(runner, "verify", journal_dir, "--checkpoint", head_file, code=1)
    assert "TRUNCATED" in result.stdout


def test_verify_bad_checkpoint_file(runner, filled, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    run_cli(runner, "verify", filled, "--checkpoint", bad, code=2)


# -- damage and tampering ------------------------------------------------------------


def _frames(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        header = read_header(fd, str(path), size)
        return header, list(
            scan_frames(fd, header.header_len, size, header.first_seq - 1)
        )
    finally:
        os.close(fd)


def test_inspect_damaged_frame(runner, filled) -> None:
    first = sorted(filled.glob("*.seg"))[0]
    _, frames = _frames(first)
    target = frames[2]
    data = bytearray(first.read_bytes())
    data[target.offset + 40] ^= 0xFF
    first.write_bytes(bytes(data))
    result = run_cli(runner, "inspect", first, "--frames", "--json", code=1)
    lines = json_lines(result.stdout)
    damaged = [f for f in lines[1:] if f["kind"] == "damaged"]
    assert len(damaged) == 1
    assert damaged[0]["offset"] == target.offset
    assert damaged[0]["checksum"] == "bad"
    assert lines[0]["damaged"] == 1
    human = run_cli(runner, "inspect", first, "--frames", code=1)
    assert "damaged" in human.stdout
    assert str(target.offset) in human.stdout
    short = run_cli(runner, "inspect", first, code=1)
    assert "--frames" in short.stdout


def test_inspect_damaged_header(runner, filled) -> None:
    first = sorted(filled.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0xFF
    first.write_bytes(bytes(data))
    result = run_cli(runner, "inspect", first, code=1)
    assert "DAMAGED" in result.stdout
    result = run_cli(runner, "inspect", first, "--json", code=1)
    assert json_lines(result.stdout)[0]["status"] == "damaged"


def test_verify_flipped_byte(runner, filled) -> None:
    first = sorted(filled.glob("*.seg"))[0]
    _, frames = _frames(first)
    data = bytearray(first.read_bytes())
    data[frames[1].offset + 45] ^= 0x01
    first.write_bytes(bytes(data))
    result = run_cli(runner, "verify", filled, code=1)
    assert "CHECKSUM FAILURE" in result.stdout
    assert "FAILED" in result.stdout
    result = run_cli(runner, "verify", filled, "--json", code=1)
    lines = json_lines(result.stdout)
    problems = [line for line in lines if line["type"] == "problem"]
    assert problems
    assert problems[0]["segment"] == first.name
    assert problems[0]["offset"] == frames[1].offset
    assert lines[-1]["type"] == "summary"
    assert lines[-1]["ok"] is False
    run_real("verify", filled, code=1)


def test_verify_rewritten_frame_breaks_chain(runner, filled) -> None:
    # Rewrite one frame with a changed actor and a correct CRC: only the hash
    # chain can tell.
    first = sorted(filled.glob("*.seg"))[0]
    header, frames = _frames(first)
    target = next(f for f in frames if f.kind == KIND_EVENTS and f.first_seq == 2)
    payload = target.stored
    if target.flags & FLAG_ZSTD:
        payload = codec.Decompressor(header.dictionary).decompress(
            target.stored, target.raw_len, False
        )
    assert b"bob" in payload
    forged = payload.replace(b"bob", b"eve")
    frame = pack_frame(
        KIND_EVENTS, 0, target.count, target.first_seq, len(forged), target.link, forged
    )
    data = first.read_bytes()
    first.write_bytes(data[: target.offset] + frame + data[target.end :])
    for index in filled.glob("*.idx"):
        index.unlink()
    forged_read = run_cli(
        runner, "query", filled, "--after-seq", "1", "--limit", "1", "--json"
    )
    assert json_lines(forged_read.stdout)[0]["actor"] == "eve"
    result = run_cli(runner, "verify", filled, "--json", code=1)
    problems = [line for line in json_lines(result.stdout) if line["type"] == "problem"]
    assert [p["kind"] for p in problems] == ["modified"]
    assert problems[0]["seq"] == 2


def test_read_command_on_damaged_data_exit_1(runner, filled) -> None:
    first = sorted(filled.glob("*.seg"))[0]
    _, frames = _frames(first)
    data = bytearray(first.read_bytes())
    data[frames[1].offset + 45] ^= 0x01
    first.write_bytes(bytes(data))
    for index in filled.glob("*.idx"):
        index.unlink()
    result = run_cli(runner, "export", filled, code=1)
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith("journal: error:")
    assert "damaged" in last_line


# -- retention -----------------------------------------------------------------------


def test_retention_db_path_and_json(runner, filled) -> None:
    before = sorted(p.name for p in filled.glob("*.seg"))
    dry = run_cli(
        runner,
        "retention",
        "--db-path",
        filled,
        "--max-segments",
        "2",
        "--dry-run",
        "--json",
    )
    (report,) = json_lines(dry.stdout)
    assert report["dry_run"] is True
    assert report["segments_deleted"] == len(before) - 2
    assert sorted(p.name for p in filled.glob("*.seg")) == before
    result = run_cli(
        runner, "retention", "--db-path", filled, "--max-segments", "2", "--json"
    )
    (report,) = json_lines(result.stdout)
    assert [d["name"] for d in report["deleted"]] == before[:-2]
    assert sorted(p.name for p in filled.glob("*.seg")) == before[-2:]
    human = run_cli(runner, "retention", filled, "--days", "36500")
    assert "deleted 0 segment(s)" in human.stdout
    run_cli(runner, "verify", filled)


def test_retention_days_and_max_bytes(runner, filled) -> None:
    result = run_cli(runner, "retention", filled, "--days", "1", "--json")
    (report,) = json_lines(result.stdout)
    # Every event is from 2024, so every segment expires; the active one is
    # sealed first.
    assert report["sealed_active"] is not None
    assert list(filled.glob("*.seg")) == []
    run_cli(runner, "append", filled, "--actor", "a", "--action", "b")
    result = run_cli(runner, "retention", filled, "--max-bytes", "1K", "--json")
    (report,) = json_lines(result.stdout)
    assert report["deleted"] == []
    run_cli(runner, "verify", filled)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give DIR or --db-path"),
        (["{dir}"], "--days, --max-bytes or --max-segments"),
        (["--db-path", "{dir}"], "--days, --max-bytes or --max-segments"),
        (["{dir}", "--db-path", "{dir}/elsewhere", "--days", "1"], "differ"),
        (["{dir}", "--max-bytes", "lots"], "is not a size"),
        (["{dir}", "--max-segments", "0"], "--max-segments"),
    ],
)
def test_retention_usage_errors(runner, filled, args, message: str) -> None:
    argv = [a.replace("{dir}", str(filled)) for a in args]
    result = run_cli(runner, "retention", *argv, code=2)
    assert message in result.stderr


def test_retention_lock_timeout_exit_75(filled, tmp_path) -> None:
    ready = tmp_path / "ready"
    holder_script = (
        "import sys, time, pathlib\n"
        "from journal import Journal\n"
        "with Journal.open(sys.argv[1]) as j, j.lock():\n"
        "    pathlib.Path(sys.argv[2]).touch()\n"
        "    time.sleep(30)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_script, str(filled), str(ready)]
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists()
        result = run_real(
            "retention", filled, "--days", "1", "--lock-timeout", "0.3", code=75
        )
        assert str(holder.pid) in result.stderr
    finally:
        holder.kill()
        holder.wait()
    run_real("retention", filled, "--max-segments", "100")


# -- errors and exit codes -----------------------------------------------------------

READ_COMMANDS = [
    ["recent"],
    ["query"],
    ["tail"],
    ["export"],
    ["segments"],
    ["stats"],
    ["verify"],
    ["checkpoint"],
    ["retention", "--days", "1"],
    ["locks"],
]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_missing_directory_exit_1(runner, tmp_path, command) -> None:
    missing = tmp_path / "missing"
    result = run_cli(runner, command[0], missing, *command[1:], code=1)
    assert result.stdout == ""
    assert result.stderr.startswith("journal: error:")
    assert result.stderr.count("\n") == 1
    assert str(missing) in result.stderr
    assert not missing.exists()


def test_missing_directory_real_process(tmp_path) -> None:
    result = run_real("recent", tmp_path / "missing", code=1)
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1


def test_inspect_missing_file_is_usage_error(runner, tmp_path) -> None:
    run_cli(runner, "inspect", tmp_path / "missing.seg", code=2)


def test_unknown_command_and_option(runner, filled) -> None:
    run_cli(runner, "frobnicate", code=2)
    run_cli(runner, "recent", filled, "--no-such-option", code=2)
    run_cli(runner, "recent", filled, "-n", "-1", code=2)


def test_real_process_forms(filled) -> None:
    human = run_real("recent", filled, "-n", "3")
    assert len(human.stdout.splitlines()) == 4
    events = json_lines(run_real("query", filled, "--actor", "bob", "--json").stdout)
    check_event_lines(events)
    assert len(events) == 20
    (stats,) = json_lines(run_real("stats", filled, "--json").stdout)
    assert stats["events"] == 60
    assert run_real("verify", filled).stdout.startswith("OK:")


def test_python_m_journal(filled) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "journal", "stats", str(filled), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["events"] == 60


def test_repeated_main_calls_log_once(filled) -> None:
    # Two calls of main() in one process must not print each log line twice.
    script = (
        "import sys\n"
        "from journal.cli import main\n"
        "for n in sys.argv[2:]:\n"
        "    try:\n"
        "        main(['retention', sys.argv[1], '--max-segments', n], standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
    )
    count = len(list(filled.glob("*.seg")))
    completed = subprocess.run(
        [sys.executable, "-c", script, str(filled), str(count - 1), str(count - 2)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    removed = [
        line for line in completed.stderr.splitlines() if "retention removed" in line
    ]
    assert len(removed) == 2, completed.stderr


def test_no_ansi_without_tty(filled) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    for args in (
        ["recent", filled],
        ["segments", filled],
        ["stats", filled],
        ["verify", filled],
        ["--help"],
    ):
        completed = subprocess.run(
            [str(JOURNAL_BIN), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert completed.returncode == 0
        assert ESCAPE not in completed.stdout + completed.stderr


def test_locks_command(runner, filled) -> None:
    result = run_cli(runner, "locks", filled)
    assert "journal.lock" in result.stdout
    result = run_cli(runner, "locks", filled, "--json")
    (info,) = json_lines(result.stdout)
    assert info["state"] == "free"


def test_journal_binary_exists() -> None:
    assert JOURNAL_BIN.exists() or shutil.which("journal")


# -- keys and import -----------------------------------------------------------------


def test_keyed_journal_key_file(runner, journal_dir, tmp_path) -> None:
    key_file = tmp_path / "journal.key"
    key_file.write_bytes(os.urandom(32).hex().encode() + b"\n")
    run_cli(
        runner,
        "append",
        journal_dir,
        "--actor",
        "a",
        "--action",
        "b",
        "--key-file",
        key_file,
    )
    result = run_cli(
        runner, "append", journal_dir, "--actor", "a", "--action", "b", code=1
    )
    assert "key" in result.stderr
    assert result.stderr.count("\n") == 1
    keyed_runner = CliRunner(env={"NO_COLOR": "1", "JOURNAL_KEY_FILE": str(key_file)})
    run_cli(keyed_runner, "append", journal_dir, "--actor", "a", "--action", "c")
    (summary,) = json_lines(
        run_cli(keyed_runner, "verify", journal_dir, "--json").stdout
    )
    assert summary["keyed"] is True
    assert summary["events"] == 2
    result = run_cli(runner, "verify", journal_dir, code=1)
    assert "key" in result.stderr
    other_key = tmp_path / "other.key"
    other_key.write_bytes(os.urandom(32))
    run_cli(
        runner,
        "append",
        journal_dir,
        "--actor",
        "a",
        "--action",
        "b",
        "--key-file",
        other_key,
        code=1,
    )
    result = run_cli(runner, "verify", journal_dir, "--key-file", other_key, code=1)
    assert "key" in result.stderr


def test_import_jsonl_with_map(runner, journal_dir, tmp_path) -> None:
    source = tmp_path / "app.jsonl"
    records = [
        {
            "ts": "2024-05-01T12:00:00Z",
            "user": {"name": "alice"},
            "op": "login",
            "ok": "success",
        },
        {
            "ts": "2024-05-01T12:01:00Z",
            "user": {"name": "bob"},
            "op": "logout",
            "ok": "success",
        },
    ]
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = run_cli(
        runner,
        "import",
        journal_dir,
        source,
        "--format",
        "jsonl",
        "--map",
        "actor=user.name",
        "--map",
        "action=op",
        "--map",
        "time=ts",
        "--map",
        "outcome=ok",
        "--json",
    )
    (summary,) = json_lines(result.stdout)
    assert summary["imported"] == 2
    assert summary["skipped"] == 0
    assert summary["last_seq"] == 2
    events = json_lines(run_cli(runner, "export", journal_dir).stdout)
    assert [e["actor"] for e in events] == ["alice", "bob"]
    assert [e["action"] for e in events] == ["login", "logout"]
    assert events[1]["time"] == "2024-05-01T12:01:00Z"
    originals = json_lines(run_cli(runner, "export", journal_dir, "--original").stdout)
    assert originals == records


def test_import_malformed_and_strict(runner, journal_dir, tmp_path) -> None:
    source = tmp_path / "mixed.jsonl"
    good = {"time": "2024-05-01T12:00:00Z", "actor": "alice", "action": "login"}
    source.write_text(json.dumps(good) + "\n{not json\n" + json.dumps(good) + "\n")
    result = run_cli(
        runner, "import", journal_dir, source, "--format", "jsonl", "--json"
    )
    (summary,) = json_lines(result.stdout)
    assert summary["imported"] == 2
    assert summary["skipped"] == 1
    assert f"{source}:2" in result.stderr
    strict_dir = tmp_path / "strict"
    result = run_cli(
        runner, "import", strict_dir, source, "--format", "jsonl", "--strict", code=1
    )
    assert "--strict" in result.stderr
    with Journal.open(strict_dir, readonly=True) as journal:
        assert journal.last_seq == 1


def test_import_errors(runner, journal_dir, tmp_path) -> None:
    result = run_cli(runner, "import", journal_dir, tmp_path / "missing.log", code=1)
    assert "missing.log" in result.stderr
    run_cli(runner, "import", journal_dir, code=2)
    run_cli(runner, "import", journal_dir, tmp_path / "x", "--format", "nope", code=2)
    run_cli(runner, "import", journal_dir, tmp_path / "x", "--map", "actor", code=2)
