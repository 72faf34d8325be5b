"""Shared inputs built once per run: large journals, SQLite databases and log files.

Everything here is built outside the timed parts, with ``append_many`` and
``executemany`` in chunks, from one pass over the generated corpus:

* ``journal-main``: all ``events`` corpus events, default segment size.
* ``journal-tenth`` and ``sqlite-tenth.db``: the first tenth of them.
* ``journal-retention``: all events again, in segments small enough for about
  ``RETENTION_SEGMENTS`` segments.
* ``journal-single``: the first ``single`` events appended one at a time, the
  layout live single appends produce (one frame per event).
* ``sqlite-main.db`` and ``events.jsonl``: all events.
* ``import/``: the ``original`` records of all events written back in their native
  formats: ``syslog.log``, ``auditd.log``, ``k8s.jsonl`` and CloudTrail documents
  ``{"Records": [...]}`` of ``CLOUDTRAIL_FILE_RECORDS`` records each.
* ``journal-open``: a journal of 1,000 segments of small synthetic events.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
from dataclasses import dataclass
from typing import IO, Any

import baselines
import corpus as corpus_module
import harness
import msgspec

from journal import AuditEvent, Journal

#: Version of the dataset layout; a cached work directory with another is rebuilt.
LAYOUT = 3
#: Segments wanted in the retention journal.
RETENTION_SEGMENTS = 150
#: Records per generated CloudTrail document; real trail files are a few MB.
CLOUDTRAIL_FILE_RECORDS = 2000
#: Segments in the journal of the open workload.
OPEN_SEGMENTS = 1000
#: Events generated and written per step.
CHUNK = 5000

_event_list = msgspec.msgpack.Decoder(list[AuditEvent])
_generator: corpus_module.Corpus | None = None


@dataclass(frozen=True)
class Paths:
    """Paths of the shared inputs inside the work directory."""

    root: str

    def __getattr__(self, name: str) -> str:
        names = {
            "main": "journal-main",
            "tenth": "journal-tenth",
            "retention": "journal-retention",
            "single": "journal-single",
            "open": "journal-open",
            "sqlite_main": "sqlite-main.db",
            "sqlite_tenth": "sqlite-tenth.db",
            "jsonl": "events.jsonl",
            "imports": "import",
            "meta": "datasets.json",
            "scratch": "scratch",
        }
        if name not in names:
            raise AttributeError(name)
        return os.path.join(self.root, names[name])


def _generate(arguments: tuple[int, int, int]) -> bytes:
    start, count, total = arguments
    assert _generator is not None
    return msgspec.msgpack.encode(_generator.events(count, start, total))


class _ImportWriter:
    """Write each event's original record to a file of its native format."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.files: dict[str, IO[bytes]] = {}
        self.cloudtrail: list[Any] = []
        self.cloudtrail_files = 0
        self.counts: dict[str, int] = {}

    def _file(self, name: str) -> IO[bytes]:
        if name not in self.files:
            self.files[name] = open(os.path.join(self.directory, name), "wb")  # noqa: SIM115
        return self.files[name]

    def add(self, event: AuditEvent) -> None:
        fmt = event.metadata["format"]
        original = event.metadata["original"]
        self.counts[fmt] = self.counts.get(fmt, 0) + 1
        if fmt in ("syslog", "auditd"):
            self._file(f"{fmt}.log").write(original.encode() + b"\n")
        elif fmt == "k8s":
            self._file("k8s.jsonl").write(msgspec.json.encode(original) + b"\n")
        else:
            self.cloudtrail.append(original)
            if len(self.cloudtrail) >= CLOUDTRAIL_FILE_RECORDS:
                self._flush_cloudtrail()

    def _flush_cloudtrail(self) -> None:
        if not self.cloudtrail:
            return
        self.cloudtrail_files += 1
        name = os.path.join(
            self.directory, f"cloudtrail-{self.cloudtrail_files:05d}.json"
        )
        with open(name, "wb") as fh:
            fh.write(msgspec.json.encode({"Records": self.cloudtrail}))
        self.cloudtrail = []

    def close(self) -> None:
        self._flush_cloudtrail()
        for fh in self.files.values():
            fh.close()


def import_files(paths: Paths) -> list[str]:
    """Return the generated native-format log files, sorted by name."""
    return sorted(os.path.join(paths.imports, n) for n in os.listdir(paths.imports))


