"""Import AWS CloudTrail records.

Accepted inputs: a CloudTrail log file ``{"Records": [...]}`` (compact or
pretty-printed, plain or gzip-compressed), JSON lines with one record per line,
single records pretty-printed over several lines, and a top-level JSON array of
records. Records from a ``Records`` array are numbered by their index in the
array (1-based) in :attr:`ImportedRecord.line <journal.importers.ImportedRecord>`,
because the whole document usually sits on one line. A document may be at most
512 MiB after decompression.

Each record maps to one :class:`~journal.event.AuditEvent`:

- ``actor``: ``userIdentity.arn``, else ``userIdentity.userName``, else
  ``userIdentity.principalId``, else ``userIdentity.invokedBy``, else
  ``userIdentity.type``, else ``unknown``.
- ``action``: ``eventSource`` without its ``.amazonaws.com`` suffix, a colon, and
  ``eventName``, as in ``s3:GetObject`` or ``sts:AssumeRole``. This looks like an
  IAM action name but is not always one, because a few services log an
  ``eventSource`` that differs from their IAM prefix. Without ``eventSource`` the
  prefix is ``aws``.
- ``target``: the ``ARN`` of the first entry of ``resources``. Without one, it
  is the first ``requestParameters`` value among ``bucketName`` (joined with
  ``key`` as ``bucket/key`` when present), ``roleArn``, ``policyArn``, ``userName``,
  ``roleName``, ``groupName``, ``secretId``, ``functionName``, ``keyId``,
  ``snapshotId``, ``volumeId``, ``instanceId``, ``tableName``, ``queueUrl``,
  ``topicArn``, ``stackName``, ``clusterName``, ``repositoryName``,
  ``trailName`` and ``name``. Otherwise the target is none.
- ``outcome``: ``denied`` when ``errorCode`` contains ``AccessDenied``,
  ``Unauthorized`` or ``Forbidden`` (any case); ``failure`` for any other
  ``errorCode`` and for a ``ConsoleLogin`` whose response is ``Failure``;
  ``success`` otherwise.
- ``time``: ``eventTime``. Records exported through log pipelines sometimes lack
  it. Then ``@timestamp`` or ``timestamp`` is used, ``metadata["time_source"]``
  names that field, and the record carries a warning.
- ``id``: ``eventID``, else a new UUIDv7.
- ``source``: ``sourceIPAddress``, else ``network.client.ip`` (Datadog's
  normalised records).
- ``metadata``: ``format`` (``cloudtrail``), ``original`` (the decoded JSON
  object), and when present ``eventSource``, ``eventName``, ``eventType``,
  ``awsRegion``, ``errorCode``, ``errorMessage``, ``recipientAccountId``,
  ``accountId`` and ``identityType`` (from ``userIdentity``), ``userAgent``,
  ``readOnly`` and ``requestID``.

A ``mapping`` overrides these fields with values from the record at dotted paths,
as described in :mod:`journal.importers.jsonl`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import IO, Any

from journal.importers._common import (
    ImportProblem,
    Item,
    apply_mapping,
    finish_event,
    invalid_time,
    iter_json_objects,
    parse_time,
)

__all__ = [
    "FORMAT",
    "container_key",
    "is_cloudtrail_record",
    "iter_events",
    "map_record",
]

FORMAT = "cloudtrail"

_SERVICE_SUFFIX = ".amazonaws.com"
_FALLBACK_TIME_FIELDS = ("@timestamp", "timestamp")
_ACTOR_FIELDS = ("arn", "userName", "principalId", "invokedBy", "type")
_TARGET_PARAMETERS = (
    "bucketName",
    "roleArn",
    "policyArn",
    "userName",
    "roleName",
    "groupName",
    "secretId",
    "functionName",
    "keyId",
    "snapshotId",
    "volumeId",
    "instanceId",
    "tableName",
    "queueUrl",
    "topicArn",
    "stackName",
    "clusterName",
    "repositoryName",
    "trailName",
    "name",
)
_DENIED_MARKERS = ("accessdenied", "unauthorized", "forbidden")


def is_cloudtrail_record(record: Mapping[str, Any]) -> bool:
    """Return whether *record* is a CloudTrail log document or a single record."""
    if isinstance(record.get("Records"), list):
        return True
    return "eventName" in record and (
        "eventSource" in record or "eventVersion" in record
    )


def container_key(record: Mapping[str, Any]) -> str | None:
    """Return ``"Records"`` for a CloudTrail log document."""
    return "Records" if isinstance(record.get("Records"), list) else None


def iter_events(
    path: str, stream: IO[bytes], *, mapping: Mapping[str, str] | None = None
) -> Iterator[Item]:
    """Yield one record or problem per CloudTrail record in *stream*."""
    for item in iter_json_objects(path, stream, container_key):
        if isinstance(item, ImportProblem):
            yield item
        else:
            line, record, position = item
            yield map_record(path, line, position, record, mapping)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _actor(record: Mapping[str, Any]) -> str:
    identity = record.get("userIdentity")
    if isinstance(identity, dict):
        for key in _ACTOR_FIELDS:
            value = _text(identity.get(key))
            if value:
                return value
    return "unknown"


def _target(record: Mapping[str, Any]) -> str | None:
    resources = record.get("resources")
    if isinstance(resources, list) and resources and isinstance(resources[0], dict):
        arn = _text(resources[0].get("ARN")) or _text(resources[0].get("arn"))
        if arn:
            return arn
    parameters = record.get("requestParameters")
    if not isinstance(parameters, dict):
        return None
    for key in _TARGET_PARAMETERS:
        value = _text(parameters.get(key))
        if value is None:
            continue
        object_key = _text(parameters.get("key"))
        if key == "bucketName" and object_key:
            return f"{value}/{object_key}"
        return value
    return None


def _outcome(record: Mapping[str, Any]) -> str:
    error_code = _text(record.get("errorCode"))
    if error_code:
        lowered = error_code.lower()
        if any(marker in lowered for marker in _DENIED_MARKERS):
            return "denied"
        return "failure"
    response = record.get("responseElements")
    if isinstance(response, dict) and response.get("ConsoleLogin") == "Failure":
        return "failure"
    return "success"


def _source(record: Mapping[str, Any]) -> str | None:
    address = _text(record.get("sourceIPAddress"))
    if address:
        return address
    network = record.get("network")
    if isinstance(network, dict) and isinstance(network.get("client"), dict):
        return _text(network["client"].get("ip"))
    return None


def map_record(
    path: str,
    line: int,
    position: str,
    record: dict[str, Any],
    mapping: Mapping[str, str] | None = None,
) -> Item:
    """Map one decoded CloudTrail record to a record, or to a problem."""
    fields: dict[str, Any] = {}
    metadata: dict[str, Any] = {"format": FORMAT, "original": record}
    warning = None
    for key in ("eventTime", *_FALLBACK_TIME_FIELDS):
        raw_time = record.get(key)
        if raw_time is None:
            continue
        time = parse_time(raw_time)
        if time is None:
            return invalid_time(path, line, position, field=key, value=raw_time)
        fields["time"] = time
        if key != "eventTime":
            metadata["time_source"] = key
            warning = (
                f"the record at {position} has no eventTime; used {key} {raw_time}"
            )
        break

    event_name = _text(record.get("eventName"))
    event_source = _text(record.get("eventSource"))
    if event_name is not None:
        service = "aws"
        if event_source:
            service = event_source.removesuffix(_SERVICE_SUFFIX)
        fields["action"] = f"{service}:{event_name}"
    fields["actor"] = _actor(record)
    fields["target"] = _target(record)
    fields["outcome"] = _outcome(record)
    fields["source"] = _source(record)
    event_id = _text(record.get("eventID"))
    if event_id is not None:
        fields["id"] = event_id

    identity = record.get("userIdentity")
    if not isinstance(identity, dict):
        identity = {}
    extracted = {
        "eventSource": event_source,
        "eventName": event_name,
        "eventType": record.get("eventType"),
        "awsRegion": record.get("awsRegion"),
        "errorCode": record.get("errorCode"),
        "errorMessage": record.get("errorMessage"),
        "recipientAccountId": record.get("recipientAccountId"),
        "accountId": identity.get("accountId"),
        "identityType": identity.get("type"),
        "userAgent": record.get("userAgent"),
        "readOnly": record.get("readOnly"),
        "requestID": record.get("requestID"),
    }
    metadata.update(
        {key: value for key, value in extracted.items() if value not in (None, "")}
    )
    fields["metadata"] = metadata

    if mapping:
        problem = apply_mapping(
            fields, record, mapping, path=path, line=line, position=position
        )
        if problem is not None:
            return problem
    if "action" not in fields:
        return ImportProblem(
            path=path,
            line=line,
            reason="missing-field",
            message=(
                f"the CloudTrail record at {position} has no eventName; pass "
                "--map action=<dotted.path> to name the field that holds the action"
            ),
        )
    if "time" not in fields:
        return ImportProblem(
            path=path,
            line=line,
            reason="no-timestamp",
            message=(
                f"the CloudTrail record at {position} has none of eventTime, "
                "@timestamp or timestamp; pass --map time=<dotted.path>"
            ),
        )
    return finish_event(path, line, position, fields, warning)
