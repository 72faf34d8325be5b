"""Import syslog text files such as ``/var/log/auth.log``, ``/var/log/secure`` and
``/var/log/messages``.

Every line that starts with a syslog timestamp becomes one event. Three headers
are recognised, each optionally preceded by a ``<PRI>`` priority:

- BSD (RFC 3164): ``Mon DD HH:MM:SS host program[pid]: message``. The line has no
  year, so the year is the ``year`` argument, or the current UTC year when it is
  ``None``. Within one file, a month more than six months before the previous
  line's month (December to January) moves the year forward by one. A month more
  than six months after it (a stray December line among January lines) belongs
  to the year before, for that line only.
- RFC 3339 timestamp: ``2024-05-01T12:00:00.123+02:00 host program[pid]: message``.
- RFC 5424: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MESSAGE``.

Times without an offset (all BSD times) are taken as UTC.

Messages from OpenSSH, PAM, sudo, su, login and the shadow tools map to these
actions, with ``target`` set to the logging host for logins, authentication
and sessions:

- ``login.success``: ``Accepted <method> for <user> from <ip> port <port>`` and
  ``ROOT LOGIN ON <tty>``.
- ``login.failure`` (outcome ``failure``): ``Failed <method> for [invalid user]
  <user> from <ip> port <port>``, ``maximum authentication attempts exceeded
  for <user> from <ip>`` and ``FAILED LOGIN ... FROM <ip> FOR <user>``.
- ``login.invalid_user`` (``failure``): ``Invalid user <user> from <ip>`` and
  ``input_userauth_request: invalid user <user>``.
- ``auth.failure`` (``failure``): PAM's ``authentication failure; ... rhost=<ip>
  user=<user>`` and ``N more authentication failures; ...``, and
  ``Authentication failed from <ip>``.
- ``auth.user_unknown`` (``failure``): PAM's ``check pass; user unknown``.
- ``session.open`` and ``session.close``: ``session opened for user <user> by
  ...`` and ``session closed for user <user>``.
- ``ssh.disconnect``: ``Received disconnect from``, ``Disconnected from``,
  ``Connection closed by`` and ``Connection reset by``. The outcome is
  ``failure`` for ``Disconnecting: <reason>`` and ``Did not receive
  identification string``.
- ``sudo.command``: ``<user> : TTY=<tty> ; PWD=<dir> ; USER=<as> ;
  COMMAND=<command>``. The target is the command and ``metadata["run_as"]`` the
  user it ran as. A reason before ``TTY=`` makes the outcome ``denied`` (``user
  NOT in sudoers``, ``command not allowed``) or ``failure`` (``3 incorrect
  password attempts``).
- ``su.success`` and ``su.failure``: ``Successful su for <to> by <from>``,
  ``FAILED su for <to> by <from>``, util-linux's ``(to <to>) <from> on <tty>``
  and ``FAILED SU (to <to>) ...``, and Debian's ``+ <tty> <from>:<to>`` (``-``
  for a failure). The actor is <from> and the target <to>.
- ``account.add_user``, ``account.add_group``, ``account.delete_user`` and
  ``account.password_change``: ``new user: name=<name>``, ``new group:
  name=<name>``, ``delete user '<name>'`` and ``password changed for <name>``,
  with the account as the target.

``actor`` is the user that the message names (for sudo and su, the invoking
user). When a message names none, it is ``unknown`` for authentication failures
and the program name otherwise. ``source`` is the remote address that the
message names, or none. ``message repeated N times: [ ... ]`` is mapped by its
inner message, with ``metadata["repeated"] = N``. Any other line gets the action
``syslog.<program>`` (the first word of the program name, such as
``syslog.kernel``), or ``syslog.message`` without a program, and the outcome
``success``. ``id`` is a new UUIDv7, because syslog lines carry no id.

``metadata`` contains ``format`` (``syslog``), ``original`` (the line without its
line terminator), ``host``, ``program``, ``pid``, ``message``, ``facility`` and
``severity`` (from ``<PRI>``), and fields taken from the message such as
``method``, ``port``, ``tty``, ``pwd``, ``run_as``, ``reason``,
``pam_module`` and ``service``.

A line without a recognised timestamp yields an ``ImportProblem`` with reason
``no-timestamp``, and a line starting with ``#`` one with reason ``comment``.
Blank lines are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import IO, Any

from journal.importers._common import (
    ImportProblem,
    Item,
    decode_text,
    finish_event,
    iter_lines,
    parse_time,
)

__all__ = ["FORMAT", "iter_events", "looks_like_syslog"]

FORMAT = "syslog"

_MONTHS = {
    name: number
    for number, name in enumerate(
        (
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ),
        start=1,
    )
}
_PRI = r"(?:<(?P<pri>\d{1,3})>)?"
_BSD = re.compile(
    _PRI + r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +"
    r"(?P<day>\d{1,2}) (?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
    r"(?:\.(?P<fraction>\d{1,6}))? +(?P<rest>.*)$",
    re.DOTALL,
)
_RFC3339 = re.compile(
    _PRI + r"(?P<stamp>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?"
    r"(?:[Zz]|[+-]\d\d:?\d\d)?) +(?P<rest>.*)$",
    re.DOTALL,
)
_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<stamp>\S+) (?P<host>\S+) (?P<app>\S+) "
    r"(?P<procid>\S+) (?P<msgid>\S+) "
    r'(?P<sd>-|(?:\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: (?P<message>.*))?$',
    re.DOTALL,
)
_HOST_AND_TAG = re.compile(r"(?P<host>\S+) +(?P<tail>.*)$", re.DOTALL)
_TAG = re.compile(
    r"(?P<program>[^\s:\[\]][^:\[\]]{0,63}?)(?:\[(?P<pid>\d+)\])?:"
    r"(?: (?P<message>.*))?$",
    re.DOTALL,
)
_OFFSET_WITHOUT_COLON = re.compile(r"([+-]\d\d)(\d\d)$")
_PROGRAM_WORD = re.compile(r"[A-Za-z0-9_][\w.\-]*")
_PROGRAM_WITH_PAM = re.compile(r"(?P<name>[^(]+)\((?P<module>pam_\w+)\)$")
_PAM_PREFIX = re.compile(
    r"(?P<module>pam_\w+)\((?P<service>[^:)]+)(?::\w+)?\): (?P<message>.*)$",
    re.DOTALL,
)
_REPEATED = re.compile(r"message repeated (?P<count>\d+) times: \[ ?(?P<inner>.*)\]$")
_KEY_VALUE = re.compile(r"(\w+)=(\S*)")


def looks_like_syslog(line: str) -> bool:
    """Return whether *line* starts with a recognised syslog header."""
    return bool(_RFC5424.match(line) or _RFC3339.match(line) or _BSD.match(line))


class _Header:
    """The parsed header of one syslog line."""

    __slots__ = ("host", "message", "metadata", "pid", "program", "time")

    def __init__(self, time: datetime, host: str | None, tail: str) -> None:
        self.time = time
        self.host = host
        self.program: str | None = None
        self.pid: int | None = None
        self.message = tail
        self.metadata: dict[str, Any] = {}
        tag = _TAG.match(tail)
        if tag:
            self.program = tag["program"].strip()
            self.pid = int(tag["pid"]) if tag["pid"] else None
            self.message = tag["message"] or ""


class _YearTracker:
    """The year for BSD timestamps, moved forward when a file crosses New Year."""

    def __init__(self, year: int | None) -> None:
        self.year = year if year is not None else datetime.now(timezone.utc).year
        self.previous_month: int | None = None

    def year_for(self, month: int) -> int:
        previous = self.previous_month
        if previous is not None and month - previous > 6:
            return self.year - 1
        if previous is not None and previous - month > 6:
            self.year += 1
        self.previous_month = month
        return self.year


def _split_host(rest: str) -> tuple[str | None, str]:
    match = _HOST_AND_TAG.match(rest)
    if match is None:
        return None, rest
    return match["host"], match["tail"]


def _set_priority(metadata: dict[str, Any], pri: str | None) -> None:
    if pri is not None:
        metadata["facility"] = int(pri) // 8
        metadata["severity"] = int(pri) % 8


def _parse_line(line: str, years: _YearTracker) -> _Header | str:
    """Parse the header of *line*, or return a problem reason key if it has none."""
    match = _RFC5424.match(line)
    if match:
        time = parse_time(match["stamp"])
        if time is None:
            return "no-timestamp" if match["stamp"] == "-" else "invalid-time"
        host = None if match["host"] == "-" else match["host"]
        header = _Header(time, host, "")
        header.program = None if match["app"] == "-" else match["app"]
        procid = match["procid"]
        header.pid = int(procid) if procid.isdigit() else None
        header.message = (match["message"] or "").removeprefix("\ufeff")
        if match["msgid"] != "-":
            header.metadata["msgid"] = match["msgid"]
        if match["sd"] != "-":
            header.metadata["structured_data"] = match["sd"]
        _set_priority(header.metadata, match["pri"])
        return header

    match = _RFC3339.match(line)
    if match:
        stamp = _OFFSET_WITHOUT_COLON.sub(r"\1:\2", match["stamp"])
        time = parse_time(stamp)
        if time is None:
            return "invalid-time"
        header = _Header(time, *_split_host(match["rest"]))
        _set_priority(header.metadata, match["pri"])
        return header

    match = _BSD.match(line)
    if match is None:
        return "no-timestamp"
    month = _MONTHS[match["month"]]
    fraction = match["fraction"] or "0"
    try:
        time = datetime(
            years.year_for(month),
            month,
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            int(fraction.ljust(6, "0")),
            tzinfo=timezone.utc,
        )
    except ValueError:
        return "invalid-time"
    header = _Header(time, *_split_host(match["rest"]))
    _set_priority(header.metadata, match["pri"])
    return header


class _Mapped:
    """Event fields set by a message rule, where ``None`` keeps the default."""

    __slots__ = ("action", "actor", "extra", "outcome", "source", "target")

    def __init__(
        self,
        action: str | None,
        actor: str | None = None,
        *,
        target: str | None = None,
        outcome: str = "success",
        source: str | None = None,
        **extra: Any,
    ) -> None:
        self.action = action
        self.actor = actor
        self.target = target
        self.outcome = outcome
        self.source = source
        self.extra = {key: value for key, value in extra.items() if value is not None}


_Rule = Callable[[re.Match[str], "_Context"], _Mapped]


class _Context:
    """Line context for message rules besides their match: the host and program."""

    __slots__ = ("host", "program")

    def __init__(self, host: str | None, program: str | None) -> None:
        self.host = host
        self.program = program


def _port(match: re.Match[str]) -> int | None:
    port = match.groupdict().get("port")
    return int(port) if port else None


def _user(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def _key_values(text: str) -> dict[str, str]:
    return {key: value for key, value in _KEY_VALUE.findall(text) if value}


def _accepted(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "login.success",
        _user(match["user"]),
        target=context.host,
        source=match["ip"],
        method=match["method"],
        port=_port(match),
    )


def _failed(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "login.failure",
        _user(match["user"]),
        target=context.host,
        outcome="failure",
        source=match["ip"],
        method=match["method"] or None,
        port=_port(match),
        invalid_user=True if match["invalid"] else None,
    )


def _invalid_user(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "login.invalid_user",
        _user(match["user"]),
        target=context.host,
        outcome="failure",
        source=match.groupdict().get("ip"),
        port=_port(match),
    )


def _auth_failure(match: re.Match[str], context: _Context) -> _Mapped:
    values = _key_values(match["values"])
    count = match.groupdict().get("count")
    return _Mapped(
        "auth.failure",
        values.get("user") or values.get("ruser") or values.get("logname") or "unknown",
        target=context.host,
        outcome="failure",
        source=values.get("rhost"),
        tty=values.get("tty"),
        count=int(count) if count else None,
    )


def _user_unknown(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "auth.user_unknown", "unknown", target=context.host, outcome="failure"
    )


def _remote_auth_failure(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "auth.failure",
        "unknown",
        target=context.host,
        outcome="failure",
        source=match["ip"],
        reason=match["reason"] or None,
    )


def _session_open(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "session.open", _user(match["user"]), target=context.host, by=match["by"]
    )


def _session_close(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped("session.close", _user(match["user"]), target=context.host)


def _disconnect(match: re.Match[str], context: _Context) -> _Mapped:
    groups = match.groupdict()
    return _Mapped(
        "ssh.disconnect",
        _user(groups.get("user")),
        target=context.host,
        source=groups.get("ip"),
        port=_port(match),
        reason=groups.get("reason"),
    )


def _disconnecting(match: re.Match[str], context: _Context) -> _Mapped:
    reason = match["reason"]
    user = match["user"]
    if user is None:
        named = re.search(r" for (?:invalid user )?(\S+)", reason)
        user = named[1] if named else None
    return _Mapped(
        "ssh.disconnect",
        _user(user),
        target=context.host,
        outcome="failure",
        source=match["ip"],
        port=_port(match),
        reason=reason.removesuffix(" [preauth]"),
    )


def _no_identification(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "ssh.disconnect",
        None,
        target=context.host,
        outcome="failure",
        source=match["ip"],
        reason="did not receive identification string",
    )


def _source_only(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(None, source=match["ip"])


def _sudo(match: re.Match[str], context: _Context) -> _Mapped:
    error = match["error"]
    outcome = "success"
    if error:
        lowered = error.lower()
        denied = "not in sudoers" in lowered or "not allowed" in lowered
        outcome = "denied" if denied else "failure"
    return _Mapped(
        "sudo.command",
        match["user"],
        target=match["command"],
        outcome=outcome,
        run_as=match["run_as"],
        tty=match["tty"],
        pwd=match["pwd"],
        reason=error or None,
    )


def _su(match: re.Match[str], context: _Context) -> _Mapped:
    groups = match.groupdict()
    failed = bool(groups.get("failed")) or groups.get("sign") == "-"
    return _Mapped(
        "su.failure" if failed else "su.success",
        match["by"],
        target=match["to"],
        outcome="failure" if failed else "success",
        tty=groups.get("tty"),
    )


def _debian_su(match: re.Match[str], context: _Context) -> _Mapped:
    if context.program != "su":
        return _Mapped(None)
    return _su(match, context)


def _root_login(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "login.success",
        "root",
        target=context.host,
        source=match["ip"],
        tty=match["tty"],
    )


def _failed_login(match: re.Match[str], context: _Context) -> _Mapped:
    return _Mapped(
        "login.failure",
        match["user"],
        target=context.host,
        outcome="failure",
        source=match["ip"],
        tty=match["tty"],
    )


def _account(action: str) -> _Rule:
    def rule(match: re.Match[str], context: _Context) -> _Mapped:
        return _Mapped(action, None, target=match["name"])

    return rule


# Rules are tried in order on the message, after any PAM "pam_x(service:type): "
# prefix is removed. The first pattern that matches decides.
_RULES: tuple[tuple[re.Pattern[str], _Rule], ...] = (
    (
        re.compile(
            r"Accepted (?P<method>\S+) for (?P<user>.+?) from (?P<ip>\S+) "
            r"port (?P<port>\d+)"
        ),
        _accepted,
    ),
    (
        re.compile(
            r"Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*?) "
            r"from (?P<ip>\S+) port (?P<port>\d+)"
        ),
        _failed,
    ),
    (
        re.compile(
            r"(?:error: )?maximum authentication attempts exceeded for "
            r"(?P<invalid>invalid user )?(?P<user>.*?) from (?P<ip>\S+) "
            r"port (?P<port>\d+)(?P<method>)"
        ),
        _failed,
    ),
    (
        re.compile(
            r"Invalid user (?P<user>.*?) from (?P<ip>\S+)(?: port (?P<port>\d+))?\s*$"
        ),
        _invalid_user,
    ),
    (
        re.compile(
            r"input_userauth_request: invalid user (?P<user>.*?)(?: \[preauth\])?$"
        ),
        _invalid_user,
    ),
    (re.compile(r"authentication failure; (?P<values>.*)$"), _auth_failure),
    (
        re.compile(
            r"(?:PAM )?(?P<count>\d+) more authentication failures?; (?P<values>.*)$"
        ),
        _auth_failure,
    ),
    (re.compile(r"check pass; user unknown"), _user_unknown),
    (
        re.compile(
            r"Authentication failed from (?P<ip>\S+)(?: \([^)]*\))?"
            r"(?::\s*(?P<reason>.*))?$"
        ),
        _remote_auth_failure,
    ),
    (
        re.compile(
            r"session opened for user (?P<user>[^\s(]+)(?:\(uid=\d+\))?"
            r"(?: by (?P<by>.*))?$"
        ),
        _session_open,
    ),
    (
        re.compile(r"session closed for user (?P<user>[^\s(]+)(?:\(uid=\d+\))?"),
        _session_close,
    ),
    (
        re.compile(
            r"(?:error: )?Received disconnect from (?P<ip>\S+?)"
            r"(?: port (?P<port>\d+))?: ?\d+: (?P<reason>.*?)(?: \[preauth\])?$"
        ),
        _disconnect,
    ),
    (
        re.compile(
            r"Disconnected from (?:(?:user|invalid user|authenticating user) "
            r"(?P<user>\S+) )?(?P<ip>\S+) port (?P<port>\d+)"
        ),
        _disconnect,
    ),
    (
        re.compile(
            r"Connection (?:closed|reset) by (?:(?:authenticating|invalid) user "
            r"(?P<user>\S+) )?(?P<ip>[^\s\[]+)(?: port (?P<port>\d+))?"
        ),
        _disconnect,
    ),
    (
        re.compile(
            r"(?:error: )?Disconnecting:? (?:(?:authenticating|invalid) user "
            r"(?P<user>\S+) (?P<ip>\S+) port (?P<port>\d+): )?(?P<reason>.*)$"
        ),
        _disconnecting,
    ),
    (
        re.compile(r"Did not receive identification string from (?P<ip>\S+)"),
        _no_identification,
    ),
    (
        re.compile(r"reverse mapping checking getaddrinfo for \S+ \[(?P<ip>[^\]]+)\]"),
        _source_only,
    ),
    (
        re.compile(
            r"\s*(?P<user>\S+) : (?:(?P<error>[^;]*?) ; )?TTY=(?P<tty>\S+) ; "
            r"PWD=(?P<pwd>.*?) ; USER=(?P<run_as>\S+) ;(?: GROUP=\S+ ;)?"
            r"(?: TSID=\S+ ;)?(?: ENV=.*? ;)? COMMAND=(?P<command>.*)$"
        ),
        _sudo,
    ),
    (re.compile(r"Successful su for (?P<to>\S+) by (?P<by>\S+)$"), _su),
    (re.compile(r"(?P<failed>FAILED) su for (?P<to>\S+) by (?P<by>\S+)$"), _su),
    (
        re.compile(
            r"(?P<failed>FAILED SU )?\(to (?P<to>\S+)\) (?P<by>\S+) on (?P<tty>\S+)$"
        ),
        _su,
    ),
    (
        re.compile(r"(?P<sign>[+-]) (?P<tty>\S+) (?P<by>[^:\s]+):(?P<to>\S+)$"),
        _debian_su,
    ),
    (re.compile(r"ROOT LOGIN +ON (?P<tty>\S+)(?: FROM (?P<ip>\S+))?"), _root_login),
    (
        re.compile(
            r"FAILED LOGIN (?:\(?\d+\)? )?(?:ON (?P<tty>\S+) )?FROM (?P<ip>\S+) "
            r"FOR (?P<user>[^\s,]+)"
        ),
        _failed_login,
    ),
    (re.compile(r"new user: name=(?P<name>[^,\s]+)"), _account("account.add_user")),
    (re.compile(r"new group: name=(?P<name>[^,\s]+)"), _account("account.add_group")),
    (re.compile(r"delete user '(?P<name>[^']+)'"), _account("account.delete_user")),
    (
        re.compile(r"password changed for (?P<name>\S+)"),
        _account("account.password_change"),
    ),
    (re.compile(r"connection from (?P<ip>\d{1,3}(?:\.\d{1,3}){3})\b"), _source_only),
)


def _classify(message: str, context: _Context) -> _Mapped:
    for pattern, rule in _RULES:
        match = pattern.match(message)
        if match:
            return rule(match, context)
    return _Mapped(None)


def _program_name(program: str | None) -> str | None:
    if not program:
        return None
    word = _PROGRAM_WORD.search(program)
    return word[0] if word else None


def iter_events(
    path: str, stream: IO[bytes], *, year: int | None = None
) -> Iterator[Item]:
    """Yield one record per syslog line in *stream*, and a problem per bad line.

    *year* is the year of BSD timestamps, which have none; ``None`` means the
    current UTC year.
    """
    years = _YearTracker(year)
    for item in iter_lines(stream, path):
        if isinstance(item, ImportProblem):
            yield item
            continue
        number, raw = item
        text, warning = decode_text(raw)
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            yield ImportProblem(
                path=path,
                line=number,
                reason="comment",
                message=f"line {number} is a comment, not a syslog line",
            )
            continue
        header = _parse_line(text, years)
        if isinstance(header, str):
            yield _header_problem(path, number, header, stripped)
            continue
        yield _build_event(path, number, text, header, warning)


def _header_problem(path: str, number: int, reason: str, text: str) -> ImportProblem:
    if reason == "invalid-time":
        detail = "has a timestamp that is not a valid date and time"
    else:
        detail = "does not start with a syslog timestamp (BSD, RFC 3339 or RFC 5424)"
    return ImportProblem(
        path=path,
        line=number,
        reason=reason,
        message=f"line {number} {detail}: {text[:60]!r}",
    )


def _build_event(
    path: str, number: int, text: str, header: _Header, warning: str | None
) -> Item:
    metadata: dict[str, Any] = {"format": FORMAT, "original": text}
    program = header.program
    pam_module = None
    if program:
        with_pam = _PROGRAM_WITH_PAM.match(program)
        if with_pam:
            program = with_pam["name"]
            pam_module = with_pam["module"]
            metadata["service"] = program
    name = _program_name(program)
    message = header.message
    repeated = _REPEATED.match(message)
    if repeated:
        metadata["repeated"] = int(repeated["count"])
        message = repeated["inner"]
    pam = _PAM_PREFIX.match(message)
    if pam:
        pam_module = pam["module"]
        metadata["service"] = pam["service"]
        message = pam["message"]
    mapped = _classify(message, _Context(header.host, name))

    if header.host:
        metadata["host"] = header.host
    if header.program:
        metadata["program"] = header.program
    if header.pid is not None:
        metadata["pid"] = header.pid
    metadata["message"] = header.message
    if pam_module:
        metadata["pam_module"] = pam_module
    metadata.update(header.metadata)
    metadata.update(mapped.extra)

    default_actor = name or header.host or "unknown"
    fields: dict[str, Any] = {
        "action": mapped.action or f"syslog.{name or 'message'}",
        "actor": mapped.actor or default_actor,
        "target": mapped.target,
        "outcome": mapped.outcome,
        "time": header.time,
        "source": mapped.source,
        "metadata": metadata,
    }
    return finish_event(path, number, f"line {number}", fields, warning)
