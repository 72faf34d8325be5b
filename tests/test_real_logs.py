"""Import the real audit logs listed in MANIFEST.tsv and read them back.

MANIFEST.tsv has the columns path, format and events (the number of journal
events each file should give). The tests skip when the data folder is absent.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from journal import Journal
from journal.cli import main

TEXT_FORMATS = {"auditd", "syslog"}
# The stamp that starts the grouping key of an auditd record.
AUDIT_STAMP = re.compile(r"msg=audit\(\d+\.\d+:\d+\)")


def read_manifest(shared_data: Path) -> list[tuple[str, str, int]]:
    with (shared_data / "MANIFEST.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [(row["path"], row["format"], int(row["events"])) for row in rows]


def invoke(*args) -> object:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    assert "\x1b" not in result.output
    return result


def source_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.removeprefix(b"\xef\xbb\xbf")


def source_json_records(path: Path) -> list:
    """Return the JSON records of a file: a Records or items array, or one per line."""
    text = source_bytes(path).decode("utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        return document["Records"]
    if isinstance(document, dict) and isinstance(document.get("items"), list):
        return document["items"]
    if isinstance(document, list):
        return document
    return [document]


def source_text_lines(path: Path) -> list[str]:
    lines = []
    for raw in source_bytes(path).split(b"\n"):
        raw = raw.removesuffix(b"\r")
        if raw.strip() and not raw.startswith(b"#"):
            lines.append(raw.decode("utf-8", errors="replace"))
    return lines


@pytest.fixture(scope="module")
def manifest(shared_data) -> list[tuple[str, str, int]]:
    return read_manifest(shared_data)


@pytest.fixture(scope="module")
def combined(tmp_path_factory, shared_data, manifest) -> Path:
    """One journal holding every file of the manifest."""
    rows = manifest
    directory = tmp_path_factory.mktemp("combined") / "journal"
    result = invoke(
        "import",
        directory,
        *[shared_data / p for p, _, _ in rows],
        "--format",
        "auto",
        "--json",
    )
    summary = json.loads(result.stdout)
    assert summary["files"] == len(rows)
    return directory


def test_import_every_file_count(combined, manifest) -> None:
    expected = sum(count for _, _, count in manifest)
    with Journal.open(combined, readonly=True) as journal:
        events = list(journal.read())
        assert len(events) == expected
        assert [e.seq for e in events] == list(range(1, expected + 1))
        assert journal.stats()["events"] == expected
        assert journal.verify().ok
    formats = Counter(e.metadata["format"] for e in events)
    by_manifest = Counter()
    for _, fmt, count in manifest:
        by_manifest[fmt] += count
    assert formats == by_manifest


def test_import_each_file(shared_data, manifest, tmp_path) -> None:
    mismatches = []
    for number, (relative, fmt, count) in enumerate(manifest):
        source = shared_data / relative
        directory = tmp_path / f"j{number}"
        invoke("import", directory, source, "--format", "auto")
        with Journal.open(directory, readonly=True) as journal:
            events = list(journal.read())
        if len(events) != count:
            mismatches.append((relative, "count", len(events), count))
            continue
        formats = {e.metadata["format"] for e in events}
        if formats != {fmt}:
            mismatches.append((relative, "format", formats, fmt))
        exported = invoke("export", directory, "--original").stdout
        originals = [json.loads(line) for line in exported.splitlines()]
        if len(originals) != count:
            mismatches.append((relative, "export", len(originals), count))
            continue
        problem = _compare_originals(source, fmt, originals)
        if problem:
            mismatches.append((relative, problem))
    assert mismatches == []


def _compare_originals(source: Path, fmt: str, originals: list) -> str | None:
    if fmt not in TEXT_FORMATS:
        records = source_json_records(source)
        if originals != records:
            return f"{len(originals)} exported JSON records differ from {len(records)} in the file"
        return None
    if not all(isinstance(o, str) for o in originals):
        return "an exported original is not a string"
    lines = source_text_lines(source)
    if fmt == "syslog":
        return None if originals == lines else "exported lines differ from the file"
    # auditd: each event contains the lines of one group in file order, and
    # together the groups contain every stamped line exactly once.
    stamped = [line for line in lines if AUDIT_STAMP.search(line)]
    grouped = [line for original in originals for line in original.split("\n")]
    if Counter(grouped) != Counter(stamped):
        return "exported auditd lines differ from the stamped lines of the file"
    for original in originals:
        group = original.split("\n")
        positions = [stamped.index(line) for line in group]
        if positions != sorted(positions):
            return "an auditd group is out of file order"
    return None


READ_COMMANDS = [
    ["recent", "-n", "50"],
    ["query", "--actor", "root"],
    ["query", "--since", "2005-01-01T00:00:00Z", "--until", "2030-01-01T00:00:00Z"],
    ["tail", "-n", "20"],
    ["segments"],
    ["stats"],
    ["verify"],
]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_read_commands_on_real_journal(combined, command) -> None:
    human = invoke(command[0], combined, *command[1:])
    assert human.stdout.strip()
    as_json = invoke(command[0], combined, *command[1:], "--json")
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert lines
    if command[0] in ("recent", "query", "tail"):
        for line in lines:
            assert line["time"].endswith("Z")
            assert line["metadata"]["format"] in {
                "auditd",
                "syslog",
                "k8s",
                "cloudtrail",
            }


def test_export_and_checkpoint_on_real_journal(combined, manifest) -> None:
    total = sum(count for _, _, count in manifest)
    exported = invoke("export", combined).stdout.splitlines()
    assert len(exported) == total
    assert [json.loads(line)["seq"] for line in exported[:3]] == [1, 2, 3]
    originals = invoke("export", combined, "--original").stdout.splitlines()
    assert len(originals) == total
    head = json.loads(invoke("checkpoint", combined).stdout)
    assert head["seq"] == total


def test_inspect_real_segments(combined) -> None:
    segments = sorted(combined.glob("*.seg"))
    assert segments
    for segment in segments:
        invoke("inspect", segment)
        lines = invoke("inspect", segment, "--frames", "--json").stdout.splitlines()
        header = json.loads(lines[0])
        assert header["damaged"] == 0
        assert header["frames"] == len(lines) - 1


def test_query_filters_on_real_journal(combined) -> None:
    with Journal.open(combined, readonly=True) as journal:
        events = list(journal.read())
        actions = Counter(e.action for e in events)
        for action, count in actions.most_common(5):
            assert len(list(journal.query(action=action))) == count
        failures = [e.seq for e in events if e.outcome == "failure"]
        assert [e.seq for e in journal.query(outcome="failure")] == failures
        newest_failures = [e.seq for e in journal.recent(10, outcome="failure")]
        assert newest_failures == failures[::-1][:10]
