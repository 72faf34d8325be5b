"""Import Linux audit daemon logs in the raw format of ``/var/log/audit/audit.log``.

Each line is one audit record: ``type=<TYPE> msg=audit(<epoch>.<ms>:<serial>):
<key=value ...>``, optionally prefixed by ``node=<host>`` and optionally followed by
auditd's "enriched" part after a U+001D separator (``UID="root" SYSCALL=execve``).
The kernel writes several records for one audit event (``SYSCALL``, ``EXECVE``,
``CWD``, ``PATH``, ``PROCTITLE``, ``EOE``), all with the same time and serial.

Grouping: records that share ``(node, epoch, serial)`` form one journal event,
even when other events' records sit between them. Events are emitted in the
order of their first record. An event is complete when its ``EOE`` record
arrives, or once :data:`GROUP_WINDOW_LINES` lines have been read after its first
record. So at most that many lines are held in memory, and a record arriving
later than that starts a second event with the same id.

Each group maps to one :class:`~journal.event.AuditEvent`:

- ``action``: ``auditd.<type>`` for an ``AVC``, ``USER_AVC``, ``SELINUX_ERR`` or
  ``USER_SELINUX_ERR`` record (``auditd.avc``). Otherwise, when the group has a
  ``SYSCALL`` record, ``auditd.syscall.<name>``. The name comes from the
  enriched ``SYSCALL=`` field, else from a table of common x86_64, aarch64 and
  i386 system calls, else it is the number. Otherwise the action is
  ``auditd.<type>`` of the first record that is not an auxiliary record such as
  ``PATH`` or ``CWD``, lower-cased (``auditd.user_login``, ``auditd.add_user``).
  A group of only auxiliary records takes the type of its ``EXECVE`` record, if
  any, else of its first record (``auditd.execve``, ``auditd.sockaddr``).
- ``actor``: ``acct=``, except for account-management records such as
  ``ADD_USER``, where ``acct`` names the account changed. Next comes the login
  uid ``auid`` as its enriched name or ``auid:<n>``, then ``uid`` in the same
  way, then ``unknown``. An ``auid`` of 4294967295 (or -1) means unset and is
  skipped. No name is looked up on the importing machine.
- ``target``: for system calls, the ``name`` of ``PATH`` item 0, else ``exe``.
  For AVC records, ``name`` or ``path``. For account-management records, the
  enriched ``ID``, ``acct``, ``grp`` or ``id:<n>``. For an ``EXECVE`` record
  without its ``SYSCALL``, the first argument. Otherwise ``cmd``, ``sw``,
  ``unit`` or ``exe``, whichever comes first.
- ``outcome``: ``denied`` for an SELinux or AppArmor denial, ``failure`` for
  other ``SELINUX_ERR`` records; otherwise ``success`` or ``failure`` from
  ``res=`` (``success``/``yes``/``1`` against ``failed``/``no``/``0``) or
  ``success=`` of the main record; ``success`` when neither is present.
- ``time``: the record's epoch in UTC.
- ``id``: ``<epoch>.<ms>:<serial>`` as in the log, prefixed by ``<node>:`` when the
  records carry a node name.
- ``source``: ``addr=``, else ``hostname=``, when not ``?``.
- ``metadata``: ``format`` (``auditd``); ``original``, the group's lines joined
  by ``\\n`` without line terminators; ``types`` (record types in order);
  ``serial``; and when present ``node``, ``syscall``, ``arch``, ``exit``,
  ``pid``, ``ppid``, ``uid``, ``auid``, ``euid``, ``ses``, ``tty``, ``terminal``,
  ``comm``, ``exe``, ``key``, ``op``, ``acct``, ``hostname``, ``addr``, ``cwd``,
  ``argv`` (``EXECVE`` arguments), ``proctitle``, ``paths`` (``PATH`` names),
  ``cmd`` and ``enriched`` (the fields after U+001D).

Hex-encoded values (auditd writes strings with spaces or control characters as
upper-case hex, such as ``exe=2F7573...``) are decoded in the fields that carry
untrusted strings, when the result is valid UTF-8 without control characters.
The nested ``msg='...'`` of user-space records is parsed as more fields.

A line without a ``msg=audit(<epoch>.<ms>:<serial>)`` stamp yields an
``ImportProblem`` with reason ``no-timestamp``, and a line starting with ``#``
one with reason ``comment``. Blank lines are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from journal.importers._common import (
    ImportProblem,
    Item,
    decode_text,
    finish_event,
    iter_lines,
)

__all__ = [
    "FORMAT",
    "GROUP_WINDOW_LINES",
    "RECORD_PATTERN",
    "iter_events",
    "parse_fields",
]

FORMAT = "auditd"

#: Lines read after an event's first record before the event is emitted without
#: waiting for more of its records. This bounds memory to that many lines.
GROUP_WINDOW_LINES = 1000

#: One raw audit record line.
RECORD_PATTERN = re.compile(
    r"^(?:node=(?P<node>\S+) )?type=(?P<type>\S+) "
    r"msg=audit\((?P<seconds>\d+)\.(?P<fraction>\d+):(?P<serial>\d+)\):?"
    r"(?P<body>.*)$",
    re.DOTALL,
)

_ENRICHED_SEPARATOR = "\x1d"
_FIELD = re.compile(
    r"""([A-Za-z_][\w-]*(?:\[\d+\])?)=("[^"]*"|'(?:"[^"]*"|[^'"])*'|\{[^}]*\}|\S*)"""
)
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")
_EXECVE_ARG = re.compile(r"^a(\d+)(?:\[(\d+)\])?$")
_UNSET_IDS = frozenset({"4294967295", "-1", "unset"})
_EMPTY_VALUES = frozenset({"", "?", "(none)", "(null)", "(unknown)"})

# Fields that hold untrusted strings, which auditd hex-encodes when they contain
# a space, a double quote or a control character.
_HEX_FIELDS = frozenset(
    {
        "acct",
        "cmd",
        "comm",
        "cwd",
        "data",
        "exe",
        "file",
        "grp",
        "key",
        "name",
        "new",
        "ocomm",
        "old",
        "path",
        "proctitle",
        "root_dir",
        "sw",
        "unit",
    }
)

_AVC_TYPES = frozenset({"AVC", "USER_AVC", "SELINUX_ERR", "USER_SELINUX_ERR"})
# An SELinux denial ("avc:  denied  { read }") or an AppArmor one (apparmor="DENIED").
_DENIAL = re.compile(r'avc:\s+denied|apparmor="?DENIED', re.IGNORECASE)

# Records that only add detail to the record that opened the event.
_AUXILIARY_TYPES = frozenset(
    {
        "BPRM_FCAPS",
        "CAPSET",
        "CWD",
        "EOE",
        "EXECVE",
        "FD_PAIR",
        "IPC",
        "KERN_MODULE",
        "MMAP",
        "MQ_GETSETATTR",
        "MQ_NOTIFY",
        "MQ_OPEN",
        "MQ_SENDRECV",
        "OBJ_PID",
        "OPENAT2",
        "PATH",
        "PROCTITLE",
        "SOCKADDR",
        "SOCKETCALL",
    }
)

# Records about changing an account, where acct= and id= name the account.
_ACCOUNT_TYPES = frozenset(
    {
        "ACCT_LOCK",
        "ACCT_UNLOCK",
        "ADD_GROUP",
        "ADD_USER",
        "CHGRP_ID",
        "CHUSER_ID",
        "DEL_GROUP",
        "DEL_USER",
        "GRP_CHAUTHTOK",
        "GRP_MGMT",
        "ROLE_ASSIGN",
        "ROLE_MODIFY",
        "ROLE_REMOVE",
        "USER_CHAUTHTOK",
        "USER_MGMT",
    }
)

_ARCH_NAMES = {"c000003e": "x86_64", "c00000b7": "aarch64", "40000003": "i386"}

# Common system call numbers, from the kernel's syscall_64.tbl (x86_64),
# include/uapi/asm-generic/unistd.h (aarch64) and syscall_32.tbl (i386).
# fmt: off
_SYSCALLS: dict[str, dict[int, str]] = {
    "x86_64": {
        0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat",
        6: "lstat", 9: "mmap", 10: "mprotect", 16: "ioctl", 21: "access",
        22: "pipe", 32: "dup", 33: "dup2", 39: "getpid", 41: "socket",
        42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
        47: "recvmsg", 49: "bind", 50: "listen", 54: "setsockopt", 56: "clone",
        57: "fork", 58: "vfork", 59: "execve", 60: "exit", 61: "wait4",
        62: "kill", 76: "truncate", 77: "ftruncate", 80: "chdir", 82: "rename",
        83: "mkdir", 84: "rmdir", 85: "creat", 86: "link", 87: "unlink",
        88: "symlink", 89: "readlink", 90: "chmod", 91: "fchmod", 92: "chown",
        93: "fchown", 94: "lchown", 101: "ptrace", 105: "setuid", 106: "setgid",
        113: "setreuid", 114: "setregid", 116: "setgroups", 117: "setresuid",
        119: "setresgid", 126: "capset", 133: "mknod", 157: "prctl",
        161: "chroot", 165: "mount", 166: "umount2", 169: "reboot",
        170: "sethostname", 175: "init_module", 176: "delete_module",
        188: "setxattr", 189: "lsetxattr", 190: "fsetxattr", 197: "removexattr",
        200: "tkill", 231: "exit_group", 234: "tgkill", 257: "openat",
        258: "mkdirat", 259: "mknodat", 260: "fchownat", 263: "unlinkat",
        264: "renameat", 265: "linkat", 266: "symlinkat", 268: "fchmodat",
        269: "faccessat", 272: "unshare", 288: "accept4", 292: "dup3",
        293: "pipe2", 308: "setns", 313: "finit_module", 316: "renameat2",
        317: "seccomp", 319: "memfd_create", 321: "bpf", 322: "execveat",
        435: "clone3", 437: "openat2",
    },
    "aarch64": {
        23: "dup", 24: "dup3", 29: "ioctl", 33: "mknodat", 34: "mkdirat",
        35: "unlinkat", 36: "symlinkat", 37: "linkat", 38: "renameat",
        39: "umount2", 40: "mount", 45: "truncate", 46: "ftruncate",
        48: "faccessat", 49: "chdir", 51: "chroot", 52: "fchmod", 53: "fchmodat",
        54: "fchownat", 55: "fchown", 56: "openat", 57: "close", 59: "pipe2",
        63: "read", 64: "write", 93: "exit", 94: "exit_group", 105: "init_module",
        106: "delete_module", 117: "ptrace", 129: "kill", 130: "tkill",
        131: "tgkill", 142: "reboot", 144: "setgid", 146: "setuid",
        147: "setresuid", 149: "setresgid", 161: "sethostname", 167: "prctl",
        198: "socket", 200: "bind", 201: "listen", 202: "accept", 203: "connect",
        206: "sendto", 207: "recvfrom", 211: "sendmsg", 212: "recvmsg",
        220: "clone", 221: "execve", 222: "mmap", 226: "mprotect",
        242: "accept4", 273: "finit_module", 276: "renameat2", 277: "seccomp",
        279: "memfd_create", 280: "bpf", 281: "execveat", 435: "clone3",
        437: "openat2",
    },
    "i386": {
        1: "exit", 2: "fork", 3: "read", 4: "write", 5: "open", 6: "close",
        11: "execve", 37: "kill", 102: "socketcall", 120: "clone", 190: "vfork",
        295: "openat", 358: "execveat",
    },
}
# fmt: on

# Metadata keys copied from the merged record fields, converted to int when decimal.
_METADATA_FIELDS = (
    "exit",
    "pid",
    "ppid",
    "uid",
    "auid",
    "euid",
    "ses",
    "tty",
    "terminal",
    "comm",
    "exe",
    "key",
    "op",
    "acct",
    "hostname",
    "addr",
    "cmd",
)
_INTEGER = re.compile(r"^-?\d{1,19}$")


class _Record:
    """One parsed audit record line."""

    __slots__ = ("body", "enriched", "fields", "type")

    def __init__(
        self, type_: str, body: str, fields: dict[str, str], enriched: dict[str, str]
    ) -> None:
        self.type = type_
        self.body = body
        self.fields = fields
        self.enriched = enriched


class _Group:
    """The records of one audit event, collected until the event is complete."""

    __slots__ = ("complete", "first_line", "lines", "match", "records", "warning")

    def __init__(self, first_line: int, match: re.Match[str]) -> None:
        self.first_line = first_line
        self.match = match
        self.lines: list[str] = []
        self.records: list[_Record] = []
        self.complete = False
        self.warning: str | None = None


def iter_events(path: str, stream: IO[bytes]) -> Iterator[Item]:
    """Yield one record per audit event in *stream*, and a problem per bad line."""
    open_groups: dict[tuple[str | None, str, str, str], _Group] = {}
    number = 0
    for item in iter_lines(stream, path):
        if isinstance(item, ImportProblem):
            yield item
            continue
        number, raw = item
        text, warning = decode_text(raw)
        stripped = text.strip()
        if not stripped:
            continue
        match = RECORD_PATTERN.match(text)
        if match is None:
            yield _line_problem(path, number, stripped)
        else:
            key = (match["node"], match["seconds"], match["fraction"], match["serial"])
            group = open_groups.get(key)
            if group is None:
                group = _Group(number, match)
                open_groups[key] = group
            group.lines.append(text)
            group.records.append(_parse_record(match))
            group.warning = group.warning or warning
            if match["type"] == "EOE":
                group.complete = True
        while open_groups:
            oldest_key = next(iter(open_groups))
            oldest = open_groups[oldest_key]
            if not oldest.complete and number - oldest.first_line < GROUP_WINDOW_LINES:
                break
            del open_groups[oldest_key]
            yield _build_event(path, oldest)
    for group in open_groups.values():
        yield _build_event(path, group)


def _line_problem(path: str, number: int, stripped: str) -> ImportProblem:
    if stripped.startswith("#"):
        return ImportProblem(
            path=path,
            line=number,
            reason="comment",
            message=f"line {number} is a comment, not an audit record",
        )
    return ImportProblem(
        path=path,
        line=number,
        reason="no-timestamp",
        message=(
            f"line {number} has no msg=audit(<epoch>.<ms>:<serial>) stamp: "
            f"{stripped[:60]!r}"
        ),
    )


def _parse_record(match: re.Match[str]) -> _Record:
    body, _, enriched_text = match["body"].partition(_ENRICHED_SEPARATOR)
    record_type = match["type"]
    fields = parse_fields(body, execve=record_type == "EXECVE")
    enriched = {key: _unquote(value) for key, value in _FIELD.findall(enriched_text)}
    return _Record(record_type, body, fields, enriched)


def parse_fields(body: str, *, execve: bool = False) -> dict[str, str]:
    """Parse the ``key=value`` pairs of an audit record body into a dict.

    Quotes are removed, hex-encoded strings are decoded where auditd uses hex, and
    a nested ``msg='...'`` adds its own pairs. When a key repeats, the last value
    wins, so ``old auid=... new auid=...`` yields the new one.
    """
    fields: dict[str, str] = {}
    for key, raw_value in _FIELD.findall(body):
        if key == "msg" and raw_value.startswith("'"):
            fields.update(parse_fields(raw_value[1:-1]))
            continue
        if raw_value[:1] in ('"', "'"):
            fields[key] = raw_value[1:-1]
            continue
        value = raw_value.rstrip(",")
        if value.endswith(")") and "(" not in value:
            value = value[:-1]
        if key in _HEX_FIELDS or (execve and _EXECVE_ARG.match(key)):
            value = _decode_hex(value, allow_nul=key == "proctitle" or execve)
        fields[key] = value
    return fields


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _decode_hex(value: str, *, allow_nul: bool) -> str:
    if not _HEX.match(value):
        return value
    try:
        text = bytes.fromhex(value).decode("utf-8")
    except UnicodeDecodeError:
        return value
    if allow_nul:
        text = text.rstrip("\x00").replace("\x00", " ")
    if any(ord(char) < 0x20 and char != "\t" for char in text):
        return value
    return text


def _usable(value: str | None) -> str | None:
    if value is None or value in _EMPTY_VALUES:
        return None
    return value


def _merge(
    records: list[_Record], primary: _Record
) -> tuple[dict[str, str], dict[str, str]]:
    fields = dict(primary.fields)
    enriched = dict(primary.enriched)
    for record in records:
        if record is primary:
            continue
        for key, value in record.fields.items():
            fields.setdefault(key, value)
        for key, value in record.enriched.items():
            enriched.setdefault(key, value)
    return fields, enriched


def _find_primary(records: list[_Record]) -> _Record:
    for preferred_types in (_AVC_TYPES, frozenset({"SYSCALL"})):
        for record in records:
            if record.type in preferred_types:
                return record
    for record in records:
        if record.type not in _AUXILIARY_TYPES:
            return record
    # Only auxiliary records: the kernel's own record was lost or filtered out.
    for record in records:
        if record.type == "EXECVE":
            return record
    return records[0]


def _syscall_name(fields: Mapping[str, str], enriched: Mapping[str, str]) -> str:
    name = _usable(enriched.get("SYSCALL"))
    if name:
        return name
    number = fields.get("syscall", "")
    arch = _ARCH_NAMES.get(fields.get("arch", ""))
    if arch and number.isdigit():
        return _SYSCALLS[arch].get(int(number), number)
    return number or "unknown"


def _action(primary: _Record, syscall: str | None) -> str:
    if primary.type in _AVC_TYPES:
        return f"auditd.{primary.type.lower()}"
    if syscall is not None:
        return f"auditd.syscall.{syscall}"
    name = re.sub(r"[^a-z0-9_]+", "_", primary.type.lower()).strip("_")
    return f"auditd.{name or 'unknown'}"


def _actor(
    primary: _Record, fields: Mapping[str, str], enriched: Mapping[str, str]
) -> str:
    if primary.type not in _ACCOUNT_TYPES:
        account = _usable(fields.get("acct"))
        if account:
            return account
    for key in ("auid", "uid"):
        value = _usable(fields.get(key))
        if value and value not in _UNSET_IDS:
            name = _usable(enriched.get(key.upper()))
            if name and name not in _UNSET_IDS:
                return name
            return f"{key}:{value}"
    return "unknown"


def _target(
    records: list[_Record],
    primary: _Record,
    fields: Mapping[str, str],
    enriched: Mapping[str, str],
) -> str | None:
    if primary.type in _AVC_TYPES:
        return _usable(primary.fields.get("name")) or _usable(
            primary.fields.get("path")
        )
    if primary.type == "SYSCALL":
        for record in records:
            if record.type == "PATH" and record.fields.get("item") == "0":
                name = _usable(record.fields.get("name"))
                if name:
                    return name
        return _usable(fields.get("exe"))
    if primary.type in _ACCOUNT_TYPES:
        for candidate in (enriched.get("ID"), fields.get("acct"), fields.get("grp")):
            if _usable(candidate):
                return candidate
        account_id = _usable(fields.get("id"))
        return f"id:{account_id}" if account_id else None
    if primary.type == "EXECVE":
        arguments = _execve_arguments([primary])
        return arguments[0] if arguments else None
    for key in ("cmd", "sw", "unit", "exe"):
        value = _usable(fields.get(key))
        if value:
            return value
    return None


def _outcome(primary: _Record, fields: Mapping[str, str]) -> str:
    if primary.type in _AVC_TYPES:
        if _DENIAL.search(primary.body):
            return "denied"
        return "failure" if primary.type.endswith("SELINUX_ERR") else "success"
    result = fields.get("res") or fields.get("success")
    if result is None:
        return "success"
    if result.lower() in ("failed", "failure", "no", "0"):
        return "failure"
    return "success"


def _event_time(match: re.Match[str]) -> datetime:
    fraction = match["fraction"]
    microseconds = int(fraction[:6].ljust(6, "0"))
    seconds = datetime.fromtimestamp(int(match["seconds"]), tz=timezone.utc)
    return seconds + timedelta(microseconds=microseconds)


def _execve_arguments(records: list[_Record]) -> list[str] | None:
    for record in records:
        if record.type != "EXECVE":
            continue
        pieces: dict[int, dict[int, str]] = {}
        for key, value in record.fields.items():
            match = _EXECVE_ARG.match(key)
            if match:
                index = int(match[1])
                part = int(match[2]) if match[2] is not None else 0
                pieces.setdefault(index, {})[part] = value
        return [
            "".join(parts[i] for i in sorted(parts))
            for _, parts in sorted(pieces.items())
        ]
    return None


def _build_metadata(
    group: _Group,
    records: list[_Record],
    fields: Mapping[str, str],
    enriched: Mapping[str, str],
    syscall: str | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "original": "\n".join(group.lines),
        "types": [record.type for record in records],
        "serial": int(group.match["serial"]),
    }
    if group.match["node"]:
        metadata["node"] = group.match["node"]
    if syscall is not None:
        metadata["syscall"] = syscall
        arch = fields.get("arch", "")
        metadata["arch"] = enriched.get("ARCH") or _ARCH_NAMES.get(arch, arch)
    for key in _METADATA_FIELDS:
        value = _usable(fields.get(key))
        if value is None:
            continue
        metadata[key] = int(value) if _INTEGER.match(value) else value
    for record in records:
        if record.type == "CWD" and _usable(record.fields.get("cwd")):
            metadata["cwd"] = record.fields["cwd"]
        elif record.type == "PROCTITLE" and "proctitle" in record.fields:
            metadata["proctitle"] = record.fields["proctitle"]
    arguments = _execve_arguments(records)
    if arguments is not None:
        metadata["argv"] = arguments
    paths = [
        record.fields["name"]
        for record in records
        if record.type == "PATH" and _usable(record.fields.get("name"))
    ]
    if paths:
        metadata["paths"] = paths
    if enriched:
        metadata["enriched"] = dict(enriched)
    return metadata


def _build_event(path: str, group: _Group) -> Item:
    records = group.records
    primary = _find_primary(records)
    fields, enriched = _merge(records, primary)
    syscall = None
    if any(record.type == "SYSCALL" for record in records):
        syscall = _syscall_name(fields, enriched)
    match = group.match
    event_id = f"{match['seconds']}.{match['fraction']}:{match['serial']}"
    if match["node"]:
        event_id = f"{match['node']}:{event_id}"
    event_fields: dict[str, Any] = {
        "action": _action(primary, syscall),
        "actor": _actor(primary, fields, enriched),
        "target": _target(records, primary, fields, enriched),
        "outcome": _outcome(primary, fields),
        "time": _event_time(match),
        "id": event_id,
        "source": _usable(fields.get("addr")) or _usable(fields.get("hostname")),
        "metadata": _build_metadata(group, records, fields, enriched, syscall),
    }
    line = group.first_line
    return finish_event(path, line, f"line {line}", event_fields, group.warning)
