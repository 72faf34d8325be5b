"""Profile journal's side of one benchmark workload with cProfile.

Usage::

    python benchmarks/profile_journal.py durable
    python benchmarks/profile_journal.py batch-small --events 200000
    python benchmarks/profile_journal.py recent --journal /tmp/bench/journal-main
    python benchmarks/profile_journal.py durable-8t --sort cumulative --top 40

Write scenarios append to a new journal in a temporary directory. Read scenarios
need ``--journal``, for example ``journal-main`` inside the ``--workdir`` of an
earlier ``run.py`` (``recent-actor`` and ``query-hour`` expect the corpus events
of that journal). Threads are profiled one profiler per thread, merged.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import corpus as corpus_module

from journal import AuditEvent, Journal

THREADS = 8


def _events(kind: str, count: int) -> list[AuditEvent]:
    if kind == "small":
        return corpus_module.small_events(count)
    return corpus_module.Corpus().events(count)


def _profile_threads(journal: Journal, events: list[AuditEvent]) -> pstats.Stats:
    """Append *events* from THREADS threads, each under its own profiler."""
    profiles = [cProfile.Profile() for _ in range(THREADS)]
    share = len(events) // THREADS
    barrier = threading.Barrier(THREADS)

    def work(n: int) -> None:
        barrier.wait()
        profiles[n].enable()
        for event in events[n * share : (n + 1) * share]:
            journal.append(event)
        profiles[n].disable()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    return stats


def _write_scenario(
    name: str, count: int, directory: str
) -> tuple[Callable[[], object], Journal]:
    kind = "small" if name.endswith("-small") else "corpus"
    events = _events(kind, count)
    if name.startswith("batch"):
        journal = Journal.open(directory, durability="batch")

        def buffered() -> None:
            for event in events:
                journal.append(event)
            journal.flush()

        return buffered, journal
    journal = Journal.open(directory)
    if name.startswith("append_many"):
        chunks = [events[i : i + 1000] for i in range(0, len(events), 1000)]
        return (lambda: [journal.append_many(c) for c in chunks]), journal
    return (lambda: [journal.append(e) for e in events]), journal


def _read_scenario(name: str, path: str, calls: int) -> Callable[[], object]:
    journal = Journal.open(path, readonly=True)
    since = corpus_module.END - timedelta(hours=1)
    if name == "recent":
        journal.recent(100)
        return lambda: [journal.recent(100) for _ in range(calls)]
    if name == "recent-actor":
        return lambda: [
            journal.recent(100, actor=corpus_module.RARE_ACTOR) for _ in range(calls)
        ]
    if name == "query-hour":
        return lambda: [list(journal.query(since=since)) for _ in range(calls)]
    if name == "scan":
        return lambda: sum(1 for _ in journal.read())
    if name == "open":
        return lambda: [Journal.open(path).close() for _ in range(calls)]
    raise ValueError(name)


WRITES = (
    "durable",
    "durable-8t",
    "batch",
    "batch-small",
    "append_many",
    "append_many-small",
)
READS = ("recent", "recent-actor", "query-hour", "scan", "open")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=WRITES + READS)
    parser.add_argument(
        "--events",
        type=int,
        default=2000,
        help="events appended by a write scenario (default 2000)",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=20,
        help="calls made by a query scenario (default 20)",
    )
    parser.add_argument("--journal", help="journal directory for a read scenario")
    parser.add_argument(
        "--sort", default="tottime", help="pstats sort key (default tottime)"
    )
    parser.add_argument("--top", type=int, default=25, help="rows printed (default 25)")
    args = parser.parse_args()
    if args.scenario in READS and not args.journal:
        parser.error(f"{args.scenario} reads a journal: pass --journal DIR")

    with tempfile.TemporaryDirectory(prefix="journal-profile-") as scratch:
        journal: Journal | None = None
        if args.scenario == "durable-8t":
            journal = Journal.open(scratch)
            events = _events("corpus", args.events)
            started = time.perf_counter()
            stats = _profile_threads(journal, events)
            elapsed = time.perf_counter() - started
        else:
            if args.scenario in WRITES:
                work, journal = _write_scenario(args.scenario, args.events, scratch)
            else:
                work = _read_scenario(args.scenario, args.journal, args.calls)
            profile = cProfile.Profile()
            started = time.perf_counter()
            profile.runcall(work)
            elapsed = time.perf_counter() - started
            stats = pstats.Stats(profile)
        if journal is not None:
            lock = journal.stats()["lock"]
            journal.close()
            print(f"write lock: {lock}")

    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(args.sort).print_stats(args.top)
    print(f"{args.scenario}: {elapsed:.3f} s under the profiler")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
