"""Benchmark events: a varied corpus built from real logs, and a small synthetic event.

The real-log corpus starts from every record that :func:`journal.importers.iter_records`
imports from the files listed in ``MANIFEST.tsv`` of the data directory (Kubernetes
audit, CloudTrail, auditd and syslog). Each generated event copies one such record
and rewrites, in the event and in ``metadata["original"]`` alike:

* UUIDs (k8s ``auditID``, CloudTrail ``eventID``/``requestID``): fresh random ones;
* IPv4 addresses: drawn from a pool of 5,000 addresses with a skewed distribution;
* the user name of the actor and the host name: drawn from pools of 2,000 users and
  50 hosts;
* the resource name at the end of the target: the name plus one of 5,000 suffixes;
* process ids, ports, auditd serials and every timestamp (RFC 3339, syslog and
  auditd ``audit(SECONDS.MS:SERIAL)``).

So sizes and compressibility follow the real records instead of repeating copies.
Event ``i`` of ``n`` is dated ``SPAN`` before ``END`` plus ``i * SPAN / n``, with up
to two seconds of jitter. So the last hour contains ``n / 240`` events, and
``max_age = 1 day`` expires 90% of them. ``RARE_ACTOR`` replaces the actor of 0.1% of the events.
Generation is deterministic: the same seed and index give the same event.
"""

from __future__ import annotations

import bisect
import csv
import functools
import itertools
import os
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import msgspec

from journal import AuditEvent
from journal.importers import ImportedRecord, iter_records

#: Share of each format in the generated corpus. Host logs (syslog, auditd)
#: outnumber cloud API records in a typical fleet. The weights are a choice, not a
#: measurement, and ``README.md`` reports the resulting average size.
FORMAT_WEIGHTS = {"syslog": 0.40, "auditd": 0.25, "cloudtrail": 0.20, "k8s": 0.15}
#: Newest event time of the corpus.
END = datetime(2025, 6, 1, tzinfo=timezone.utc)
#: Time covered by the corpus, whatever its size.
SPAN = timedelta(days=10)
#: Actor given to 0.1% of the corpus events, for the filtered-recent workload.
RARE_ACTOR = "auditor.rare"
RARE_SHARE = 0.001

_FIRST = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "nina",
    "oscar",
    "peggy",
    "quinn",
    "rupert",
    "sybil",
    "trent",
    "ursula",
    "victor",
    "walter",
    "xena",
    "yusuf",
    "zoe",
]
_LAST = [
    "smith",
    "jones",
    "brown",
    "taylor",
    "wilson",
    "davies",
    "evans",
    "thomas",
    "johnson",
    "roberts",
    "walker",
    "wright",
    "robinson",
    "thompson",
    "white",
    "hughes",
    "edwards",
    "green",
    "hall",
    "wood",
]
# Actor and host tokens that name software rather than a person or machine. They
# are not rewritten, so program names inside log text stay intact.
_KEEP_TOKENS = frozenset(
    [
        "sshd",
        "su",
        "sudo",
        "cron",
        "crond",
        "root",
        "unknown",
        "system",
        "kernel",
        "systemd",
        "logrotate",
        "ftpd",
        "xinetd",
        "gdm",
        "kubelet",
        "admin",
        "anonymous",
        "localhost",
    ]
)

_SYSLOG_MONTHS = [
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
]
_FORMAT_NAMES = frozenset(FORMAT_WEIGHTS)
_PATTERN = (
    r"(?P<uuid>\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}\b)"
    r"|(?P<iso>\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?P<frac>\.\d+)?(?P<zone>Z|[+-]\d\d:\d\d)?)"
    r"|(?P<stamp>\b\d{9,10}\.\d{3}:\d+\b)"
    r"|(?P<ip>\b(?:\d{1,3}\.){3}\d{1,3}\b)"
    r"|(?P<syslog>\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d "
    r"\d\d:\d\d:\d\d\b)"
    r"|(?P<pidkey>(?P<pidprefix>\bp?pid=|\"p?pid\":)(?P<pid>\d{1,7})\b)"
    r"|(?P<bracket>\[(?P<bpid>\d{2,7})\])"
    r"|(?P<portkey>\bport (?P<port>\d{2,5})\b)"
    r"|(?P<serialkey>\"serial\":\d+)"
    r"|(?P<akid>\bASIA[A-Z0-9]{16}\b)"
)

# A template part: literal text, or (kind, matched text, detail) to rewrite.
Part = str | tuple[str, str, object]


@dataclass(frozen=True)
class Template:
    """One imported record split into literal text and the parts that get rewritten."""

    fmt: str
    parts: tuple[Part, ...]


