"""Container logs in the k8s-file (CRI) format: reading, filtering, following.

conmon writes the log (skiff never does): one line per chunk it read from
the container, ``TIMESTAMP STREAM TAG MESSAGE\\n``, where TIMESTAMP is
RFC 3339 with nanoseconds and conmon's local offset
(``2024-01-02T15:04:05.123456789+00:00``; the CRI writes ``...Z``), STREAM
is ``stdout`` or ``stderr``, and TAG is ``F`` (the chunk ended a line) or
``P`` (partial: the container wrote no newline yet), possibly followed by
further ``:``-separated CRI tags. Both spellings are the same format and
one parser reads them.

``read_logs`` joins partial chunks per stream into whole lines (the line
carries the time of its first chunk; an unfinished line at the end of the
log comes out with ``partial=True``) and applies podman's options in
podman's order: ``tail`` takes the last N lines of the log, and ``since``
and ``until`` (both inclusive) then filter those. ``follow`` keeps
reading as conmon appends — woken by inotify, no busy polling — until
``is_running()`` says the container is gone (then the rest is drained),
``until`` has passed, or the caller stops iterating. A log that conmon
replaced (``--log-size-max`` rotation renames a fresh file over it) is
read to its end and then followed from the start of the new file.

Where this differs from podman 4.3 (checked side by side): podman prints
each chunk as it is (with ``-t``, a timestamp in front of every chunk,
even in the middle of a line) and ``--tail`` counts chunks; skiff joins
chunks into lines first, so ``-t`` stamps whole lines and ``--tail`` counts
lines. Timestamps print as podman prints them (Go's RFC3339Nano: ``Z``,
no trailing zeros).

A line that does not parse (a crash can leave half a line) is skipped with
a warning rather than ending the read: the rest of the log is still the
user's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from skiff.errors import ContainerError, UsageError
from skiff.runtime.exitfile import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_MODIFY,
    IN_MOVED_TO,
    DirectoryWatch,
)

log = logging.getLogger(__name__)

STDOUT = "stdout"
STDERR = "stderr"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000
_READ_CHUNK = 1 << 16
_FOLLOW_MAX_WAIT = 0.25
"""Longest sleep between looks at ``is_running`` while following."""

Timestamp = datetime | int
"""A point in time: an aware datetime (naive means local time), or
nanoseconds since the epoch (exact, as log timestamps are)."""


# --- timestamps ------------------------------------------------------------------------

_RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    rb"(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)


def _to_ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive: local time
    delta = dt - _EPOCH
    return (delta // timedelta(seconds=1)) * _NS + delta.microseconds * 1000


def to_ns(value: Timestamp) -> int:
    """Nanoseconds since the epoch of a datetime (or of an int, unchanged)."""
    return value if isinstance(value, int) else _to_ns(value)


def parse_timestamp(text: bytes | str) -> tuple[int, datetime]:
    """An RFC 3339 timestamp with up to nanoseconds → (ns since epoch, aware
    datetime to the microsecond, in the timestamp's own offset)."""
    raw = text.encode() if isinstance(text, str) else text
    match = _RFC3339.fullmatch(raw)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {raw[:40]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = (match.group(7) or b"").ljust(9, b"0")
    nanos = int(fraction)
    if match.group(8):
        tz = UTC
    else:
        sign = -1 if match.group(9) == b"-" else 1
        tz = timezone(sign * timedelta(hours=int(match.group(10)), minutes=int(match.group(11))))
    dt = datetime(year, month, day, hour, minute, second, nanos // 1000, tzinfo=tz)
    delta = dt.replace(microsecond=0) - _EPOCH
    return (delta // timedelta(seconds=1)) * _NS + nanos, dt


def rfc3339nano(text: str) -> str:
    """A log timestamp as Go's RFC3339Nano layout prints it (podman and docker
    ``logs --timestamps``): trailing zeros of the fraction dropped (and the
    dot with them), ``Z`` for a zero offset."""
    match = _RFC3339.fullmatch(text.encode())
    if match is None:
        return text
    date_time = text[:19]
    fraction = (match.group(7) or b"").decode().rstrip("0")
    if match.group(8) or (match.group(10) == b"00" and match.group(11) == b"00"):
        zone = "Z"
    else:
        zone = f"{match.group(9).decode()}{match.group(10).decode()}:{match.group(11).decode()}"
    return f"{date_time}{'.' + fraction if fraction else ''}{zone}"


def format_timestamp(ns: int, tz: timezone | None = None) -> str:
    """``ns`` as conmon writes it: nanoseconds and a ``+HH:MM`` offset (local
    time unless ``tz``)."""
    seconds, nanos = divmod(ns, _NS)
    dt = datetime.fromtimestamp(seconds, tz=tz or UTC)
    if tz is None:
        dt = dt.astimezone()
    offset = dt.strftime("%z")
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{nanos:09d}{offset[:3]}:{offset[3:]}"


_GO_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+")
_GO_UNIT_NS = {
    "ns": 1,
    "us": 1000,
    "µs": 1000,
    "ms": 1_000_000,
    "s": _NS,
    "m": 60 * _NS,
    "h": 3600 * _NS,
}
_LOCAL_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?)?"
)


def parse_time_filter(text: str, now: int | None = None) -> int:
    """A ``--since``/``--until`` value → ns since the epoch, as podman reads
    them: an RFC 3339 time (``2024-01-02T15:04:05.5Z``), a local date-time or
    date without offset (``2024-01-02T15:04:05``, ``2024-01-02``), Unix
    seconds with optional fraction (``1704207845.5``), or a Go duration
    before now (``10m``, ``1h30m``, ``500ms``)."""
    value = text.strip()
    if not value:
        raise UsageError("empty time value", "give a timestamp, a date, or a duration like 10m")
    current = time.time_ns() if now is None else now
    if _GO_DURATION.fullmatch(value):
        total = 0.0
        for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", value):
            total += float(number) * _GO_UNIT_NS[unit]
        return current - int(total)
    if re.fullmatch(r"\d+(?:\.\d{1,9})?", value):
        whole, _, frac = value.partition(".")
        return int(whole) * _NS + int(frac.ljust(9, "0") or 0)
    with contextlib.suppress(ValueError):
        return parse_timestamp(value)[0]
    match = _LOCAL_DATETIME.fullmatch(value)
    if match is not None:
        year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups()[:6])
        with contextlib.suppress(ValueError):
            # no offset given: local time
            local = datetime(year, month, day, hour, minute, second).astimezone()
            return _to_ns(local) + int((match.group(7) or "").ljust(9, "0"))
    raise UsageError(
        f"cannot parse {text!r} as a time",
        "use RFC 3339 (2024-01-02T15:04:05Z), a date, Unix seconds, or a duration like 10m",
    )


# --- lines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One line the container wrote (partial chunks already joined)."""

    time_ns: int
    """Nanoseconds since the epoch (of the line's first chunk)."""
    time_text: str
    """The timestamp as written in the log."""
    stream: str
    """``stdout`` or ``stderr``."""
    message: bytes
    """Without the newline."""
    partial: bool = False
    """The container has not finished this line (yet): no newline to print."""
    show_timestamp: bool = False
    """``render`` prefixes the timestamp (``read_logs(timestamps=True)``)."""

    @property
    def time(self) -> datetime:
        """The timestamp, to the microsecond, in the log's own offset."""
        return parse_timestamp(self.time_text)[1]

    def render(self) -> bytes:
        """The line as ``skiff logs`` prints it: ``[TIMESTAMP ]MESSAGE\\n``
        (no newline for a partial line; the timestamp as podman prints it,
        see ``rfc3339nano``)."""
        prefix = rfc3339nano(self.time_text).encode() + b" " if self.show_timestamp else b""
        return prefix + self.message + (b"" if self.partial else b"\n")


@dataclass(frozen=True)
class LogRecord:
    """One line of the log file as written (a chunk, maybe partial)."""

    time_ns: int
    time_text: str
    stream: str
    partial: bool
    message: bytes


def parse_log_record(raw: bytes) -> LogRecord:
    """Parse one log file line (with or without its trailing newline)."""
    line = raw[:-1] if raw.endswith(b"\n") else raw
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise ValueError(f"not a log line: {line[:80]!r}")
    stamp, stream, tags = parts[0], parts[1], parts[2]
    time_ns, _ = parse_timestamp(stamp)
    if stream not in (b"stdout", b"stderr"):
        raise ValueError(f"unknown stream {stream[:20]!r} in log line")
    tag = tags.split(b":", 1)[0]
    if tag not in (b"F", b"P"):
        raise ValueError(f"unknown tag {tags[:20]!r} in log line")
    message = parts[3] if len(parts) == 4 else b""
    return LogRecord(time_ns, stamp.decode(), stream.decode(), tag == b"P", message)


def format_log_record(
    time_ns: int, stream: str, message: bytes, *, partial: bool = False, tz: timezone | None = None
) -> bytes:
    """One log line as conmon writes it (for tests and tools; skiff's
    containers are logged by conmon)."""
    if stream not in (STDOUT, STDERR):
        raise ValueError(f"unknown stream {stream!r}")
    if b"\n" in message:
        raise ValueError("a log record holds no newline")
    tag = b"P" if partial else b"F"
    return b"%s %s %s %s\n" % (
        format_timestamp(time_ns, tz).encode(),
        stream.encode(),
        tag,
        message,
    )


class _Joiner:
    """Joins P chunks per stream into whole lines."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[LogRecord, list[bytes]]] = {}

    def add(self, record: LogRecord) -> LogLine | None:
        first, pieces = self._pending.get(record.stream, (record, []))
        pieces.append(record.message)
        if record.partial:
            self._pending[record.stream] = (first, pieces)
            return None
        self._pending.pop(record.stream, None)
        return LogLine(first.time_ns, first.time_text, record.stream, b"".join(pieces))

    def unfinished(self) -> list[LogLine]:
        """Lines still waiting for their end, oldest first, marked partial."""
        lines = [
            LogLine(first.time_ns, first.time_text, first.stream, b"".join(pieces), partial=True)
            for first, pieces in self._pending.values()
        ]
        self._pending.clear()
        return sorted(lines, key=lambda line: line.time_ns)


# --- reading ---------------------------------------------------------------------------


class _LogFile:
    """Complete raw lines of a log file, from an offset on, across replacement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._rest = b""

    def open(self) -> bool:
        """Open the file if it exists (False while it does not)."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ContainerError(f"cannot read the log {self.path}: {exc.strerror}") from exc
        st = os.fstat(fd)
        self._fd, self._ino, self._rest = fd, (st.st_dev, st.st_ino), b""
        return True

    def lines(self) -> Iterator[bytes]:
        """Complete lines appended since the last call."""
        if self._fd is None and not self.open():
            return
        assert self._fd is not None
        while True:
            chunk = os.read(self._fd, _READ_CHUNK)
            if not chunk:
                return
            data = self._rest + chunk
            cut = data.rfind(b"\n") + 1
            self._rest = data[cut:]
            if cut:
                yield from data[:cut].splitlines(keepends=True)

    def replaced(self) -> bool:
        """Whether the path now names another file (conmon rotated the log)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) != self._ino

    def reopen(self) -> None:
        self.close()
        self.open()

    def leftover(self) -> bytes:
        """An unterminated last line (a writer that was cut off)."""
        rest, self._rest = self._rest, b""
        return rest

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _records(raw_lines: Iterator[bytes], path: Path) -> Iterator[LogRecord]:
    for raw in raw_lines:
        try:
            yield parse_log_record(raw)
        except ValueError as exc:
            log.warning("skipping a malformed line in %s: %s", path, exc)


