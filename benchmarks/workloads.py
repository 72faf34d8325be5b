"""The workloads: each measures journal and its alternatives and returns table rows.

Every system of every workload runs in its own forked child process (see
:func:`harness.in_child`), so its peak RSS is its own. Inputs are built before the
timer starts; write workloads get new event objects for every run.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import baselines
import corpus as corpus_module
import datasets
import harness
from harness import Budget, Row

from journal import AuditEvent, Journal
from journal.importers import ImportedRecord, iter_records

#: Events per append_many / executemany call, as in ``journal import``.
MANY_BATCH = 1000
#: Events per transaction of the batched SQLite writer.
SQLITE_BATCH = 1000
THREADS = 8
PROCESSES = 4
RECENT = 100


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@dataclass
class Sizes:
    """How many events each workload uses, derived from ``--events``."""

    events: int
    quick: bool = False
    durable: int = 0
    per_thread: int = 0
    batch: int = 0
    batch_small: int = 0
    single: int = 0
    open_per_segment: int = 0
    queries: int = 0
    fresh_processes: int = 0

    def __post_init__(self) -> None:
        n = self.events
        self.durable = _clamp(n // 500, 200, 2000)
        self.per_thread = _clamp(n // 2000, 50, 500)
        self.batch = _clamp(n // 20, 5000, 50000)
        self.batch_small = _clamp(n // 5, 20000, 200000)
        # Single appends take about 0.2 ms each, too slow for all of a quick run.
        self.single = n // 4 if self.quick else min(n, 100_000)
        self.open_per_segment = _clamp(n // 1000, 64, 1000)
        self.queries = 10 if self.quick else 50
        self.fresh_processes = 3 if self.quick else 5


@dataclass
class Context:
    """Inputs, sizes, repeat policy and earlier results shared by the workloads."""

    paths: datasets.Paths
    meta: dict[str, Any]
    corpus: corpus_module.Corpus
    sizes: Sizes
    repeat: int
    budget: float  # seconds after which a system starts no further run
    log: Callable[[str], None]
    results: dict[tuple[str, str], Row] = field(default_factory=dict)
    counter: int = 0

    def scratch(self, name: str) -> str:
        """Return a new, empty directory under the scratch area."""
        self.counter += 1
        path = os.path.join(self.paths.scratch, f"{name}-{os.getpid()}-{self.counter}")
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path


def _row(workload: str, system: str, measured: dict[str, Any], rss: float) -> Row:
    rates = measured.get("rates") or []
    ops = measured.get("ops") or []
    latencies = measured.get("latencies") or []
    sizes = measured.get("bytes") or []
    return Row(
        workload=workload,
        system=system,
        events=measured.get("events"),
        rate=harness.median(rates) if rates else None,
        median_ms=harness.median(ops) * 1000 if ops else None,
        p95_ms=harness.p95(latencies) * 1000 if latencies else None,
        bytes_per_event=harness.median(sizes) if sizes else None,
        rss_mb=rss,
        runs=measured.get("runs", len(rates) or len(ops)),
        note=measured.get("note", ""),
        extra=measured.get("extra", {}),
    )


def _measure(
    ctx: Context,
    workload: str,
    system: str,
    function: Callable[..., dict[str, Any]],
    *args: Any,
) -> Row:
    ctx.log(f"  {workload}: {system}")
    measured, rss = harness.in_child(function, ctx, *args)
    row = _row(workload, system, measured, rss)
    ctx.results[(workload, system)] = row
    return row


def _set_ratios(rows: list[Row], journal_row: Row, *, by: str = "rate") -> None:
    """Fill in how many times better *journal_row* is than each other row."""
    for row in rows:
        # Other journal setups are variants, not alternatives. Only a full
        # decode is another way to run the same query.
        if row is journal_row or (
            row.system.startswith("journal") and "full decode" not in row.system
        ):
            continue
        if by == "rate" and row.rate and journal_row.rate:
            row.ratio = journal_row.rate / row.rate
        elif by == "time" and row.median_ms and journal_row.median_ms:
            row.ratio = row.median_ms / journal_row.median_ms


# -- event inputs ----------------------------------------------------------------


def _corpus_events(ctx: Context, count: int) -> list[AuditEvent]:
    return ctx.corpus.events(count)


def _small_events(ctx: Context, count: int) -> list[AuditEvent]:
    return corpus_module.small_events(count)


EVENT_KINDS: dict[str, Callable[[Context, int], list[AuditEvent]]] = {
    "corpus": _corpus_events,
    "small": _small_events,
}


# -- writers ---------------------------------------------------------------------

Appender = tuple[Callable[[Any], Any], Callable[[], None]]


def _sqlite_batched(conn: sqlite3.Connection) -> Appender:
    """Insert events one call at a time, committing every SQLITE_BATCH events."""
    pending = [0]

    def append(event: AuditEvent) -> None:
        if pending[0] == 0:
            conn.execute("BEGIN IMMEDIATE")
        conn.execute(baselines.INSERT, baselines.to_row(event))
        pending[0] += 1
        if pending[0] >= SQLITE_BATCH:
            conn.execute("COMMIT")
            pending[0] = 0

    def close() -> None:
        if pending[0]:
            conn.execute("COMMIT")
        conn.close()

    return append, close


def open_writer(system: str, directory: str) -> Appender:
    """Open *system* for writing into *directory*; return its append and close."""
    database = os.path.join(directory, "events.db")
    jsonl = os.path.join(directory, "events.jsonl")
    if system.startswith("journal"):
        mode = "batch" if "batch" in system else "fsync"
        journal = Journal.open(directory, durability=mode)  # type: ignore[arg-type]
        append = journal.append_many if "append_many" in system else journal.append
        return append, journal.close
    if system == "sqlite NORMAL batched":
        return _sqlite_batched(baselines.connect(database, "NORMAL"))
    if system.startswith("sqlite"):
        conn = baselines.connect(database, "FULL" if "FULL" in system else "NORMAL")
        if "executemany" in system:
            return (lambda events: baselines.insert_many(conn, events)), conn.close
        return (lambda event: baselines.insert_one(conn, event)), conn.close
    if system.startswith("jsonl"):
        logger, handler = baselines.json_logger(jsonl, fsync="fsync" in system)
        return logger.info, handler.close
    raise ValueError(f"unknown system {system!r}")


def _single_writer(
    ctx: Context, system: str, kind: str, count: int, latency: bool, batch: int
) -> dict[str, Any]:
    """Append *count* events one call at a time (or in calls of *batch* events)."""
    base = EVENT_KINDS[kind](ctx, count)
    rates: list[float] = []
    ops: list[float] = []
    latencies: list[float] = []
    sizes: list[float] = []
    for run in Budget(ctx.repeat, ctx.budget):
        directory = ctx.scratch("write")
        events = corpus_module.fresh(base)
        items: list[Any] = events
        if batch > 1:
            items = [events[i : i + batch] for i in range(0, len(events), batch)]
        append, close = open_writer(system, directory)
        if run == 0:
            harness.reset_peak_rss()
        clock = time.perf_counter
        started = clock()
        if latency or batch > 1:
            for item in items:
                before = clock()
                append(item)
                latencies.append(clock() - before)
        else:
            for item in items:
                append(item)
        close()
        elapsed = clock() - started
        rates.append(count / elapsed)
        ops.append(
            harness.median(latencies[-len(items) :])
            if latency or batch > 1
            else elapsed
        )
        sizes.append(harness.directory_bytes(directory) / count)
        shutil.rmtree(directory)
    return {
        "events": count,
        "rates": rates,
        "ops": ops,
        "latencies": latencies if latency else [],
        "bytes": sizes,
    }


def _thread_appenders(system: str, directory: str) -> tuple[list[Any], list[Any]]:
    """Return one append function per thread and the close functions."""
    database = os.path.join(directory, "events.db")
    if system == "sqlite FULL connection per thread":
        baselines.connect(database, "FULL").close()
        connections = [baselines.connect(database, "FULL") for _ in range(THREADS)]
        appenders = [functools.partial(baselines.insert_one, c) for c in connections]
        return appenders, [c.close for c in connections]
    if system == "sqlite FULL shared connection + lock":
        conn = baselines.connect(database, "FULL")
        lock = threading.Lock()

        def locked(event: AuditEvent) -> None:
            with lock:
                baselines.insert_one(conn, event)

        return [locked] * THREADS, [conn.close]
    append, close = open_writer(system, directory)
    return [append] * THREADS, [close]


def _run_threads(
    appenders: list[Any], events: list[AuditEvent], per_thread: int, first: bool
) -> tuple[float, list[float]]:
    """Append *events* from THREADS threads; return the wall time and the latencies."""
    barrier = threading.Barrier(THREADS + 1)
    collected: list[list[float]] = [[] for _ in range(THREADS)]

    def work(n: int) -> None:
        append = appenders[n]
        mine = events[n * per_thread : (n + 1) * per_thread]
        out = collected[n]
        clock = time.perf_counter
        barrier.wait()
        for event in mine:
            before = clock()
            append(event)
            out.append(clock() - before)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    if first:
        harness.reset_peak_rss()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, [t for part in collected for t in part]


def _thread_writer(ctx: Context, system: str, per_thread: int) -> dict[str, Any]:
    """Append from THREADS threads at once, one event per call."""
    base = ctx.corpus.events(per_thread * THREADS)
    rates: list[float] = []
    latencies: list[float] = []
    for run in Budget(ctx.repeat, ctx.budget):
        directory = ctx.scratch("threads")
        events = corpus_module.fresh(base)
        appenders, closers = _thread_appenders(system, directory)
        elapsed, times = _run_threads(appenders, events, per_thread, run == 0)
        closing = time.perf_counter()
        for close in closers:
            close()
        elapsed += time.perf_counter() - closing
        rates.append(len(events) / elapsed)
        latencies.extend(times)
        shutil.rmtree(directory)
    return {
        "events": per_thread * THREADS,
        "rates": rates,
        "latencies": latencies,
        "ops": [harness.median(latencies)],
    }


def _process_writer(ctx: Context, system: str, per_process: int) -> dict[str, Any]:
    """Append from PROCESSES processes at once, each opening the store itself."""
    import multiprocessing

    base = ctx.corpus.events(per_process * PROCESSES)
    forking = multiprocessing.get_context("fork")
    rates: list[float] = []
    latencies: list[float] = []
    for run in Budget(ctx.repeat, ctx.budget):
        directory = ctx.scratch("processes")
        if system.startswith("sqlite"):
            baselines.connect(os.path.join(directory, "events.db"), "FULL").close()
        barrier = forking.Barrier(PROCESSES + 1)
        queue = forking.SimpleQueue()

        def work(
            n: int,
            directory: str = directory,
            barrier: Any = barrier,
            queue: Any = queue,
        ) -> None:
            mine = corpus_module.fresh(base[n * per_process : (n + 1) * per_process])
            append, close = open_writer(system, directory)
            out: list[float] = []
            clock = time.perf_counter
            barrier.wait()
            for event in mine:
                before = clock()
                append(event)
                out.append(clock() - before)
            close()
            queue.put((clock(), out))

        processes = [forking.Process(target=work, args=(n,)) for n in range(PROCESSES)]
        for process in processes:
            process.start()
        if run == 0:
            harness.reset_peak_rss()
        barrier.wait()
        # perf_counter is CLOCK_MONOTONIC on Linux, shared by all processes.
        started = time.perf_counter()
        finished = []
        for _ in processes:
            end, out = queue.get()
            finished.append(end)
            latencies.extend(out)
        for process in processes:
            process.join()
            if process.exitcode != 0:
                raise RuntimeError(f"{system} worker exited with {process.exitcode}")
        rates.append(per_process * PROCESSES / (max(finished) - started))
        shutil.rmtree(directory)
    return {
        "events": per_process * PROCESSES,
        "rates": rates,
        "latencies": latencies,
        "ops": [harness.median(latencies)],
    }


# -- write workloads ------------------------------------------------------------------


def durable(ctx: Context) -> list[Row]:
    """Single-event durable appends from one thread, with per-append latency."""
    n = ctx.sizes.durable
    rows = [
        _measure(ctx, "durable", system, _single_writer, system, "corpus", n, True, 1)
        for system in (
            "journal fsync",
            "sqlite FULL txn/event",
            "sqlite NORMAL txn/event",
            "jsonl FileHandler+fsync",
        )
    ]
    _set_ratios(rows, rows[0])
    rows[1].target = "journal ≥ 1.0×"
    return rows


def durable_threads(ctx: Context) -> list[Row]:
    """Durable single-event appends from THREADS threads of one process."""
    per = ctx.sizes.per_thread
    systems = (
        "journal fsync",
        "sqlite FULL shared connection + lock",
        "sqlite FULL connection per thread",
        "jsonl FileHandler+fsync",
    )
    rows = [_measure(ctx, "durable-8t", s, _thread_writer, s, per) for s in systems]
    _set_ratios(rows, rows[0])
    reference = ctx.results.get(("durable", "sqlite FULL txn/event"))
    if reference is None:
        reference = _measure(
            ctx,
            "durable-8t",
            "sqlite FULL txn/event, 1 thread",
            _single_writer,
            "sqlite FULL txn/event",
            "corpus",
            ctx.sizes.durable,
            True,
            1,
        )
        rows.append(reference)
        reference.ratio = rows[0].rate / reference.rate if reference.rate else None
    rows[0].target = "≥ 5× sqlite FULL txn/event, 1 thread"
    rows[0].extra["reference_rate"] = reference.rate
    return rows


def durable_processes(ctx: Context) -> list[Row]:
    """Durable single-event appends from PROCESSES processes."""
    per = ctx.sizes.per_thread
    systems = ("journal fsync", "sqlite FULL txn/event", "jsonl FileHandler+fsync")
    rows = [_measure(ctx, "durable-4p", s, _process_writer, s, per) for s in systems]
    _set_ratios(rows, rows[0])
    return rows


def _buffered(ctx: Context, workload: str, kind: str, count: int) -> list[Row]:
    systems = ("journal batch", "jsonl FileHandler", "sqlite NORMAL batched")
    rows = [
        _measure(ctx, workload, s, _single_writer, s, kind, count, False, 1)
        for s in systems
    ]
    _set_ratios(rows, rows[0])
    if kind == "small":
        rows[0].target = "≥ 300,000 events/s"
        rows[1].target = "journal ≥ 3×"
    return rows


def batch(ctx: Context) -> list[Row]:
    """Buffered appends of corpus events."""
    return _buffered(ctx, "batch", "corpus", ctx.sizes.batch)


def batch_small(ctx: Context) -> list[Row]:
    """Buffered appends of the small synthetic event."""
    return _buffered(ctx, "batch-small", "small", ctx.sizes.batch_small)


def _many(ctx: Context, workload: str, kind: str, count: int) -> list[Row]:
    systems = ("journal append_many", "sqlite FULL executemany")
    rows = [
        _measure(ctx, workload, s, _single_writer, s, kind, count, False, MANY_BATCH)
        for s in systems
    ]
    _set_ratios(rows, rows[0])
    return rows


def append_many(ctx: Context) -> list[Row]:
    """Durable appends of corpus events in calls of MANY_BATCH events."""
    return _many(ctx, "append_many", "corpus", ctx.sizes.batch)


def append_many_small(ctx: Context) -> list[Row]:
    """Durable appends of small events in calls of MANY_BATCH events."""
    return _many(ctx, "append_many-small", "small", ctx.sizes.batch_small)


def _import(ctx: Context, system: str) -> dict[str, Any]:
    """Import the native-format files like ``journal import`` does (batches of 1000)."""
    files = datasets.import_files(ctx.paths)
    rates: list[float] = []
    ops: list[float] = []
    count = 0
    for run in Budget(ctx.repeat, ctx.budget):
        directory = ctx.scratch("import")
        store: Callable[[list[AuditEvent]], Any] = lambda events: None  # noqa: E731
        close: Callable[[], None] = lambda: None  # noqa: E731
        if system == "journal":
            journal = Journal.open(directory)
            store, close = journal.append_many, journal.close
        elif system == "sqlite FULL executemany":
            conn = baselines.connect(os.path.join(directory, "events.db"), "FULL")
            store, close = functools.partial(baselines.insert_many, conn), conn.close
        if run == 0:
            harness.reset_peak_rss()
        started = time.perf_counter()
        count = 0
        batch_events: list[AuditEvent] = []
        for path in files:
            for record in iter_records(path):
                if not isinstance(record, ImportedRecord):
                    continue
                batch_events.append(record.event)
                if len(batch_events) >= MANY_BATCH:
                    store(batch_events)
                    count += len(batch_events)
                    batch_events = []
        if batch_events:
            store(batch_events)
            count += len(batch_events)
        close()
        elapsed = time.perf_counter() - started
        rates.append(count / elapsed)
        ops.append(elapsed)
        shutil.rmtree(directory)
    return {"events": count, "rates": rates, "ops": ops}


def import_files(ctx: Context) -> list[Row]:
    """Import real-format log files: parse with journal.importers, then store."""
    systems = ("journal", "sqlite FULL executemany", "importers only (no store)")
    rows = [_measure(ctx, "import", s, _import, s) for s in systems]
    _set_ratios(rows, rows[0])
    rows[0].target = "peak RSS < 150 MB"
    return rows


# -- read workloads -------------------------------------------------------------------


def _timed_calls(ctx: Context, call: Callable[[], Any], count: int) -> dict[str, Any]:
    call()  # warm-up: open descriptors, decompressors, SQLite page cache
    harness.reset_peak_rss()
    times: list[float] = []
    deadline = time.monotonic() + ctx.budget
    for n in range(count):
        if n >= 3 and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return {
        "ops": times,
        "latencies": times,
        "rates": [1 / harness.median(times)],
        "runs": len(times),
    }


def _journal_calls(ctx: Context, path: str, query: str, events: int) -> dict[str, Any]:
    journal = Journal.open(path, readonly=True)
    since = corpus_module.END - timedelta(hours=1)
    calls: dict[str, Callable[[], Any]] = {
        "recent": lambda: journal.recent(RECENT),
        "recent-actor": lambda: journal.recent(RECENT, actor=corpus_module.RARE_ACTOR),
        "query-hour": lambda: list(journal.query(since=since)),
    }
    result = _timed_calls(ctx, calls[query], ctx.sizes.queries)
    result["extra"] = {"returned": len(calls[query]())}
    result["events"] = events
    journal.close()
    return result


def _link_copy(source: str, target: str) -> None:
    """Copy a journal directory, hard-linking sealed segments (they never change)."""
    os.makedirs(target)
    names = sorted(os.listdir(source))
    newest = max(n for n in names if n.endswith(".seg"))
    for name in names:
        if name.endswith(".seg") and name != newest:
            os.link(os.path.join(source, name), os.path.join(target, name))
        elif name.endswith((".seg", ".idx", ".log")):
            shutil.copy2(os.path.join(source, name), os.path.join(target, name))


def _writer_calls(ctx: Context, path: str, events: int) -> dict[str, Any]:
    """Time recent(100) in a process that keeps appending to the journal."""
    directory = ctx.scratch("writer")
    target = os.path.join(directory, "journal")
    _link_copy(path, target)
    fresh = ctx.corpus.events(ctx.sizes.queries + 1, start=events)
    journal = Journal.open(target)

    # Warm up as the read workloads do, after one append.
    journal.append(fresh[0])
    journal.recent(RECENT)
    harness.reset_peak_rss()

    # Each call follows one durable append, so the newest events come from the
    # block that the writer is still filling.
    times: list[float] = []
    deadline = time.monotonic() + ctx.budget
    for event in fresh[1:]:
        if len(times) >= 3 and time.monotonic() > deadline:
            break
        journal.append(event)
        started = time.perf_counter()
        found = journal.recent(RECENT)
        times.append(time.perf_counter() - started)
    assert found[0].seq == journal.last_seq
    journal.close()
    shutil.rmtree(directory)

    return {
        "ops": times,
        "latencies": times,
        "rates": [1 / harness.median(times)],
        "runs": len(times),
        "events": events,
        "extra": {"returned": len(found)},
    }


def _sqlite_calls(ctx: Context, path: str, query: str, events: int) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    since_us = baselines.micros(corpus_module.END - timedelta(hours=1))
    calls: dict[str, Callable[[], Any]] = {
        "recent": lambda: baselines.recent(conn, RECENT),
        "recent-actor": lambda: baselines.recent(
            conn, RECENT, corpus_module.RARE_ACTOR
        ),
        "query-hour": lambda: baselines.since(conn, since_us),
    }
    result = _timed_calls(ctx, calls[query], ctx.sizes.queries)
    result["extra"] = {"returned": len(calls[query]())}
    result["events"] = events
    conn.close()
    return result


def _full_decode(ctx: Context, path: str, query: str, events: int) -> dict[str, Any]:
    """Run *query* by decoding every event of the journal and filtering in Python."""
    journal = Journal.open(path, readonly=True)
    since = corpus_module.END - timedelta(hours=1)
    times: list[float] = []
    harness.reset_peak_rss()
    for _ in Budget(ctx.repeat, ctx.budget):
        started = time.perf_counter()
        if query == "query-hour":
            found: Any = [e for e in journal.read() if e.time >= since]
        else:
            actor = corpus_module.RARE_ACTOR if query == "recent-actor" else None
            found = deque(maxlen=RECENT)
            for event in journal.read():
                if actor is None or event.actor == actor:
                    found.append(event)
        times.append(time.perf_counter() - started)
    journal.close()
    return {
        "ops": times,
        "rates": [events / t for t in times],
        "events": events,
        "extra": {"returned": len(found)},
    }


_FRESH_RECENT = """
import json, sys, time
started = time.perf_counter()
from journal import Journal
imported = time.perf_counter()
journal = Journal.open(sys.argv[1], readonly=True)
opened = time.perf_counter()
events = journal.recent(100)
done = time.perf_counter()
print(json.dumps({"import": imported - started, "open": opened - imported,
                  "recent": done - opened, "returned": len(events)}))