@functools.cache
def _compile(
    user: str | None, host: str | None, resource: str | None
) -> re.Pattern[str]:
    tokens = [
        f"(?P<{name}>{re.escape(token)})"
        for name, token in (("user", user), ("host", host), ("resource", resource))
        if token is not None
    ]
    return re.compile("|".join([*tokens, _PATTERN]))


def _split(
    text: str, user: str | None, host: str | None, resource: str | None
) -> Template:
    """Find every rewritable part of *text* once, so generation only joins strings."""
    pattern = _compile(user, host, resource)
    parts: list[Part] = []
    position = 0
    for match in pattern.finditer(text):
        parts.append(text[position : match.start()])
        kind = match.lastgroup or ""
        detail: object = None
        if kind == "iso":
            frac = match.group("frac")
            detail = (len(frac) if frac else 0, match.group("zone") is not None)
        elif kind == "pidkey":
            detail = (match.group("pidprefix"), match.group("pid"))
        elif kind == "bracket":
            detail = match.group("bpid")
        elif kind == "portkey":
            detail = match.group("port")
        parts.append((kind, match.group(0), detail))
        position = match.end()
    parts.append(text[position:])
    return Template(fmt="", parts=tuple(p for p in parts if p != ""))


def default_data_dir() -> str:
    """Return ``../shared/data`` relative to the repository root."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(os.path.dirname(root), "shared", "data")


def _last_token(value: str | None) -> str | None:
    if not value:
        return None
    token = re.split(r"[/:]", value)[-1]
    if (
        len(token) < 4
        or token.isdigit()
        or token in _KEEP_TOKENS
        or token in _FORMAT_NAMES
    ):
        return None
    return token


def load_templates(data_dir: str) -> dict[str, list[Template]]:
    """Import every file listed in ``MANIFEST.tsv``; return the records by format."""
    manifest = os.path.join(data_dir, "MANIFEST.tsv")
    if not os.path.exists(manifest):
        raise FileNotFoundError(
            f"{manifest} not found; pass --data DIR with the real-log directory"
        )
    templates: dict[str, list[Template]] = {fmt: [] for fmt in FORMAT_WEIGHTS}
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        fmt = row["format"]
        if fmt not in templates:
            continue
        for item in iter_records(os.path.join(data_dir, row["path"]), fmt):
            if not isinstance(item, ImportedRecord):
                continue
            event = item.event
            host = event.metadata.get("host")
            template = _split(
                msgspec.json.encode(event).decode(),
                user=_last_token(event.actor),
                host=_last_token(host) if isinstance(host, str) else None,
                resource=_last_token(event.target),
            )
            templates[fmt].append(Template(fmt=fmt, parts=template.parts))
    for fmt, found in templates.items():
        if not found:
            raise ValueError(f"no {fmt} records were imported from {data_dir}")
    return templates


class _Pool:
    """Values drawn with a Zipf-like skew: value k has weight 1 / (k + 1)."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self._cumulative = list(
            itertools.accumulate(1.0 / (k + 1) for k in range(len(values)))
        )

    def pick(self, rng: random.Random) -> str:
        x = rng.random() * self._cumulative[-1]
        return self.values[bisect.bisect_left(self._cumulative, x)]


def _random_ip(rng: random.Random) -> str:
    return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


class Corpus:
    """A deterministic stream of varied real-log events."""

    def __init__(self, data_dir: str | None = None, seed: int = 1) -> None:
        self.templates = load_templates(data_dir or default_data_dir())
        pools = random.Random(seed)
        self._formats = list(FORMAT_WEIGHTS)
        self._format_cumulative = list(itertools.accumulate(FORMAT_WEIGHTS.values()))
        self._users = _Pool(
            [
                f"{pools.choice(_FIRST)}.{pools.choice(_LAST)}{pools.randint(1, 99)}"
                for _ in range(2000)
            ]
        )
        self._hosts = _Pool(
            [
                f"{pools.choice(['web', 'db', 'app', 'k8s-node', 'bastion'])}-"
                f"{pools.randint(1, 400):03d}"
                for _ in range(50)
            ]
        )
        self._ips = _Pool([_random_ip(pools) for _ in range(5000)])
        self._suffixes = _Pool(
            [
                "".join(
                    pools.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                    for _ in range(5)
                )
                for _ in range(5000)
            ]
        )
        self.seed = seed

    def event(self, index: int, total: int) -> AuditEvent:
        """Return event *index* of a corpus of *total* events."""
        rng = random.Random((self.seed << 40) ^ index)
        choice = bisect.bisect_left(self._format_cumulative, rng.random())
        fmt = self._formats[min(choice, len(self._formats) - 1)]
        template = rng.choice(self.templates[fmt])
        step = SPAN / total
        moment = END - SPAN + step * index + timedelta(seconds=rng.uniform(-2.0, 2.0))
        moment = min(moment, END)
        rewrite = _Rewriter(rng, moment, index, self)
        text = "".join(
            part if isinstance(part, str) else rewrite(*part) for part in template.parts
        )
        event = msgspec.json.decode(text, type=AuditEvent)
        if rng.random() < RARE_SHARE:
            event.actor = RARE_ACTOR
        return event

    def events(
        self, count: int, start: int = 0, total: int | None = None
    ) -> list[AuditEvent]:
        """Return events ``start .. start + count - 1`` of a corpus of *total* events."""
        total = total or (start + count)
        return [self.event(i, total) for i in range(start, start + count)]

    def stream(self, total: int, chunk: int = 5000) -> Iterator[list[AuditEvent]]:
        """Yield all *total* events in lists of at most *chunk*."""
        for start in range(0, total, chunk):
            yield self.events(min(chunk, total - start), start, total)