def build_corpus_data(
    generator: corpus_module.Corpus, paths: Paths, total: int, single: int
) -> dict[str, Any]:
    """Build every corpus-based input in one pass; return their sizes and counts."""
    # The generator process of the pool is forked from here and reads this.
    global _generator  # noqa: PLW0603
    _generator = generator
    for name in ("main", "tenth", "retention", "single", "imports"):
        shutil.rmtree(getattr(paths, name), ignore_errors=True)
    for name in ("sqlite_main", "sqlite_tenth", "jsonl"):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(getattr(paths, name) + suffix):
                os.unlink(getattr(paths, name) + suffix)
    tenth = max(1, total // 10)
    main = Journal.open(paths.main, durability="flush")
    tenth_journal = Journal.open(paths.tenth, durability="flush")
    single_journal = Journal.open(paths.single, durability="flush")
    retention: Journal | None = None
    retention_batch = CHUNK
    sqlite_main = baselines.connect(paths.sqlite_main, "NORMAL")
    sqlite_tenth = baselines.connect(paths.sqlite_tenth, "NORMAL")
    imports = _ImportWriter(paths.imports)
    json_bytes = 0
    steps = [
        (start, min(CHUNK, total - start), total) for start in range(0, total, CHUNK)
    ]
    # A second process generates the next chunks while this one writes them.
    with (
        multiprocessing.get_context("fork").Pool(1) as pool,
        open(paths.jsonl, "wb") as jsonl,
    ):
        for (start, count, _), encoded in zip(
            steps, pool.imap(_generate, steps), strict=True
        ):
            chunk = _event_list.decode(encoded)
            for event in chunk:
                line = baselines.json_line(event)
                json_bytes += len(line)
                jsonl.write(line)
                imports.add(event)
            main.append_many(chunk)
            if retention is None:
                # Size the retention segments from the compressed size of this chunk.
                per_event = harness.directory_bytes(paths.main) / count
                segment_bytes = max(
                    16 << 10, int(per_event * total / RETENTION_SEGMENTS)
                )
                per_segment = max(8, int(segment_bytes / per_event))
                retention_batch = max(8, per_segment // 4)
                retention = Journal.open(
                    paths.retention, durability="flush", segment_max_bytes=segment_bytes
                )
            copies = corpus_module.fresh(chunk)
            for at in range(0, count, retention_batch):
                retention.append_many(copies[at : at + retention_batch])
            baselines.insert_many(sqlite_main, chunk)
            if start < tenth:
                part = chunk[: tenth - start]
                tenth_journal.append_many(corpus_module.fresh(part))
                baselines.insert_many(sqlite_tenth, part)
            if start < single:
                for event in corpus_module.fresh(chunk[: single - start]):
                    single_journal.append(event)
    imports.close()
    assert retention is not None
    segments = len(retention.segments())
    for journal in (main, tenth_journal, single_journal, retention):
        journal.close()
    for conn in (sqlite_main, sqlite_tenth):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    return {
        "events": total,
        "tenth": tenth,
        "single": min(single, total),
        "retention_segments": segments,
        "retention_segment_bytes": segment_bytes,
        "json_bytes": json_bytes,
        "formats": imports.counts,
        "bytes": {
            "main": harness.directory_bytes(paths.main),
            "single": harness.directory_bytes(paths.single),
            "jsonl": os.path.getsize(paths.jsonl),
            "sqlite": baselines.database_bytes(paths.sqlite_main),
        },
    }


def build_open_journal(paths: Paths, per_segment: int) -> dict[str, Any]:
    """Build a journal of ``OPEN_SEGMENTS`` segments of *per_segment* small events."""
    shutil.rmtree(paths.open, ignore_errors=True)
    rng = random.Random(3)
    users = [f"user{k:04d}" for k in range(500)]
    # Each append_many call fills one segment: the roll to a new segment happens
    # before a write once the active one reached segment_max_bytes.
    with Journal.open(
        paths.open, durability="flush", segment_max_bytes=4096
    ) as journal:
        count = 0
        while count < OPEN_SEGMENTS:
            for _ in range(OPEN_SEGMENTS - count):
                journal.append_many(
                    [corpus_module.small_event(rng, users) for _ in range(per_segment)]
                )
            count = len(journal.segments())
    return {
        "segments": count,
        "per_segment": per_segment,
        "bytes": harness.directory_bytes(paths.open),
    }


def ensure(
    generator: corpus_module.Corpus,
    paths: Paths,
    total: int,
    single: int,
    open_per_segment: int,
    log: Any,
) -> dict[str, Any]:
    """Build the shared inputs unless the work directory has them for these sizes."""
    wanted = {
        "layout": LAYOUT,
        "events": total,
        "single": single,
        "open_per_segment": open_per_segment,
        "seed": generator.seed,
    }
    if os.path.exists(paths.meta):
        with open(paths.meta, "rb") as fh:
            meta = msgspec.json.decode(fh.read())
        if meta.get("wanted") == wanted:
            log(f"reusing the inputs in {paths.root}")
            return meta
    os.makedirs(paths.root, exist_ok=True)
    log(
        f"building inputs for {total:,} events and a journal of {OPEN_SEGMENTS} "
        f"segments in {paths.root} (not timed)"
    )
    # Both builders run at once; nothing is timed while they run.
    builder = harness.Child(build_open_journal, paths, open_per_segment)
    data, _ = harness.in_child(build_corpus_data, generator, paths, total, single)
    opened, _ = builder.result()
    meta = {"wanted": wanted, "corpus": data, "open": opened}
    with open(paths.meta, "wb") as fh:
        fh.write(msgspec.json.encode(meta))
    return meta
