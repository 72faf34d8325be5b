"""Benchmark journal against SQLite and JSON lines; print one table of results.

Usage::

    python benchmarks/run.py                 # full size: 1,000,000 events, minutes
    python benchmarks/run.py --quick         # 20,000 events, under a minute
    python benchmarks/run.py --workloads durable,recent --events 100000 --markdown

See benchmarks/README.md for what each workload measures and the latest results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import corpus as corpus_module
import datasets
import harness
import workloads


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark journal against SQLite (WAL) and JSON lines via logging.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (20,000 events, 3 runs) so the whole run takes "
        "under a minute",
    )
    parser.add_argument(
        "--workloads",
        default="",
        help="comma-separated workloads to run (default: all): "
        + ", ".join(workloads.WORKLOADS),
    )
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="events in the large journals and databases "
        "(default 1,000,000; 20,000 with --quick)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per system; the table shows the median (default 5; 3 with --quick)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which a system starts no further run "
        "(default 60; 1 with --quick)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as GitHub markdown"
    )

    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep inputs in DIR and reuse them on the next run with the "
        "same sizes (default: a temporary directory, removed)",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="directory of real logs with MANIFEST.tsv "
        "(default: ../shared/data next to the repository)",
    )
    args = parser.parse_args(argv)

    unknown = [
        w for w in args.workloads.split(",") if w and w not in workloads.WORKLOADS
    ]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from "
            f"{', '.join(workloads.WORKLOADS)}"
        )
    if args.events is not None and args.events < 1000:
        parser.error(f"--events must be at least 1000, got {args.events}")
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def describe_corpus(meta: dict[str, object]) -> str:
    data = meta["corpus"]
    assert isinstance(data, dict)
    formats = data["formats"]
    total = sum(formats.values())
    mix = ", ".join(
        f"{name} {count / total:.0%}" for name, count in sorted(formats.items())
    )
    return (
        f"corpus: {data['events']:,} events varied from the real logs ({mix}); "
        f"average JSON size {data['json_bytes'] / data['events']:,.0f} bytes"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    events = args.events or (20_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 5)
    budget = args.budget
    if budget is None:
        budget = 1.0 if args.quick else 60.0
    selected = [w for w in args.workloads.split(",") if w] or list(workloads.WORKLOADS)
    info = harness.machine()
    print(harness.describe_machine(info), flush=True)

    started = time.monotonic()
    workdir = args.workdir or tempfile.mkdtemp(prefix="journal-bench-")
    paths = datasets.Paths(os.path.abspath(workdir))
    sizes = workloads.Sizes(events, quick=args.quick)
    generator = corpus_module.Corpus(args.data)
    try:
        meta = datasets.ensure(
            generator, paths, events, sizes.single, sizes.open_per_segment, log
        )
        ctx = workloads.Context(
            paths=paths,
            meta=meta,
            corpus=generator,
            sizes=sizes,
            repeat=repeat,
            budget=budget,
            log=log,
        )
        os.makedirs(paths.scratch, exist_ok=True)
        rows: list[harness.Row] = []
        loads: list[float] = []
        failed = 0
        for name in selected:
            load = os.getloadavg()[0]
            loads.append(load)
            log(f"workload {name} (load average {load:.2f})")
            try:
                rows.extend(workloads.WORKLOADS[name](ctx))
            except harness.ChildFailed as err:
                failed += 1
                log(f"workload {name} failed: {err}")
                rows.append(harness.Row(name, "(failed)", result="ERROR"))
            except Exception:
                failed += 1
                log(f"workload {name} failed:\n{traceback.format_exc()}")
                rows.append(harness.Row(name, "(failed)", result="ERROR"))
        workloads.judge(rows)
    finally:
        shutil.rmtree(paths.scratch, ignore_errors=True)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print(describe_corpus(meta))
    print(
        f"sizes: durable {sizes.durable:,} events, threads {workloads.THREADS}×"
        f"{sizes.per_thread}, processes {workloads.PROCESSES}×{sizes.per_thread}, "
        f"batch {sizes.batch:,} (small {sizes.batch_small:,}); up to {repeat} runs per "
        f"system; whole run {time.monotonic() - started:,.0f} s"
    )
    print(
        f"1-minute load average before each workload: {min(loads):.2f} to "
        f"{max(loads):.2f} on {os.cpu_count()} CPUs (other processes add noise)"
    )
    print(harness.markdown_table(rows) if args.markdown else harness.text_table(rows))
    if args.json:
        options = {
            "events": events,
            "load_averages": loads,
            "repeat": repeat,
            "budget": budget,
            "quick": args.quick,
            "workloads": selected,
            "corpus": meta["corpus"],
            "open": meta["open"],
        }
        with open(args.json, "wb") as fh:
            fh.write(harness.as_json(rows, info, options))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