class _Rewriter:
    """Rewrite the variable parts of one event; equal old values get equal new ones."""

    def __init__(
        self, rng: random.Random, moment: datetime, index: int, corpus: Corpus
    ) -> None:
        self.rng = rng
        self.moment = moment
        self.serial = 1000 + index
        self.corpus = corpus
        self.seen: dict[str, str] = {}
        self.iso = moment.strftime("%Y-%m-%dT%H:%M:%S")
        self.micros = f".{moment.microsecond:06d}"

    def _same(self, old: str, make: str) -> str:
        new = self.seen.get(old)
        if new is not None:
            return new
        rng = self.rng
        if make == "uuid":
            new = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        elif make == "ip":
            new = self.corpus._ips.pick(rng)
        elif make == "pid":
            new = str(rng.randint(300, 65000))
        elif make == "port":
            new = str(rng.randint(1024, 65535))
        elif make == "user":
            new = self.corpus._users.pick(rng)
        elif make == "host":
            new = self.corpus._hosts.pick(rng)
        elif make == "resource":
            new = f"{old}-{self.corpus._suffixes.pick(rng)}"
        else:
            new = "ASIA" + "".join(
                rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)
            )
        self.seen[old] = new
        return new

    def __call__(self, kind: str, text: str, detail: object) -> str:
        moment = self.moment
        if kind == "iso":
            frac_len, zone = detail  # type: ignore[misc]
            return self.iso + self.micros[:frac_len] + ("Z" if zone else "")
        if kind in ("uuid", "ip", "user", "host", "resource", "akid"):
            return self._same(text.lower() if kind == "uuid" else text, kind)
        if kind == "stamp":
            return f"{moment.timestamp():.3f}:{self.serial}"
        if kind == "syslog":
            return (
                f"{_SYSLOG_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S}"
            )
        if kind == "pidkey":
            prefix, pid = detail  # type: ignore[misc]
            return prefix + self._same("pid" + pid, "pid")
        if kind == "bracket":
            return "[" + self._same(f"pid{detail}", "pid") + "]"
        if kind == "portkey":
            return "port " + self._same(f"port{detail}", "port")
        if kind == "serialkey":
            return f'"serial":{self.serial}'
        return text


_ACTIONS = (
    "user.login",
    "user.logout",
    "file.read",
    "file.write",
    "file.delete",
    "role.grant",
    "role.revoke",
    "token.issue",
    "config.change",
    "export.run",
)


def small_event(rng: random.Random, users: list[str]) -> AuditEvent:
    """Return a synthetic event of about 300 bytes of JSON."""
    return AuditEvent(
        action=rng.choice(_ACTIONS),
        actor=rng.choice(users),
        target=f"documents/{rng.randint(1, 50000)}",
        outcome="success" if rng.random() < 0.95 else "failure",
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        source=_random_ip(rng),
        metadata={
            "request_id": f"{rng.getrandbits(64):016x}",
            "user_agent": "Mozilla/5.0",
            "session": rng.randint(1, 1 << 31),
            "bytes": rng.randint(0, 1 << 20),
        },
    )


def small_events(count: int, seed: int = 2) -> list[AuditEvent]:
    """Return *count* synthetic small events, dated now."""
    rng = random.Random(seed)
    users = [f"user{k:04d}" for k in range(500)]
    return [small_event(rng, users) for _ in range(count)]


def fresh(events: list[AuditEvent]) -> list[AuditEvent]:
    """Return new event objects with ``seq`` unset, for one more timed run."""
    return [msgspec.structs.replace(e, seq=None) for e in events]