def read_logs(
    path: Path,
    *,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    tail: int | None = None,
    follow: bool = False,
    timestamps: bool = False,
    is_running: Callable[[], bool] | None = None,
) -> Iterator[LogLine]:
    """The container's log lines (see the module docstring for the rules).

    ``tail`` None: all lines; 0: none of the existing ones (only new ones
    with ``follow``). A log that does not exist yet reads as empty (conmon
    creates it when the container starts); with ``follow`` it is waited for.
    """
    if tail is not None and tail < 0:
        raise UsageError(f"invalid tail count {tail}", "give 0 or more lines, or none for all")
    since_ns = None if since is None else to_ns(since)
    until_ns = None if until is None else to_ns(until)

    def wanted(line: LogLine) -> bool:
        if since_ns is not None and line.time_ns < since_ns:
            return False
        return until_ns is None or line.time_ns <= until_ns

    def shown(line: LogLine) -> LogLine:
        return replace(line, show_timestamp=True) if timestamps else line

    source = _LogFile(path)
    joiner = _Joiner()
    try:

        def existing() -> Iterator[LogLine]:
            for record in _records(source.lines(), path):
                line = joiner.add(record)
                if line is not None:
                    yield line
            if not follow:
                # the unfinished end belongs to the log as it is now
                yield from _finish(source, joiner, path)

        lines: Iterator[LogLine] | deque[LogLine] = existing()
        if tail is not None:
            # reads the whole file (so that follow goes on from its end), keeps N
            lines = deque(lines, maxlen=tail)
        for line in lines:
            if wanted(line):
                yield shown(line)
        if follow:
            yield from (shown(line) for line in _follow(source, joiner, until_ns, is_running))
            for line in _finish(source, joiner, path):
                if wanted(line):
                    yield shown(line)
    finally:
        source.close()


