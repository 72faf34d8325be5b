"""Measurement plumbing: child processes, peak RSS, statistics, the result table."""

from __future__ import annotations

import os
import pickle
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
import zstandard

import journal


@dataclass
class Row:
    """One line of the result table: one system measured on one workload."""

    workload: str
    system: str
    events: int | None = None
    rate: float | None = None  # events (or operations) per second, median run
    median_ms: float | None = None  # median time of one run or one operation
    p95_ms: float | None = None  # p95 latency of one append or one operation
    bytes_per_event: float | None = None
    rss_mb: float | None = None
    ratio: float | None = None  # how many times better journal is than this row
    target: str = ""
    result: str = ""
    runs: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Budget:
    """Repeat a measurement up to *repeat* times, but start no run after *seconds*.

    Iterating yields the run numbers; the first run always happens.
    """

    def __init__(self, repeat: int, seconds: float) -> None:
        self.repeat = repeat
        self.seconds = seconds

    def __iter__(self) -> Iterator[int]:
        deadline = time.monotonic() + self.seconds
        for run in range(self.repeat):
            if run and time.monotonic() > deadline:
                return
            yield run


# -- memory ------------------------------------------------------------------


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (Linux ``clear_refs``) before a timed part.

    Without the reset, the peak would include the setup that built the inputs.
    Where the file is not writable the peak covers the whole process life.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Return the peak RSS in MB of this process or of any child it waited for."""
    own = 0.0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    own = int(line.split()[1]) / 1024
    except OSError:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(own, children)


# -- child processes -----------------------------------------------------------


class ChildFailed(RuntimeError):
    """A measurement in a child process raised; the message has its traceback."""


class Child:
    """A function running in a forked child process; :meth:`result` waits for it."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.name = function.__name__
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            status = 0
            try:
                result = function(*args)
                payload = pickle.dumps(("ok", result, peak_rss_mb()))
            except BaseException:
                payload = pickle.dumps(("error", traceback.format_exc(), 0.0))
                status = 1
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
            os._exit(status)
        os.close(write_end)
        self.pid = pid
        self.read_end = read_end

    def result(self) -> tuple[Any, float]:
        """Wait for the child; return its result and its peak RSS in MB."""
        with os.fdopen(self.read_end, "rb") as stream:
            data = stream.read()
        os.waitpid(self.pid, 0)
        if not data:
            raise ChildFailed(f"the child running {self.name} died without a result")
        state, result, rss = pickle.loads(data)
        if state != "ok":
            raise ChildFailed(f"{self.name} failed in the child:\n{result}")
        return result, rss


def in_child(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """Run ``function(*args)`` in a forked child; return its result and peak RSS in MB.

    Each measurement runs in its own process so that its peak RSS is its own and
    no journal, thread or cache outlives it. The parent must not hold an open
    Journal (a journal refuses use after fork).
    """
    return Child(function, *args).result()


# -- statistics ------------------------------------------------------------------


def median(values: list[float]) -> float:
    """Return the median of a non-empty list."""
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Return the 95th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def directory_bytes(path: str) -> int:
    """Return the total size of the regular files under *path*."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total


# -- the machine and the table -----------------------------------------------------


def machine() -> dict[str, Any]:
    """Describe the machine and the library versions the numbers were taken with."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo") as fh:
            memory_gb = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "journal_commit": _journal_commit(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "os": platform.platform(),
        "journal": journal.__version__,
        "msgspec": msgspec.__version__,
        "zstandard": zstandard.__version__,
        "sqlite": sqlite3.sqlite_version,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _journal_commit() -> str:
    """Return the git commit of the journal package, marked when journal/ has changes."""
    package = os.path.dirname(os.path.abspath(journal.__file__))
    try:
        commit = subprocess.run(
            ["git", "-C", package, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", package, "status", "--porcelain", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} with uncommitted changes" if changed else commit


def describe_machine(info: dict[str, Any]) -> str:
    """Return the machine description as two lines of text."""
    return (
        f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['memory_gb']} GB RAM, "
        f"{info['os']}, Python {info['python']}\n"
        f"versions: journal {info['journal']} (commit {info['journal_commit']}), msgspec {info['msgspec']}, zstandard "
        f"{info['zstandard']}, SQLite {info['sqlite']}; run {info['date']}"
    )


COLUMNS = (
    "workload",
    "system",
    "events",
    "events/s",
    "median ms",
    "p95 ms",
    "bytes/event",
    "peak RSS MB",
    "journal ×",
    "target",
    "result",
)


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return ""
    if digits == 0 and abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


def cells(row: Row) -> list[str]:
    """Return the table cells of *row* as text."""
    return [
        row.workload,
        row.system,
        f"{row.events:,}" if row.events is not None else "",
        _number(row.rate),
        _number(row.median_ms, 2),
        _number(row.p95_ms, 2),
        _number(row.bytes_per_event),
        _number(row.rss_mb),
        f"{row.ratio:.2f}" if row.ratio is not None else "",
        row.target,
        row.result,
    ]


def text_table(rows: list[Row]) -> str:
    """Render *rows* as a plain-text table with aligned columns."""
    table = [list(COLUMNS)] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {2, 3, 4, 5, 6, 7, 8}
    lines = []
    for n, line in enumerate(table):
        parts = [
            cell.rjust(widths[i]) if i in numeric and n else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """Render *rows* as a GitHub markdown table."""
    align = ["---", "---"] + ["---:"] * 7 + ["---", "---"]
    lines = ["| " + " | ".join(COLUMNS) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        lines.append(
            "| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |"
        )
    return "\n".join(lines)


def as_json(rows: list[Row], info: dict[str, Any], options: dict[str, Any]) -> bytes:
    """Return the machine, the options and every row as JSON."""
    return msgspec.json.format(
        msgspec.json.encode(
            {"machine": info, "options": options, "rows": [asdict(r) for r in rows]}
        ),
        indent=2,
    )