"""

_FRESH_OPEN = """
import json, sys, time
from journal import Journal
started = time.perf_counter()
journal = Journal.open(sys.argv[1])
opened = time.perf_counter()
journal.close()
print(json.dumps({"open": opened - started}))
"""


def _fresh_processes(
    ctx: Context, code: str, path: str, runs: int, events: int
) -> dict[str, Any]:
    """Run *code* in new interpreters; time open (+ recent) inside each of them."""
    samples = []
    for _ in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", code, path],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        samples.append(json.loads(output))
    totals = [s["open"] + s.get("recent", 0.0) for s in samples]
    extra = {
        key: harness.median([s[key] for s in samples]) * 1000
        for key in samples[0]
        if key != "returned"
    }
    return {
        "ops": totals,
        "latencies": totals,
        "rates": [1 / harness.median(totals)],
        "runs": runs,
        "events": events,
        "extra": {"median_ms": extra},
        "note": "open + first call in a new process",
    }


def recent(ctx: Context) -> list[Row]:
    """recent(100) on the large journal, on a tenth of it, in a process that
    appends, and in a fresh process."""
    total = ctx.meta["corpus"]["events"]
    tenth = ctx.meta["corpus"]["tenth"]
    single = ctx.meta["corpus"]["single"]
    paths = ctx.paths
    rows = [
        _measure(ctx, "recent", "journal", _journal_calls, paths.main, "recent", total),
        _measure(
            ctx,
            "recent",
            "journal, 1/10 of the events",
            _journal_calls,
            paths.tenth,
            "recent",
            tenth,
        ),
        _measure(
            ctx,
            "recent",
            "journal, writing process",
            _writer_calls,
            paths.main,
            total,
        ),
        _measure(
            ctx,
            "recent",
            "journal, fresh process",
            _fresh_processes,
            _FRESH_RECENT,
            paths.main,
            ctx.sizes.fresh_processes,
            total,
        ),
        _measure(
            ctx,
            "recent",
            "journal built by single appends",
            _journal_calls,
            paths.single,
            "recent",
            single,
        ),
        _measure(
            ctx, "recent", "sqlite", _sqlite_calls, paths.sqlite_main, "recent", total
        ),
        _measure(
            ctx,
            "recent",
            "sqlite, 1/10 of the events",
            _sqlite_calls,
            paths.sqlite_tenth,
            "recent",
            tenth,
        ),
    ]
    _set_ratios(rows, rows[0], by="time")
    rows[0].target = "median < 1 ms"
    rows[1].target = "journal ≤ 1.3× its time on 1/10"
    rows[2].target = "median < 1 ms"
    rows[5].target = "journal ≥ 1.0× (not slower)"
    return rows


def _filtered(ctx: Context, workload: str) -> list[Row]:
    total = ctx.meta["corpus"]["events"]
    paths = ctx.paths
    rows = [
        _measure(ctx, workload, "journal", _journal_calls, paths.main, workload, total),
        _measure(
            ctx, workload, "sqlite", _sqlite_calls, paths.sqlite_main, workload, total
        ),
        _measure(
            ctx,
            workload,
            "journal full decode",
            _full_decode,
            paths.main,
            workload,
            total,
        ),
    ]
    _set_ratios(rows, rows[0], by="time")
    rows[2].target = "journal ≥ 20×"
    return rows


def recent_actor(ctx: Context) -> list[Row]:
    """recent(100, actor=...) for an actor with 0.1% of the events."""
    return _filtered(ctx, "recent-actor")


def query_hour(ctx: Context) -> list[Row]:
    """query(since=<one hour before the newest event>)."""
    return _filtered(ctx, "query-hour")


def _scan(ctx: Context, system: str) -> dict[str, Any]:
    total = ctx.meta["corpus"]["events"]
    times: list[float] = []
    harness.reset_peak_rss()
    for _ in Budget(ctx.repeat, ctx.budget):
        started = time.perf_counter()
        if system == "journal":
            with Journal.open(ctx.paths.main, readonly=True) as journal:
                count = sum(1 for _ in journal.read())
        elif system == "sqlite":
            conn = sqlite3.connect(ctx.paths.sqlite_main)
            count = baselines.scan(conn)
            conn.close()
        else:
            count = 0
            with open(ctx.paths.jsonl, "rb") as fh:
                for line in fh:
                    json.loads(line)
                    count += 1
        times.append(time.perf_counter() - started)
        assert count == total, (system, count, total)
    return {"ops": times, "rates": [total / t for t in times], "events": total}


def scan(ctx: Context) -> list[Row]:
    """Decode every event: journal read() vs SQLite rows into dicts vs JSON lines."""
    systems = ("journal", "sqlite", "jsonl json.loads")
    rows = [_measure(ctx, "scan", s, _scan, s) for s in systems]
    _set_ratios(rows, rows[0])
    rows[0].target = "peak RSS < 150 MB"
    rows[1].target = "journal ≥ 2×"
    return rows


def _retention(ctx: Context, system: str) -> dict[str, Any]:
    cutoff = corpus_module.END - timedelta(days=1)
    times: list[float] = []
    rates: list[float] = []
    removed = 0
    for run in Budget(ctx.repeat, ctx.budget):
        directory = ctx.scratch("retention")
        if system == "journal":
            target = os.path.join(directory, "journal")
            shutil.copytree(ctx.paths.retention, target)
            journal = Journal.open(target)
            if run == 0:
                harness.reset_peak_rss()
            started = time.perf_counter()
            report = journal.enforce_retention(
                max_age=timedelta(days=1), now=corpus_module.END
            )
            elapsed = time.perf_counter() - started
            removed = report.events_freed
            journal.close()
        else:
            target = os.path.join(directory, "events.db")
            shutil.copyfile(ctx.paths.sqlite_main, target)
            conn = baselines.connect(target, "FULL")
            if run == 0:
                harness.reset_peak_rss()
            started = time.perf_counter()
            removed = conn.execute(
                "DELETE FROM events WHERE time < ?", (baselines.micros(cutoff),)
            ).rowcount
            elapsed = time.perf_counter() - started
            conn.close()
        times.append(elapsed)
        rates.append(removed / elapsed)
        shutil.rmtree(directory)
    return {
        "ops": times,
        "rates": rates,
        "events": ctx.meta["corpus"]["events"],
        "extra": {"removed": removed},
    }


def retention(ctx: Context) -> list[Row]:
    """Drop the 90% of events older than one day: whole segments vs DELETE."""
    rows = [
        _measure(ctx, "retention", s, _retention, s)
        for s in ("journal", "sqlite DELETE")
    ]
    _set_ratios(rows, rows[0], by="time")
    segments = ctx.meta["corpus"]["retention_segments"]
    rows[0].note = f"{segments} segments"
    rows[1].target = "journal ≥ 100×"
    return rows


def _open_objects(ctx: Context, path: str, runs: int) -> dict[str, Any]:
    Journal.open(path).close()  # warm-up, as in a long-running process
    harness.reset_peak_rss()
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        journal = Journal.open(path)
        times.append(time.perf_counter() - started)
        journal.close()
    return {
        "ops": times,
        "latencies": times,
        "rates": [1 / harness.median(times)],
        "runs": runs,
        "events": ctx.meta["open"]["segments"] * ctx.meta["open"]["per_segment"],
    }


def open_segments(ctx: Context) -> list[Row]:
    """Journal.open() of a journal with 1,000 segments."""
    path = ctx.paths.open
    events = ctx.meta["open"]["segments"] * ctx.meta["open"]["per_segment"]
    rows = [
        _measure(ctx, "open", "journal, new Journal object", _open_objects, path, 10),
        _measure(
            ctx,
            "open",
            "journal, fresh process",
            _fresh_processes,
            _FRESH_OPEN,
            path,
            ctx.sizes.fresh_processes,
            events,
        ),
    ]
    for row in rows:
        row.target = "median < 100 ms"
        row.note = f"{ctx.meta['open']['segments']} segments"
    return rows


def size(ctx: Context) -> list[Row]:
    """Bytes on disk per corpus event, from the inputs built for the other workloads."""
    data = ctx.meta["corpus"]
    total, single = data["events"], data["single"]
    measured = data["bytes"]
    rows = [
        Row(
            "size",
            "journal, append_many",
            total,
            bytes_per_event=measured["main"] / total,
        ),
        Row(
            "size",
            "journal, single appends",
            single,
            bytes_per_event=measured["single"] / single,
        ),
        Row("size", "jsonl", total, bytes_per_event=measured["jsonl"] / total),
        Row("size", "sqlite", total, bytes_per_event=measured["sqlite"] / total),
    ]
    for row in rows[2:]:
        row.ratio = row.bytes_per_event / rows[0].bytes_per_event  # type: ignore[operator]
    rows[0].target = rows[1].target = "≤ 1/4 of jsonl; ≤ 1/5 of sqlite"
    for row in rows:
        ctx.results[("size", row.system)] = row
    return rows


WORKLOADS: dict[str, Callable[[Context], list[Row]]] = {
    "durable": durable,
    "durable-8t": durable_threads,
    "durable-4p": durable_processes,
    "batch": batch,
    "batch-small": batch_small,
    "append_many": append_many,
    "append_many-small": append_many_small,
    "import": import_files,
    "recent": recent,
    "recent-actor": recent_actor,
    "query-hour": query_hour,
    "scan": scan,
    "retention": retention,
    "open": open_segments,
    "size": size,
}


# -- targets ----------------------------------------------------------------------


def _verdict(passed: bool, measured: str) -> str:
    return f"{'PASS' if passed else 'FAIL'} ({measured})"


def judge(rows: list[Row]) -> None:
    """Fill in the result column of every row that carries a target."""
    for row in rows:
        if not row.target:
            continue
        verdicts = []
        if row.target.startswith("journal ≥") and row.ratio is not None:
            required = float(row.target.split("≥")[1].split("×")[0])
            verdicts.append(_verdict(row.ratio >= required, f"{row.ratio:.2f}×"))
        elif row.target.startswith("≥ 5×"):
            reference = row.extra.get("reference_rate")
            if reference and row.rate:
                verdicts.append(
                    _verdict(row.rate / reference >= 5, f"{row.rate / reference:.2f}×")
                )
        elif row.target == "≥ 300,000 events/s" and row.rate:
            verdicts.append(_verdict(row.rate >= 300_000, f"{row.rate:,.0f}/s"))
        elif row.target in ("median < 1 ms", "median < 100 ms"):
            limit = 1.0 if row.target == "median < 1 ms" else 100.0
            if row.median_ms is not None:
                verdicts.append(
                    _verdict(row.median_ms < limit, f"{row.median_ms:.2f} ms")
                )
        elif row.target.startswith("journal ≤ 1.3×"):
            full = next(
                (
                    r
                    for r in rows
                    if r.workload == row.workload and r.system == "journal"
                ),
                None,
            )
            if full and full.median_ms and row.median_ms:
                growth = full.median_ms / row.median_ms
                verdicts.append(_verdict(growth <= 1.3, f"{growth:.2f}×"))
        elif row.target == "peak RSS < 150 MB" and row.rss_mb is not None:
            verdicts.append(_verdict(row.rss_mb < 150, f"{row.rss_mb:.0f} MB"))
        elif row.target.startswith("≤ 1/4 of jsonl"):
            by_system = {r.system: r for r in rows if r.workload == "size"}
            mine = row.bytes_per_event or 0.0
            for name, required in (("jsonl", 4.0), ("sqlite", 5.0)):
                other = by_system.get(name)
                if other and other.bytes_per_event and mine:
                    factor = other.bytes_per_event / mine
                    verdicts.append(_verdict(factor >= required, f"1/{factor:.1f}"))
        row.result = "; ".join(verdicts)
