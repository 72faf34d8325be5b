"""Tests of journal.importers on the shipped samples, the shared real logs and edge cases."""

from __future__ import annotations

import csv
import gzip
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from journal.errors import InvalidArgument, JournalError
from journal.event import validate_event
from journal.importers import (
    FORMATS,
    ImportedRecord,
    ImportProblem,
    UnknownFormat,
    detect_format,
    iter_records,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
UTC = timezone.utc


def split(
    path: Path, fmt: str = "auto", **options: Any
) -> tuple[list[ImportedRecord], list[ImportProblem]]:
    """Import *path* and return its records and problems, each in file order."""
    records: list[ImportedRecord] = []
    problems: list[ImportProblem] = []
    for item in iter_records(path, fmt, **options):
        if isinstance(item, ImportedRecord):
            records.append(item)
        else:
            problems.append(item)
    return records, problems


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


# --- the shared real logs ----------------------------------------------------


def _manifest_params() -> list[Any]:
    manifest = SHARED_DATA / "MANIFEST.tsv"
    if not manifest.is_file():
        return [
            pytest.param(
                None,
                marks=pytest.mark.skip(reason=f"no real log data at {SHARED_DATA}"),
                id="no-shared-data",
            )
        ]
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [pytest.param(row, id=row["path"]) for row in rows]


def _expected_json_records(path: Path) -> list[Any]:
    """Decode the source records with the standard library, independently of msgspec."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        return list(document["Records"])
    return [document]


def _text_lines(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8")
    return [line.removesuffix("\r") for line in text.split("\n")]


_AUDIT_STAMP = re.compile(r"msg=audit\((\d+\.\d+:\d+)\)")


@pytest.mark.parametrize("row", _manifest_params())
def test_manifest_file_imports_exactly(row: dict[str, str]) -> None:
    path = SHARED_DATA / row["path"]
    assert detect_format(path) == row["format"]
    records, problems = split(path)
    assert len(records) == int(row["events"])
    for record in records:
        assert validate_event(record.event) is record.event
        assert record.event.metadata["format"] == row["format"]
        assert record.path == str(path)
    originals = [record.event.metadata["original"] for record in records]
    if row["format"] in ("k8s", "cloudtrail", "jsonl"):
        assert problems == []
        assert originals == _expected_json_records(path)
    elif row["format"] == "syslog":
        assert problems == []
        assert originals == [line for line in _text_lines(path) if line.strip()]
    else:
        _check_auditd_originals(path, records, problems)


def _check_auditd_originals(
    path: Path, records: list[ImportedRecord], problems: list[ImportProblem]
) -> None:
    lines = _text_lines(path)
    stamped = [line for line in lines if _AUDIT_STAMP.search(line)]
    grouped: list[str] = []
    for record in records:
        group = record.event.metadata["original"].split("\n")
        stamps = {_AUDIT_STAMP.search(line)[1] for line in group}  # type: ignore[index]
        assert len(stamps) == 1
        assert record.event.id.endswith(stamps.pop())
        assert lines[record.line - 1] == group[0]
        grouped.extend(group)
    assert sorted(grouped) == sorted(stamped)
    for problem in problems:
        assert problem.reason in ("comment", "no-timestamp")
        assert not _AUDIT_STAMP.search(lines[problem.line - 1])


# --- shipped samples -----------------------------------------------------------


SAMPLE_FILES = [
    pytest.param("k8s/attach_pod.json", "k8s", 1, id="k8s-attach-pod"),
    pytest.param(
        "k8s/create_configmap_sensitive_values.json", "k8s", 6, id="k8s-six-events"
    ),
    pytest.param("k8s/create_secret.json", "k8s", 1, id="k8s-v1-trailing-blank"),
    pytest.param(
        "cloudtrail/events-for-smoke-test.json",
        "cloudtrail",
        3,
        id="cloudtrail-records",
    ),
    pytest.param(
        "cloudtrail/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz",
        "cloudtrail",
        2,
        id="cloudtrail-gzip",
    ),
    pytest.param(
        "cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json",
        "cloudtrail",
        103,
        id="cloudtrail-json-lines",
    ),
    pytest.param("auditd/audit-rhel7.log", "auditd", 46, id="auditd-sorted-by-type"),
    pytest.param("auditd/normal.log", "auditd", 5, id="auditd-normal"),
    pytest.param(
        "auditd/sh_arp_cache_2020-11-10074812.log", "auditd", 2, id="auditd-otrf"
    ),
    pytest.param("syslog/auth.log", "syslog", 41, id="syslog-auth-log"),
]


@pytest.mark.parametrize(("name", "fmt", "count"), SAMPLE_FILES)
def test_sample_detected_and_counted(name: str, fmt: str, count: int) -> None:
    path = SAMPLES / name
    assert detect_format(path) == fmt
    records, _ = split(path)
    assert len(records) == count


def test_samples_listed_in_notice() -> None:
    notice = (SAMPLES / "NOTICE.md").read_text()
    shipped = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix != ".md")
    assert len(shipped) >= 40
    for path in shipped:
        assert f"`{path.relative_to(SAMPLES)}`" in notice or path.name in notice


def test_samples_total_size_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 400_000


# --- Kubernetes ------------------------------------------------------------------


def test_k8s_attach_pod_mapping() -> None:
    [record], problems = split(SAMPLES / "k8s/attach_pod.json")
    event = record.event
    assert problems == []
    assert record.line == 1
    assert record.warning is None
    assert event.action == "k8s.create"
    assert event.actor == "minikube-user"
    assert (
        event.target
        == "namespaces/default/pods/nginx-deployment-7998647bdf-phvq7/attach"
    )
    assert event.outcome == "success"
    assert event.source == "192.168.99.1"
    assert event.time == datetime(2018, 10, 26, 13, 42, 46, 764713, tzinfo=UTC)
    assert event.id == "14933b4e-7b09-4964-af09-b7987367e1ba"
    assert event.metadata["verb"] == "create"
    assert event.metadata["resource"] == "pods"
    assert event.metadata["subresource"] == "attach"
    assert event.metadata["responseCode"] == 101
    assert "time_source" not in event.metadata


def test_k8s_cluster_scoped_target() -> None:
    [record], _ = split(SAMPLES / "k8s/delete_clusterrole.json")
    assert record.event.action == "k8s.delete"
    assert record.event.target == "clusterroles/some-reader"


def test_k8s_namespace_target() -> None:
    [record], _ = split(SAMPLES / "k8s/delete_namespace_foo.json")
    assert record.event.target == "namespaces/foo"


def _k8s_event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "verb": "get",
        "requestURI": "/api/v1/namespaces/prod/secrets/db",
        "user": {"username": "alice"},
        "sourceIPs": ["10.0.0.7", "10.0.0.8"],
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db"},
        "requestReceivedTimestamp": "2024-05-01T12:00:00.5Z",
        "stageTimestamp": "2024-05-01T12:00:01Z",
    }
    event.update(fields)
    return {key: value for key, value in event.items() if value is not None}


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        pytest.param({"responseStatus": {"code": 200}}, "success", id="200"),
        pytest.param({"responseStatus": {"code": 403}}, "denied", id="403"),
        pytest.param({"responseStatus": {"code": 401}}, "denied", id="401"),
        pytest.param({"responseStatus": {"code": 404}}, "failure", id="404"),
        pytest.param({"responseStatus": {"code": 500}}, "failure", id="500"),
        pytest.param(
            {"annotations": {"authorization.k8s.io/decision": "forbid"}},
            "denied",
            id="no-code-forbid",
        ),
        pytest.param({}, "unknown", id="no-code"),
    ],
)
def test_k8s_outcome(tmp_path: Path, fields: dict[str, Any], outcome: str) -> None:
    path = write(tmp_path, "audit.log", json.dumps(_k8s_event(**fields)) + "\n")
    [record], _ = split(path)
    assert record.event.outcome == outcome


def test_k8s_fields_of_synthetic_event(tmp_path: Path) -> None:
    path = write(tmp_path, "audit.log", json.dumps(_k8s_event()) + "\n")
    [record], _ = split(path, "k8s")
    event = record.event
    assert event.action == "k8s.get"
    assert event.actor == "alice"
    assert event.target == "namespaces/prod/secrets/db"
    assert event.source == "10.0.0.7"
    assert event.time == datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert event.id == "a1"


@pytest.mark.parametrize(
    ("drop", "time", "source"),
    [
        pytest.param(
            ["requestReceivedTimestamp"],
            datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC),
            "stageTimestamp",
            id="stage",
        ),
        pytest.param(
            ["requestReceivedTimestamp", "stageTimestamp"],
            datetime(2024, 5, 1, 11, 0, tzinfo=UTC),
            "timestamp",
            id="v1beta1-timestamp",
        ),
    ],
)
def test_k8s_time_fallback(
    tmp_path: Path, drop: list[str], time: datetime, source: str
) -> None:
    event = _k8s_event(
        apiVersion="audit.k8s.io/v1beta1", timestamp="2024-05-01T11:00:00Z"
    )
    for key in drop:
        del event[key]
    path = write(tmp_path, "audit.log", json.dumps(event))
    [record], _ = split(path)
    assert record.event.time == time
    assert record.event.metadata["time_source"] == source


def test_k8s_without_time_is_problem(tmp_path: Path) -> None:
    event = _k8s_event(requestReceivedTimestamp=None, stageTimestamp=None)
    path = write(tmp_path, "audit.log", json.dumps(event))
    records, [problem] = split(path, "k8s")
    assert records == []
    assert problem.reason == "no-timestamp"
    assert problem.line == 1


def test_k8s_without_verb_is_missing_field(tmp_path: Path) -> None:
    event = _k8s_event(verb=None)
    path = write(tmp_path, "audit.log", json.dumps(event))
    records, [problem] = split(path, "k8s")
    assert records == []
    assert problem.reason == "missing-field"
    assert "verb" in problem.message
    assert "--map action=" in problem.message


def test_k8s_request_uri_target_without_object_ref(tmp_path: Path) -> None:
    event = _k8s_event(objectRef=None, requestURI="/healthz")
    path = write(tmp_path, "audit.log", json.dumps(event))
    [record], _ = split(path)
    assert record.event.target == "/healthz"


def test_k8s_impersonated_user_fallback(tmp_path: Path) -> None:
    event = _k8s_event(user={}, impersonatedUser={"username": "bob"})
    path = write(tmp_path, "audit.log", json.dumps(event))
    [record], _ = split(path)
    assert record.event.actor == "bob"
    assert record.event.metadata["impersonatedUser"] == "bob"


def test_k8s_event_list_numbered_by_index(tmp_path: Path) -> None:
    document = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "items": [_k8s_event(auditID="x1"), _k8s_event(auditID="x2")],
    }
    path = write(tmp_path, "list.json", json.dumps(document, indent=2))
    assert detect_format(path) == "k8s"
    records, problems = split(path)
    assert problems == []
    assert [r.line for r in records] == [1, 2]
    assert [r.event.id for r in records] == ["x1", "x2"]


def test_k8s_pretty_printed_crlf_events(tmp_path: Path) -> None:
    first = json.dumps(_k8s_event(auditID="p1"), indent=2)
    second = json.dumps(_k8s_event(auditID="p2"))
    content = (first + "\n" + second + "\n").replace("\n", "\r\n")
    path = write(tmp_path, "audit.log", content)
    assert detect_format(path) == "k8s"
    records, problems = split(path)
    assert problems == []
    assert [r.event.id for r in records] == ["p1", "p2"]
    assert [r.line for r in records] == [1, first.count("\n") + 2]
    assert records[0].event.metadata["original"] == json.loads(first)


def test_k8s_core_event_is_not_audit(tmp_path: Path) -> None:
    core = {"kind": "Event", "apiVersion": "v1", "reason": "Pulled", "verb": "x"}
    path = write(tmp_path, "events.json", json.dumps(core))
    assert detect_format(path) == "jsonl"


def test_k8s_mapping_overrides_actor(tmp_path: Path) -> None:
    event = _k8s_event(user={"username": "alice", "uid": "u-17"})
    path = write(tmp_path, "audit.log", json.dumps(event))
    [record], _ = split(path, mapping={"actor": "user.uid", "source": "nowhere"})
    assert record.event.actor == "u-17"
    assert record.event.source == "10.0.0.7"


# --- CloudTrail --------------------------------------------------------------------


def test_cloudtrail_records_document() -> None:
    records, problems = split(SAMPLES / "cloudtrail/events-for-smoke-test.json")
    assert problems == []
    assert [r.line for r in records] == [1, 2, 3]
    assume_role = records[2].event
    assert assume_role.action == "sts:AssumeRole"
    assert assume_role.actor == "config.amazonaws.com"
    assert assume_role.target == "arn:aws:iam::111111111111:role/someRole"
    assert assume_role.outcome == "success"
    assert assume_role.source == "config.amazonaws.com"
    assert assume_role.time == datetime(2017, 12, 11, 15, 4, 51, tzinfo=UTC)
    assert assume_role.id == "b25ff7e3-f1cf-4b7f-883d-b09168c454d5"
    assert assume_role.metadata["awsRegion"] == "eu-central-1"
    assert assume_role.metadata["eventSource"] == "sts.amazonaws.com"
    first = records[0].event
    assert first.action == "autoscaling:DescribeLaunchConfigurations"
    assert first.actor == (
        "arn:aws:sts::111111111111:assumed-role/someRole/"
        "AutoScalingDescribeHandlerSession"
    )
    assert records[1].event.time < first.time


def test_cloudtrail_gzip_equals_plain() -> None:
    stem = "cloudtrail/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U"
    plain, _ = split(SAMPLES / f"{stem}.json")
    packed, _ = split(SAMPLES / f"{stem}.json.gz")
    assert [r.event.metadata["original"] for r in packed] == [
        r.event.metadata["original"] for r in plain
    ]
    assert [r.event.id for r in packed] == [r.event.id for r in plain]


def test_cloudtrail_missing_event_time_falls_back() -> None:
    path = SAMPLES / "cloudtrail/ec2_proxy_s3_exfiltration_2020-09-14011940.json"
    records, problems = split(path)
    assert problems == []
    first = records[0]
    assert first.event.time == datetime(2020, 9, 14, 0, 44, 23, tzinfo=UTC)
    assert first.event.metadata["time_source"] == "@timestamp"
    assert first.warning is not None
    assert "eventTime" in first.warning
    assert "@timestamp" in first.warning
    assert all(r.warning for r in records)
    assert first.event.action == "ec2:DescribeInstanceTypes"
    assert first.event.actor == "arn:aws:iam::123456789123:user/pedro"
    last = records[-1].event
    assert last.action == "s3:GetObject"
    assert last.target == "arn:aws:s3:::mordors3stack-s3bucket-llp2yingx64a/ring.txt"


def _trail(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventTime": "2024-05-01T12:00:00Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "eventID": "e-1",
        "sourceIPAddress": "198.51.100.9",
        "userIdentity": {"type": "IAMUser", "userName": "carol"},
    }
    record.update(fields)
    return {key: value for key, value in record.items() if value is not None}


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        pytest.param({}, "success", id="no-error"),
        pytest.param({"errorCode": "AccessDenied"}, "denied", id="access-denied"),
        pytest.param(
            {"errorCode": "Client.UnauthorizedOperation"}, "denied", id="unauthorized"
        ),
        pytest.param({"errorCode": "NoSuchKey"}, "failure", id="no-such-key"),
        pytest.param(
            {
                "eventName": "ConsoleLogin",
                "responseElements": {"ConsoleLogin": "Failure"},
            },
            "failure",
            id="console-login-failure",
        ),
    ],
)
def test_cloudtrail_outcome(
    tmp_path: Path, fields: dict[str, Any], outcome: str
) -> None:
    path = write(tmp_path, "trail.json", json.dumps({"Records": [_trail(**fields)]}))
    [record], _ = split(path)
    assert record.event.outcome == outcome


@pytest.mark.parametrize(
    ("fields", "target"),
    [
        pytest.param(
            {"requestParameters": {"bucketName": "logs", "key": "a/b.txt"}},
            "logs/a/b.txt",
            id="bucket-and-key",
        ),
        pytest.param(
            {"requestParameters": {"roleName": "deploy"}}, "deploy", id="role-name"
        ),
        pytest.param(
            {
                "resources": [{"ARN": "arn:aws:s3:::logs"}],
                "requestParameters": {"bucketName": "other"},
            },
            "arn:aws:s3:::logs",
            id="resources-first",
        ),
        pytest.param({"requestParameters": {"limit": 5}}, None, id="none"),
    ],
)
def test_cloudtrail_target(
    tmp_path: Path, fields: dict[str, Any], target: str | None
) -> None:
    path = write(tmp_path, "trail.jsonl", json.dumps(_trail(**fields)) + "\n")
    assert detect_format(path) == "cloudtrail"
    [record], _ = split(path)
    assert record.event.target == target


def test_cloudtrail_actor_and_source_fallbacks(tmp_path: Path) -> None:
    record = _trail(
        userIdentity={"type": "AWSAccount", "principalId": "AIDAEXAMPLE"},
        sourceIPAddress=None,
        network={"client": {"ip": "203.0.113.5"}},
    )
    path = write(tmp_path, "trail.json", json.dumps(record, indent=4))
    [imported], _ = split(path)
    assert imported.event.actor == "AIDAEXAMPLE"
    assert imported.event.source == "203.0.113.5"
    assert imported.event.action == "s3:GetObject"
    assert imported.line == 1


def test_cloudtrail_without_any_time_is_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "t.json", json.dumps({"Records": [_trail(eventTime=None)]}))
    records, [problem] = split(path)
    assert records == []
    assert problem.reason == "no-timestamp"
    assert "eventTime" in problem.message


def test_cloudtrail_invalid_time_is_problem(tmp_path: Path) -> None:
    record = _trail(eventTime="Sep 14, 2020, 7:01:26 AM")
    path = write(tmp_path, "t.json", json.dumps({"Records": [record, _trail()]}))
    records, [problem] = split(path)
    assert len(records) == 1
    assert problem.reason == "invalid-time"
    assert problem.line == 1
    assert "Sep 14, 2020" in problem.message


def test_cloudtrail_non_object_record(tmp_path: Path) -> None:
    path = write(tmp_path, "t.json", json.dumps({"Records": [_trail(), 7]}))
    records, [problem] = split(path)
    assert len(records) == 1
    assert problem.reason == "not-an-object"
    assert problem.line == 2
    assert "Records[1]" in problem.message


def test_cloudtrail_damaged_gzip(tmp_path: Path) -> None:
    lines = "".join(json.dumps(_trail(eventID=f"e{i}")) + "\n" for i in range(200))
    packed = gzip.compress(lines.encode())
    path = write(tmp_path, "trail.json.gz", packed[: len(packed) // 2])
    records, problems = split(path, "cloudtrail")
    assert 0 < len(records) < 200
    assert problems[-1].reason == "bad-gzip"


def test_cloudtrail_mapping_overrides_time(tmp_path: Path) -> None:
    record = _trail(eventTime=None, observedAt=1714564800)
    path = write(tmp_path, "t.jsonl", json.dumps(record))
    [imported], _ = split(path, mapping={"time": "observedAt"})
    assert imported.event.time == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# --- auditd --------------------------------------------------------------------------

INTERLEAVED = """\
type=SYSCALL msg=audit(1700000000.001:10): arch=c000003e syscall=59 success=yes exit=0 items=1 ppid=1 pid=2 auid=1000 uid=0 comm="ls" exe="/bin/ls" key=(null)
type=SYSCALL msg=audit(1700000000.002:11): arch=c000003e syscall=2 success=no exit=-13 items=1 ppid=1 pid=3 auid=4294967295 uid=33 comm="cat" exe="/bin/cat" key=(null)
type=EXECVE msg=audit(1700000000.001:10): argc=2 a0="ls" a1=2D6C61
type=PATH msg=audit(1700000000.002:11): item=0 name="/etc/shadow" inode=1
type=PATH msg=audit(1700000000.001:10): item=0 name="/bin/ls" inode=2
garbage without a stamp
# a comment
type=EOE msg=audit(1700000000.002:11):
type=EOE msg=audit(1700000000.001:10):
"""


def test_auditd_interleaved_events(tmp_path: Path) -> None:
    path = write(tmp_path, "audit.log", INTERLEAVED)
    assert detect_format(path) == "auditd"
    (first, second), problems = split(path)
    lines = INTERLEAVED.splitlines()
    assert first.line == 1
    assert second.line == 2
    assert first.event.metadata["original"] == "\n".join(
        [lines[0], lines[2], lines[4], lines[8]]
    )
    assert second.event.metadata["original"] == "\n".join(
        [lines[1], lines[3], lines[7]]
    )
    assert first.event.id == "1700000000.001:10"
    assert first.event.action == "auditd.syscall.execve"
    assert first.event.actor == "auid:1000"
    assert first.event.target == "/bin/ls"
    assert first.event.outcome == "success"
    assert first.event.time == datetime(2023, 11, 14, 22, 13, 20, 1000, tzinfo=UTC)
    assert first.event.metadata["argv"] == ["ls", "-la"]
    assert first.event.metadata["types"] == ["SYSCALL", "EXECVE", "PATH", "EOE"]
    assert first.event.metadata["serial"] == 10
    assert second.event.action == "auditd.syscall.open"
    assert second.event.actor == "uid:33"
    assert second.event.target == "/etc/shadow"
    assert second.event.outcome == "failure"
    assert [(p.line, p.reason) for p in problems] == [
        (6, "no-timestamp"),
        (7, "comment"),
    ]
    assert "garbage without a stamp" in problems[0].message


def test_auditd_window_splits_late_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("journal.importers.auditd.GROUP_WINDOW_LINES", 3)
    content = (
        "type=SYSCALL msg=audit(1.000:1): syscall=59 success=yes uid=0\n"
        "type=SYSCALL msg=audit(2.000:2): syscall=59 success=yes uid=0\n"
        "type=SYSCALL msg=audit(3.000:3): syscall=59 success=yes uid=0\n"
        "type=SYSCALL msg=audit(4.000:4): syscall=59 success=yes uid=0\n"
        'type=CWD msg=audit(1.000:1): cwd="/"\n'
    )
    path = write(tmp_path, "audit.log", content)
    records, _ = split(path)
    assert [r.event.id for r in records] == [
        "1.000:1",
        "2.000:2",
        "3.000:3",
        "4.000:4",
        "1.000:1",
    ]
    assert records[-1].event.action == "auditd.cwd"


def test_auditd_eoe_completes_event(tmp_path: Path) -> None:
    content = (
        "type=SYSCALL msg=audit(1.000:1): syscall=59 success=yes uid=0\n"
        "type=EOE msg=audit(1.000:1):\n"
        "type=SYSCALL msg=audit(2.000:2): syscall=59 success=yes uid=0\n"
        'type=CWD msg=audit(1.000:1): cwd="/"\n'
    )
    path = write(tmp_path, "audit.log", content)
    records, _ = split(path)
    assert [r.event.id for r in records] == ["1.000:1", "2.000:2", "1.000:1"]
    assert [r.line for r in records] == [1, 3, 4]
    assert records[0].event.metadata["types"] == ["SYSCALL", "EOE"]


def test_auditd_user_login_failure_hex_acct() -> None:
    records, _ = split(SAMPLES / "auditd/audit-ubuntu16.log")
    failed = records[0].event
    assert failed.action == "auditd.user_login"
    assert failed.actor == "(invalid user)"
    assert failed.outcome == "failure"
    assert failed.source == "179.38.151.221"
    assert failed.target == "/usr/sbin/sshd"
    avc = records[2].event
    assert avc.action == "auditd.avc"
    assert avc.outcome == "denied"


def test_auditd_hex_exe_decoded() -> None:
    records, _ = split(SAMPLES / "auditd/normal.log")
    connect = records[0].event
    assert connect.action == "auditd.syscall.connect"
    assert connect.metadata["exe"] == "/usr/bin/python2.7;58d1ccfb (deleted)"
    assert connect.outcome == "failure"
    assert connect.metadata["exit"] == -115


def test_auditd_account_management_target() -> None:
    records, problems = split(SAMPLES / "auditd/audit-rhel7.log")
    add_user = records[1].event
    assert add_user.action == "auditd.add_user"
    assert add_user.actor == "uid:0"
    assert add_user.target == "id:1000"
    assert [(p.line, p.reason) for p in problems] == [(31, "no-timestamp")]


def test_auditd_proctitle_and_cwd() -> None:
    [arp, grep_], _ = split(SAMPLES / "auditd/sh_arp_cache_2020-11-10074812.log")
    assert arp.event.metadata["proctitle"] == "arp -a"
    assert arp.event.metadata["cwd"] == "/home/wardog"
    assert arp.event.metadata["argv"] == ["arp", "-a"]
    assert grep_.event.metadata["argv"] == ["grep", "-v", "^?"]


def test_auditd_enriched_and_node(tmp_path: Path) -> None:
    line = (
        "node=web01 type=USER_LOGIN msg=audit(1725003193.327:117286): pid=1712 uid=0 "
        'auid=1000 ses=764 msg=\'op=login id=1000 exe="/usr/sbin/sshd" '
        "hostname=host.example addr=192.0.2.4 terminal=ssh res=success'"
        '\x1dUID="root" AUID="alice" ID="alice"'
    )
    path = write(tmp_path, "audit.log", line + "\r\n")
    [record], problems = split(path)
    event = record.event
    assert problems == []
    assert event.id == "web01:1725003193.327:117286"
    assert event.actor == "alice"
    assert event.source == "192.0.2.4"
    assert event.metadata["node"] == "web01"
    assert event.metadata["enriched"] == {"UID": "root", "AUID": "alice", "ID": "alice"}
    assert event.metadata["original"] == line


def test_auditd_single_quote_inside_nested_msg(tmp_path: Path) -> None:
    line = (
        "type=USER_AUTH msg=audit(1670330949.860:161339): pid=5519 uid=0 "
        "auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? "
        'acct="it\'s" exe="/usr/bin/python3.8" hostname=? addr=? terminal=? '
        "res=failed'"
    )
    path = write(tmp_path, "audit.log", line)
    [record], _ = split(path)
    assert record.event.actor == "it's"
    assert record.event.outcome == "failure"
    assert record.event.source is None


def test_auditd_aarch64_syscall_name(tmp_path: Path) -> None:
    line = "type=SYSCALL msg=audit(1.5:9): arch=c00000b7 syscall=221 success=yes uid=0"
    path = write(tmp_path, "audit.log", line)
    [record], _ = split(path)
    assert record.event.action == "auditd.syscall.execve"
    assert record.event.metadata["arch"] == "aarch64"
    assert record.event.time == datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)


# --- syslog ----------------------------------------------------------------------------

AUTH_LOG_EXPECTED = [
    pytest.param(
        1,
        ("login.success", "alice", "web01", "success", "192.0.2.10"),
        id="accepted-publickey",
    ),
    pytest.param(
        2, ("session.open", "alice", "web01", "success", None), id="session-open"
    ),
    pytest.param(
        4,
        ("sudo.command", "alice", "/usr/bin/systemctl restart nginx", "success", None),
        id="sudo",
    ),
    pytest.param(
        7,
        ("login.invalid_user", "admin", "web01", "failure", "203.0.113.45"),
        id="invalid-user",
    ),
    pytest.param(
        9,
        ("auth.failure", "unknown", "web01", "failure", "203.0.113.45"),
        id="pam-failure-no-user",
    ),
    pytest.param(
        10,
        ("login.failure", "admin", "web01", "failure", "203.0.113.45"),
        id="failed-password-invalid-user",
    ),
    pytest.param(
        12,
        ("auth.failure", "root", "web01", "failure", "203.0.113.45"),
        id="pam-failure-user",
    ),
    pytest.param(
        14,
        ("login.failure", "root", "web01", "failure", "203.0.113.45"),
        id="message-repeated",
    ),
    pytest.param(
        16,
        ("ssh.disconnect", "root", "web01", "failure", "203.0.113.45"),
        id="disconnecting",
    ),
    pytest.param(
        19,
        ("ssh.disconnect", "sshd", "web01", "success", "198.51.100.7"),
        id="received-disconnect",
    ),
    pytest.param(
        23,
        ("sudo.command", "bob", "/bin/cat /etc/shadow", "denied", None),
        id="sudo-not-in-sudoers",
    ),
    pytest.param(
        25, ("sudo.command", "bob", "/usr/bin/id", "failure", None), id="sudo-password"
    ),
    pytest.param(26, ("su.success", "alice", "root", "success", None), id="su"),
    pytest.param(30, ("su.failure", "bob", "root", "failure", None), id="su-failed"),
    pytest.param(
        32, ("account.add_user", "useradd", "carol", "success", None), id="useradd"
    ),
    pytest.param(
        38, ("session.close", "alice", "web01", "success", None), id="session-close"
    ),
    pytest.param(
        39,
        ("syslog.systemd-logind", "systemd-logind", None, "success", None),
        id="other-program",
    ),
]


@pytest.mark.parametrize(("line", "expected"), AUTH_LOG_EXPECTED)
def test_syslog_auth_log_mapping(line: int, expected: tuple[Any, ...]) -> None:
    records, problems = split(SAMPLES / "syslog/auth.log", year=2024)
    assert problems == []
    record = records[line - 1]
    event = record.event
    assert record.line == line
    assert (event.action, event.actor, event.target, event.outcome, event.source) == (
        expected
    )


def test_syslog_auth_log_metadata() -> None:
    records, _ = split(SAMPLES / "syslog/auth.log", year=2024)
    sudo = records[3].event
    assert sudo.time == datetime(2024, 3, 3, 9, 15, 10, tzinfo=UTC)
    assert sudo.metadata["run_as"] == "root"
    assert sudo.metadata["pwd"] == "/home/alice"
    assert sudo.metadata["host"] == "web01"
    assert sudo.metadata["program"] == "sudo"
    accepted = records[0].event
    assert accepted.metadata["method"] == "publickey"
    assert accepted.metadata["port"] == 50522
    assert accepted.metadata["pid"] == 2101
    repeated = records[13].event
    assert repeated.metadata["repeated"] == 2
    lines = (SAMPLES / "syslog/auth.log").read_text().splitlines()
    assert [r.event.metadata["original"] for r in records] == lines


def test_syslog_year_argument(tmp_path: Path) -> None:
    path = write(tmp_path, "auth.log", "Feb 29 10:00:00 h sshd[1]: hello\n")
    [record], _ = split(path, year=2020)
    assert record.event.time == datetime(2020, 2, 29, 10, 0, tzinfo=UTC)
    records, [problem] = split(path, year=2021)
    assert records == []
    assert problem.reason == "invalid-time"


def test_syslog_default_year_is_current(tmp_path: Path) -> None:
    path = write(tmp_path, "auth.log", "Jun  1 10:00:00 h sshd[1]: hello\n")
    before = datetime.now(UTC).year
    [record], _ = split(path)
    after = datetime.now(UTC).year
    assert record.event.time.year in (before, after)
    assert (record.event.time.month, record.event.time.day) == (6, 1)


def test_syslog_year_rollover(tmp_path: Path) -> None:
    content = (
        "Dec 31 23:59:58 h app: a\n"
        "Jan  1 00:00:01 h app: b\n"
        "Dec 31 23:59:59 h app: late\n"
        "Jan  1 00:00:02 h app: c\n"
    )
    path = write(tmp_path, "messages", content)
    records, _ = split(path, year=2023)
    assert [r.event.time.year for r in records] == [2023, 2024, 2023, 2024]


def test_syslog_crlf_bom_no_final_newline(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbfMar  3 09:14:02 h sshd[7]: one\r\n\r\nMar  3 09:14:03 h sshd[7]: two"
    path = write(tmp_path, "auth.log", content)
    assert detect_format(path) == "syslog"
    records, problems = split(path, year=2024)
    assert problems == []
    assert [r.event.metadata["original"] for r in records] == [
        "Mar  3 09:14:02 h sshd[7]: one",
        "Mar  3 09:14:03 h sshd[7]: two",
    ]
    assert [r.line for r in records] == [1, 3]


def test_syslog_rfc3339_offset_and_rfc5424(tmp_path: Path) -> None:
    content = (
        "2024-05-01T14:00:00.250+02:00 web02 sshd[9]: Accepted password for dana "
        "from 192.0.2.30 port 4242 ssh2\n"
        "<38>1 2024-05-01T12:00:01Z web03 sshd 77 - - Failed password for erin "
        "from 192.0.2.31 port 4243 ssh2\n"
        '<13>1 2024-05-01T12:00:02Z web03 app - ID47 [ex@1 k="v"] plain message\n'
    )
    path = write(tmp_path, "mixed.log", content)
    assert detect_format(path) == "syslog"
    (first, second, third), problems = split(path)
    assert problems == []
    assert first.event.time == datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert first.event.action == "login.success"
    assert first.event.actor == "dana"
    assert first.event.target == "web02"
    assert second.event.action == "login.failure"
    assert second.event.source == "192.0.2.31"
    assert second.event.metadata["pid"] == 77
    assert second.event.metadata["facility"] == 4
    assert second.event.metadata["severity"] == 6
    assert third.event.action == "syslog.app"
    assert third.event.metadata["msgid"] == "ID47"
    assert third.event.metadata["structured_data"] == '[ex@1 k="v"]'
    assert third.event.metadata["message"] == "plain message"


def test_syslog_bad_lines_are_problems(tmp_path: Path) -> None:
    content = "# rotated\nnot a syslog line\nMar  3 09:14:02 h kernel: ok\n"
    path = write(tmp_path, "messages", content)
    records, problems = split(path, "syslog", year=2024)
    assert len(records) == 1
    assert records[0].event.action == "syslog.kernel"
    assert [(p.line, p.reason) for p in problems] == [
        (1, "comment"),
        (2, "no-timestamp"),
    ]


def test_syslog_invalid_utf8_warns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "auth.log",
        b"Mar  3 09:14:02 h sshd[7]: Invalid user \xff from 192.0.2.1\n",
    )
    [record], _ = split(path, year=2024)
    assert record.warning is not None
    assert "UTF-8" in record.warning
    assert record.event.actor == "\ufffd"


# --- generic JSON lines ---------------------------------------------------------------


def test_jsonl_mapping_with_dotted_paths(tmp_path: Path) -> None:
    rows = [
        {
            "user": {"name": "frank"},
            "event.type": "db.query",
            "ts": 1714564800123,
            "ips": ["192.0.2.50"],
            "ok": False,
            "table": "orders",
        },
        {
            "user": {"name": "gina"},
            "event.type": "db.drop",
            "ts": "2024-05-01T12:00:00",
        },
    ]
    path = write(tmp_path, "app.jsonl", "\n".join(json.dumps(row) for row in rows))
    mapping = {
        "actor": "user.name",
        "action": "event.type",
        "time": "ts",
        "source": "ips.0",
        "outcome": "ok",
        "target": "table",
    }
    (first, second), problems = split(path, mapping=mapping)
    assert problems == []
    assert first.event.actor == "frank"
    assert first.event.action == "db.query"
    assert first.event.time == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert first.event.source == "192.0.2.50"
    assert first.event.outcome == "failure"
    assert first.event.target == "orders"
    assert first.event.metadata == {"format": "jsonl", "original": rows[0]}
    assert second.event.outcome == "success"
    assert second.event.target is None
    assert second.event.time == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_jsonl_default_keys(tmp_path: Path) -> None:
    row = {
        "actor": "hal",
        "action": "door.open",
        "target": "pod-bay",
        "outcome": "denied",
        "time": "2024-05-01T12:00:00+01:00",
        "id": "evt-9",
        "source": "ship",
    }
    path = write(tmp_path, "events.jsonl", json.dumps(row) + "\n")
    assert detect_format(path) == "jsonl"
    [record], _ = split(path)
    event = record.event
    assert (event.actor, event.action, event.target, event.outcome) == (
        "hal",
        "door.open",
        "pod-bay",
        "denied",
    )
    assert event.id == "evt-9"
    assert event.source == "ship"
    assert event.time == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert record.warning is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1714564800, datetime(2024, 5, 1, 12, 0, tzinfo=UTC), id="seconds"),
        pytest.param(
            1714564800.5, datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC), id="float"
        ),
        pytest.param(1714564800000, datetime(2024, 5, 1, 12, 0, tzinfo=UTC), id="ms"),
        pytest.param(
            1714564800000000, datetime(2024, 5, 1, 12, 0, tzinfo=UTC), id="micro"
        ),
        pytest.param(
            1714564800000000000, datetime(2024, 5, 1, 12, 0, tzinfo=UTC), id="nano"
        ),
        pytest.param(
            "1714564800", datetime(2024, 5, 1, 12, 0, tzinfo=UTC), id="digits"
        ),
        pytest.param(
            "2024-05-01T12:00:00Z",
            datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            id="rfc3339",
        ),
    ],
)
def test_jsonl_time_forms(tmp_path: Path, value: Any, expected: datetime) -> None:
    row = {"actor": "a", "action": "b", "timestamp": value}
    path = write(tmp_path, "t.jsonl", json.dumps(row))
    [record], _ = split(path)
    assert record.event.time == expected


def test_jsonl_missing_actor_is_problem(tmp_path: Path) -> None:
    rows = [
        {"who": "x", "action": "a", "ts": 1},
        {"actor": "y", "action": "b", "ts": 1},
    ]
    path = write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows))
    records, [problem] = split(path)
    assert [r.event.actor for r in records] == ["y"]
    assert problem.reason == "missing-field"
    assert problem.line == 1
    assert "actor" in problem.message
    assert "--map actor=" in problem.message


def test_jsonl_missing_mapped_action_is_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", json.dumps({"user": {"name": "x"}, "ts": 1}))
    records, [problem] = split(path, mapping={"actor": "user.name", "action": "kind"})
    assert records == []
    assert problem.reason == "missing-field"
    assert "'kind'" in problem.message
    assert "--map action=" in problem.message


def test_jsonl_object_value_is_invalid_field(tmp_path: Path) -> None:
    row = {"actor": {"id": 3}, "action": "a", "ts": 1}
    path = write(tmp_path, "t.jsonl", json.dumps(row))
    records, [problem] = split(path)
    assert records == []
    assert problem.reason == "invalid-field"
    assert "a JSON object" in problem.message


def test_jsonl_bad_time_is_problem(tmp_path: Path) -> None:
    row = {"actor": "a", "action": "b", "time": "yesterday"}
    path = write(tmp_path, "t.jsonl", json.dumps(row))
    records, [problem] = split(path)
    assert records == []
    assert problem.reason == "invalid-time"
    assert "yesterday" in problem.message


def test_jsonl_without_time_uses_import_time(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", json.dumps({"actor": "a", "action": "b"}))
    before = datetime.now(UTC)
    [record], _ = split(path)
    after = datetime.now(UTC)
    assert before <= record.event.time <= after
    assert record.event.metadata["time_source"] == "import"
    assert record.warning is not None
    assert "--map time=" in record.warning


def test_jsonl_malformed_lines_continue(tmp_path: Path) -> None:
    content = (
        b"\xef\xbb\xbf"
        b'{"actor":"a","action":"x","ts":1}\r\n'
        b"\r\n"
        b"# exported by tool\r\n"
        b"not json at all\r\n"
        b"[1, 2]\r\n"
        b"42\r\n"
        b'{"actor":"b","action":"y",\r\n'
        b'{"actor":"c","action":"z","ts":3}'
    )
    path = write(tmp_path, "t.jsonl", content)
    assert detect_format(path) == "jsonl"
    records, problems = split(path)
    assert [(r.line, r.event.actor) for r in records] == [(1, "a"), (8, "c")]
    assert [(p.line, p.reason) for p in problems] == [
        (3, "comment"),
        (4, "not-json"),
        (1, "not-an-object"),
        (2, "not-an-object"),
        (6, "not-an-object"),
        (7, "truncated"),
    ]


def test_jsonl_large_field_and_order_kept(tmp_path: Path) -> None:
    big = "x" * 200_000
    rows = [
        {"actor": "a", "action": "late", "ts": 2000, "blob": big},
        {"actor": "b", "action": "early", "ts": 1000},
    ]
    path = write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    records, _ = split(path)
    assert [r.event.action for r in records] == ["late", "early"]
    assert records[0].event.metadata["original"]["blob"] == big


def test_record_larger_than_limit_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("journal.importers._common.MAX_DOCUMENT_BYTES", 1000)
    pretty = json.dumps({"actor": "p", "action": "q", "pad": ["y" * 50] * 30}, indent=1)
    content = "\n".join(
        [
            json.dumps({"actor": "a", "action": "b", "pad": "z" * 5000}),
            json.dumps({"actor": "c", "action": "d", "ts": 1}),
            pretty,
            json.dumps({"actor": "e", "action": "f", "ts": 1}),
        ]
    )
    path = write(tmp_path, "t.jsonl", content)
    records, problems = split(path, "jsonl")
    assert [r.event.actor for r in records] == ["c", "e"]
    assert [(p.line, p.reason) for p in problems] == [
        (1, "too-large"),
        (3, "too-large"),
    ]


# --- detection and errors ----------------------------------------------------------------


def test_formats_constant() -> None:
    assert FORMATS == ("k8s", "cloudtrail", "auditd", "syslog", "jsonl")


def test_missing_file_raises_on_call(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        iter_records(tmp_path / "absent.log")
    with pytest.raises(FileNotFoundError):
        iter_records(tmp_path / "absent.log", "syslog")


def test_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        iter_records(tmp_path)


def test_undetectable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", "hello world\nthis is not a log\n")
    with pytest.raises(UnknownFormat) as caught:
        detect_format(path)
    message = str(caught.value)
    assert str(path) in message
    assert "--format" in message
    assert isinstance(caught.value, JournalError)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(UnknownFormat):
        iter_records(path)


def test_empty_file_undetectable(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.log", "\n\n# nothing\n")
    with pytest.raises(UnknownFormat, match="no records"):
        detect_format(path)
    records, problems = split(path, "syslog")
    assert records == []
    assert [(p.line, p.reason) for p in problems] == [(3, "comment")]


def test_detection_looks_at_content_not_extension(tmp_path: Path) -> None:
    auditd_text = (SAMPLES / "auditd/normal.log").read_bytes()
    path = write(tmp_path, "events.json", auditd_text)
    assert detect_format(path) == "auditd"
    packed = write(tmp_path, "plain.txt", gzip.compress(b"Mar  3 09:14:02 h su: x\n"))
    assert detect_format(packed) == "syslog"


def test_detection_of_record_larger_than_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("journal.importers.DETECT_BYTES", 200)
    event = _k8s_event(requestObject={"data": "v" * 1000})
    path = write(tmp_path, "big.log", json.dumps(event) + "\n")
    assert detect_format(path) == "k8s"
    records, problems = split(path)
    assert problems == []
    assert records[0].event.metadata["original"] == event


def test_explicit_format_mismatch_yields_problems(tmp_path: Path) -> None:
    path = SAMPLES / "syslog/auth.log"
    records, problems = split(path, "jsonl")
    assert records == []
    assert len(problems) == 41
    assert {p.reason for p in problems} == {"not-json"}


def test_invalid_format_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="invalid format 'csv'"):
        iter_records(SAMPLES / "syslog/auth.log", "csv")


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        pytest.param(
            {"user": "a.b"}, "invalid mapping field 'user'", id="unknown-field"
        ),
        pytest.param({"actor": ""}, "invalid mapping for actor", id="empty-path"),
    ],
)
def test_invalid_mapping(mapping: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        iter_records(SAMPLES / "k8s/attach_pod.json", mapping=mapping)


def test_mapping_rejected_for_text_formats() -> None:
    with pytest.raises(InvalidArgument, match="only to the JSON formats"):
        iter_records(SAMPLES / "syslog/auth.log", mapping={"actor": "x"})


def test_imported_record_is_frozen() -> None:
    [record], _ = split(SAMPLES / "k8s/attach_pod.json")
    assert record.path == str(SAMPLES / "k8s/attach_pod.json")
    with pytest.raises(AttributeError):
        record.line = 5  # type: ignore[misc]