def _finish(source: _LogFile, joiner: _Joiner, path: Path) -> list[LogLine]:
    """What is left at the end: an unterminated last line, unfinished partials."""
    out: list[LogLine] = []
    rest = source.leftover()
    if rest:
        for record in _records(iter([rest]), path):
            line = joiner.add(record)
            if line is not None:
                out.append(line)
    return out + joiner.unfinished()


def _follow(
    source: _LogFile,
    joiner: _Joiner,
    until_ns: int | None,
    is_running: Callable[[], bool] | None,
) -> Iterator[LogLine]:
    directory = source.path.parent
    try:
        watch: DirectoryWatch | None = DirectoryWatch(
            directory, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
        )
    except OSError:
        watch = None
    delay = 0.001
    try:
        while True:
            got = False
            for record in _records(source.lines(), source.path):
                line = joiner.add(record)
                if line is None:
                    continue
                got = True
                if until_ns is not None and line.time_ns > until_ns:
                    return
                yield line
            if source.replaced():
                # drain the old file (done above), then read the new one from its start
                source.reopen()
                continue
            running = is_running() if is_running is not None else True
            if not running:
                # the container is gone: conmon has written everything it will
                while True:
                    for record in _records(source.lines(), source.path):
                        line = joiner.add(record)
                        if line is not None and (until_ns is None or line.time_ns <= until_ns):
                            yield line
                    if not source.replaced():
                        return
                    source.reopen()
            if until_ns is not None and time.time_ns() > until_ns:
                return
            if watch is not None and not watch.gone:
                watch.wait(_FOLLOW_MAX_WAIT)
                watch.read()
            else:
                delay = 0.001 if got else min(delay * 2, _FOLLOW_MAX_WAIT)
                time.sleep(delay)
    finally:
        if watch is not None:
            watch.close()
