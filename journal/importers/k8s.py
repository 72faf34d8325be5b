"""Import Kubernetes API server audit events (``audit.k8s.io`` v1 and v1beta1).

The input is JSON lines with one ``Event`` per line, as the API server's log
backend writes them. Events pretty-printed over several lines, a top-level JSON
array of events, and an ``EventList`` object whose ``items`` are events are
accepted too. Events without ``apiVersion`` are accepted when ``kind`` is
``Event``.

Each event maps to one :class:`~journal.event.AuditEvent`:

- ``actor``: ``user.username``, else ``impersonatedUser.username``, else ``unknown``.
- ``action``: ``k8s.`` followed by ``verb``, for example ``k8s.create``.
- ``target``: the REST path of ``objectRef`` without the API group and version:
  ``namespaces/<namespace>/<resource>/<name>/<subresource>``, leaving out the
  parts that are absent (``clusterroles/admin``, ``namespaces/default/pods``).
  Without ``objectRef`` the target is ``requestURI``.
- ``outcome``: from ``responseStatus.code``. Below 400 is ``success``, 401 and 403
  are ``denied`` and any other code is ``failure``. Without a code, the outcome is
  ``denied`` when the ``authorization.k8s.io/decision`` annotation is ``forbid``,
  and ``unknown`` otherwise (for example at stage ``RequestReceived``).
- ``time``: ``requestReceivedTimestamp``, else ``stageTimestamp``, else
  ``timestamp`` (v1beta1), else ``metadata.creationTimestamp``. When it is not
  ``requestReceivedTimestamp``, ``metadata["time_source"]`` names the field used.
- ``id``: ``auditID``, else a new UUIDv7. An ``auditID`` can repeat: each stage of
  one request carries the same ``auditID``, and edited copies of a capture may too.
- ``source``: ``sourceIPs[0]``.
- ``metadata``: ``format`` (``k8s``), ``original`` (the decoded JSON object), and
  when present ``verb``, ``stage``, ``level``, ``requestURI``, ``userAgent``,
  ``responseCode``, ``apiGroup``, ``apiVersion``, ``resource``, ``subresource``,
  ``namespace``, ``name``, ``decision``, ``impersonatedUser`` and ``userGroups``.

A ``mapping`` overrides these fields with values from the event at dotted paths,
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

__all__ = ["FORMAT", "container_key", "is_k8s_record", "iter_events", "map_event"]

FORMAT = "k8s"

_AUDIT_API_PREFIX = "audit.k8s.io/"

# Time fields in order of preference. The first is when the API server received
# the request.
_TIME_FIELDS = (
    ("requestReceivedTimestamp",),
    ("stageTimestamp",),
    ("timestamp",),
    ("metadata", "creationTimestamp"),
)


def is_k8s_record(record: Mapping[str, Any]) -> bool:
    """Return whether *record* is a Kubernetes audit ``Event`` or ``EventList``."""
    api_version = record.get("apiVersion")
    if api_version is not None and not (
        isinstance(api_version, str) and api_version.startswith(_AUDIT_API_PREFIX)
    ):
        return False
    kind = record.get("kind")
    if kind == "EventList":
        return isinstance(record.get("items"), list)
    if kind == "Event":
        return "auditID" in record or "verb" in record
    return False


def container_key(record: Mapping[str, Any]) -> str | None:
    """Return ``"items"`` for an ``EventList``, whose items are the records."""
    if record.get("kind") == "EventList" and "items" in record:
        return "items"
    return None


def iter_events(
    path: str, stream: IO[bytes], *, mapping: Mapping[str, str] | None = None
) -> Iterator[Item]:
    """Yield one record or problem per audit event in *stream*."""
    for item in iter_json_objects(path, stream, container_key):
        if isinstance(item, ImportProblem):
            yield item
        else:
            line, record, position = item
            yield map_event(path, line, position, record, mapping)


def _get(record: Mapping[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _target(record: Mapping[str, Any]) -> str | None:
    ref = record.get("objectRef")
    if isinstance(ref, dict):
        parts: list[str] = []
        namespace = _text(ref.get("namespace"))
        resource = _text(ref.get("resource"))
        if namespace and resource != "namespaces":
            parts += ["namespaces", namespace]
        for key in ("resource", "name", "subresource"):
            value = _text(ref.get(key))
            if value:
                parts.append(value)
        if parts:
            return "/".join(parts)
    return _text(record.get("requestURI"))


def _outcome(record: Mapping[str, Any]) -> str:
    code = _get(record, "responseStatus", "code")
    if isinstance(code, int) and not isinstance(code, bool):
        if code < 400:
            return "success"
        if code in (401, 403):
            return "denied"
        return "failure"
    if _get(record, "annotations", "authorization.k8s.io/decision") == "forbid":
        return "denied"
    return "unknown"


def map_event(
    path: str,
    line: int,
    position: str,
    record: dict[str, Any],
    mapping: Mapping[str, str] | None = None,
) -> Item:
    """Map one decoded audit event to a record, or to a problem."""
    fields: dict[str, Any] = {}
    time_source = None
    for keys in _TIME_FIELDS:
        raw_time = _get(record, *keys)
        if raw_time is None:
            continue
        time = parse_time(raw_time)
        if time is None:
            return invalid_time(
                path, line, position, field=".".join(keys), value=raw_time
            )
        fields["time"] = time
        time_source = ".".join(keys)
        break

    verb = _text(record.get("verb"))
    if verb is not None:
        fields["action"] = f"k8s.{verb}"
    user = _text(_get(record, "user", "username"))
    impersonated = _text(_get(record, "impersonatedUser", "username"))
    fields["actor"] = user or impersonated or "unknown"
    fields["target"] = _target(record)
    fields["outcome"] = _outcome(record)
    source_ips = record.get("sourceIPs")
    if isinstance(source_ips, list) and source_ips:
        fields["source"] = _text(source_ips[0])
    audit_id = _text(record.get("auditID"))
    if audit_id is not None:
        fields["id"] = audit_id

    metadata: dict[str, Any] = {"format": FORMAT, "original": record}
    if time_source is not None and time_source != "requestReceivedTimestamp":
        metadata["time_source"] = time_source
    extracted = {
        "verb": verb,
        "stage": record.get("stage"),
        "level": record.get("level"),
        "requestURI": record.get("requestURI"),
        "userAgent": record.get("userAgent"),
        "responseCode": _get(record, "responseStatus", "code"),
        "apiGroup": _get(record, "objectRef", "apiGroup"),
        "apiVersion": _get(record, "objectRef", "apiVersion"),
        "resource": _get(record, "objectRef", "resource"),
        "subresource": _get(record, "objectRef", "subresource"),
        "namespace": _get(record, "objectRef", "namespace"),
        "name": _get(record, "objectRef", "name"),
        "decision": _get(record, "annotations", "authorization.k8s.io/decision"),
        "impersonatedUser": impersonated,
        "userGroups": _get(record, "user", "groups"),
    }
    metadata.update({key: value for key, value in extracted.items() if value})
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
                f"the Kubernetes audit event at {position} has no verb; pass "
                "--map action=<dotted.path> to name the field that holds the action"
            ),
        )
    if "time" not in fields:
        return ImportProblem(
            path=path,
            line=line,
            reason="no-timestamp",
            message=(
                f"the Kubernetes audit event at {position} has none of "
                "requestReceivedTimestamp, stageTimestamp, timestamp or "
                "metadata.creationTimestamp"
            ),
        )
    return finish_event(path, line, position, fields)
