"""k8s-file/CRI log parsing, filtering and following, on real files."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from skiff.errors import UsageError
from skiff.runtime.logs import (
    LogLine,
    format_log_record,
    format_timestamp,
    parse_log_record,
    parse_time_filter,
    parse_timestamp,
    read_logs,
    rfc3339nano,
    to_ns,
)

NS = 1_000_000_000
T0 = 1_704_207_845 * NS  # 2024-01-02T15:04:05Z
UTC_TZ = UTC


def rec(offset_ms: int, stream: str, message: bytes, partial: bool = False) -> bytes:
    return format_log_record(
        T0 + offset_ms * 1_000_000, stream, message, partial=partial, tz=UTC_TZ
    )


def write(path: Path, *records: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(records))


def messages(lines: list[LogLine]) -> list[tuple[str, bytes]]:
    return [(line.stream, line.message) for line in lines]


# --- parsing ---------------------------------------------------------------------------


def test_parse_k8s_file_line_as_conmon_writes_it() -> None:
    r = parse_log_record(b"2024-01-02T15:04:05.123456789+00:00 stdout F hello world\n")
    assert r.time_ns == T0 + 123_456_789
    assert r.time_text == "2024-01-02T15:04:05.123456789+00:00"
    assert (r.stream, r.partial, r.message) == ("stdout", False, b"hello world")


def test_parse_cri_line_with_z_and_extra_tags() -> None:
    r = parse_log_record(b"2024-01-02T15:04:05.5Z stderr P:x:y  two spaces kept\n")
    assert r.time_ns == T0 + 500_000_000
    assert (r.stream, r.partial, r.message) == ("stderr", True, b" two spaces kept")


def test_parse_offsets_and_empty_messages() -> None:
    plus_two = parse_log_record(b"2024-01-02T17:04:05.000000001+02:00 stdout F \n")
    assert plus_two.time_ns == T0 + 1
    assert plus_two.message == b""
    assert parse_log_record(b"2024-01-02T15:04:05Z stdout F").message == b""
    assert parse_log_record(b"2024-01-02T10:04:05-05:00 stdout F x").time_ns == T0


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"garbage\n",
        b"2024-01-02T15:04:05Z stdin F x\n",
        b"2024-01-02T15:04:05Z stdout X x\n",
        b"2024-01-02 15:04:05Z stdout F x\n",
        b"2024-01-02T15:04:05 stdout F x\n",
    ],
)
def test_malformed_lines_are_rejected(line: bytes) -> None:
    with pytest.raises(ValueError):
        parse_log_record(line)


def test_format_round_trips_with_nanoseconds() -> None:
    raw = format_log_record(T0 + 7, "stderr", b"msg", partial=True, tz=UTC_TZ)
    assert raw == b"2024-01-02T15:04:05.000000007+00:00 stderr P msg\n"
    back = parse_log_record(raw)
    assert (back.time_ns, back.stream, back.partial, back.message) == (
        T0 + 7,
        "stderr",
        True,
        b"msg",
    )
    with pytest.raises(ValueError):
        format_log_record(T0, "stdout", b"two\nlines")


def test_local_timestamps_have_a_colon_offset() -> None:
    text = format_timestamp(T0)
    ns, dt = parse_timestamp(text)
    assert ns == T0
    assert text[-3] == ":"
    assert dt.utcoffset() is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T15:04:05.051091676+00:00", "2024-01-02T15:04:05.051091676Z"),
        ("2024-01-02T15:04:05.051091600+00:00", "2024-01-02T15:04:05.0510916Z"),
        ("2024-01-02T15:04:05.000000000+00:00", "2024-01-02T15:04:05Z"),
        ("2024-01-02T15:04:05.5-05:30", "2024-01-02T15:04:05.5-05:30"),
        ("2024-01-02T15:04:05.120Z", "2024-01-02T15:04:05.12Z"),
    ],
)
def test_rfc3339nano_as_go_prints_it(text: str, expected: str) -> None:
    assert rfc3339nano(text) == expected


def test_to_ns_of_datetimes() -> None:
    assert to_ns(datetime(2024, 1, 2, 15, 4, 5, 250000, tzinfo=UTC)) == T0 + 250_000_000
    assert to_ns(datetime(2024, 1, 2, 16, 4, 5, tzinfo=timezone(timedelta(hours=1)))) == T0
    assert to_ns(T0 + 3) == T0 + 3


# --- time filters ----------------------------------------------------------------------


def test_parse_time_filter_forms() -> None:
    now = T0
    assert parse_time_filter("10m", now) == T0 - 600 * NS
    assert parse_time_filter("1h30m", now) == T0 - 5400 * NS
    assert parse_time_filter("1.5s", now) == T0 - 1_500_000_000
    assert parse_time_filter("250ms", now) == T0 - 250_000_000
    assert parse_time_filter("1704207845", now) == T0
    assert parse_time_filter("1704207845.000000042", now) == T0 + 42
    assert parse_time_filter("2024-01-02T15:04:05.5Z", now) == T0 + 500_000_000
    assert parse_time_filter("2024-01-02T16:04:05+01:00", now) == T0
    local = datetime(2024, 1, 2, 15, 4, 5).astimezone()
    assert parse_time_filter("2024-01-02T15:04:05", now) == to_ns(local)
    assert parse_time_filter("2024-01-02", now) == to_ns(datetime(2024, 1, 2).astimezone())


@pytest.mark.parametrize("text", ["", "yesterday", "10 minutes", "2024-13-45", "5d"])
def test_parse_time_filter_rejects_nonsense(text: str) -> None:
    with pytest.raises(UsageError):
        parse_time_filter(text, T0)


# --- reading ---------------------------------------------------------------------------


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "ctr.log"
    write(
        path,
        rec(0, "stdout", b"one"),
        rec(10, "stderr", b"err-a", partial=True),
        rec(20, "stdout", b"tw", partial=True),
        rec(30, "stderr", b"-b"),
        rec(40, "stdout", b"o"),
        rec(50, "stdout", b""),
        rec(60, "stdout", b"three"),
        rec(70, "stdout", b"unfinis", partial=True),
        rec(80, "stdout", b"hed", partial=True),
    )
    return path


def test_partial_chunks_are_joined_per_stream(log_file: Path) -> None:
    lines = list(read_logs(log_file))
    assert messages(lines) == [
        ("stdout", b"one"),
        ("stderr", b"err-a-b"),
        ("stdout", b"two"),
        ("stdout", b""),
        ("stdout", b"three"),
        ("stdout", b"unfinished"),
    ]
    assert [line.partial for line in lines] == [False] * 5 + [True]
    # a joined line carries the time of its first chunk
    assert lines[1].time_ns == T0 + 10 * 1_000_000
    assert lines[2].time_ns == T0 + 20 * 1_000_000
    assert lines[2].time == datetime(2024, 1, 2, 15, 4, 5, 20000, tzinfo=UTC)
    assert b"".join(line.render() for line in lines) == (b"one\nerr-a-b\ntwo\n\nthree\nunfinished")


def test_tail(log_file: Path) -> None:
    assert messages(list(read_logs(log_file, tail=2))) == [
        ("stdout", b"three"),
        ("stdout", b"unfinished"),
    ]
    assert list(read_logs(log_file, tail=0)) == []
    assert len(list(read_logs(log_file, tail=100))) == 6


def test_since_and_until_are_inclusive_and_exact(log_file: Path) -> None:
    ms = 1_000_000
    assert messages(list(read_logs(log_file, since=T0 + 20 * ms))) == [
        ("stdout", b"two"),
        ("stdout", b""),
        ("stdout", b"three"),
        ("stdout", b"unfinished"),
    ]
    assert messages(list(read_logs(log_file, since=T0 + 20 * ms + 1, until=T0 + 60 * ms))) == [
        ("stdout", b""),
        ("stdout", b"three"),
    ]
    since = datetime(2024, 1, 2, 15, 4, 5, 60000, tzinfo=UTC)
    assert messages(list(read_logs(log_file, since=since))) == [
        ("stdout", b"three"),
        ("stdout", b"unfinished"),
    ]


def test_tail_is_taken_before_since_as_podman_does(log_file: Path) -> None:
    ms = 1_000_000
    lines = list(read_logs(log_file, tail=3, since=T0 + 55 * ms))
    assert messages(lines) == [("stdout", b"three"), ("stdout", b"unfinished")]


def test_timestamps_prefix_the_rendered_line(log_file: Path) -> None:
    first = next(read_logs(log_file, timestamps=True))
    assert first.time_text == "2024-01-02T15:04:05.000000000+00:00"
    assert first.render() == b"2024-01-02T15:04:05Z one\n"  # as podman prints it
    assert next(read_logs(log_file)).render() == b"one\n"


def test_malformed_lines_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ctr.log"
    write(path, rec(0, "stdout", b"a"), b"broken line\n", rec(1, "stdout", b"b"))
    with caplog.at_level(logging.WARNING, logger="skiff.runtime.logs"):
        assert messages(list(read_logs(path))) == [("stdout", b"a"), ("stdout", b"b")]
    assert "malformed" in caplog.text


def test_a_cut_off_last_line_still_counts(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    write(path, rec(0, "stdout", b"a"), rec(1, "stdout", b"b")[:-1])
    assert messages(list(read_logs(path))) == [("stdout", b"a"), ("stdout", b"b")]


def test_missing_log_reads_as_empty(tmp_path: Path) -> None:
    assert list(read_logs(tmp_path / "nope.log")) == []


def test_negative_tail_is_a_usage_error(log_file: Path) -> None:
    with pytest.raises(UsageError):
        list(read_logs(log_file, tail=-1))


def test_large_log_with_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    chunk = b"x" * 8192
    with open(path, "wb") as f:
        for i in range(200):
            f.write(rec(i, "stdout", chunk, partial=True))
            f.write(rec(i, "stdout", b"%d" % i))
    lines = list(read_logs(path))
    assert len(lines) == 200
    assert lines[-1].message == chunk + b"199"
    assert [line.message for line in read_logs(path, tail=1)] == [chunk + b"199"]


# --- following -------------------------------------------------------------------------


class Scripted:
    """A writer that performs one step each time the reader asks whether the
    container still runs (the reader asks right before it waits), from
    another thread, so the reader really waits for the change."""

    def __init__(self, steps: list[Callable[[], None]]) -> None:
        self.steps = list(steps)
        self.threads: list[threading.Thread] = []

    def is_running(self) -> bool:
        if not self.steps:
            self.join()  # the container's last write happens before it ends
            return False
        step = self.steps.pop(0)
        self.join()  # one write after the other, as a container makes them
        thread = threading.Thread(target=step)
        thread.start()
        self.threads.append(thread)
        return True

    def join(self) -> None:
        for thread in self.threads:
            thread.join(5)


def test_follow_sees_appends_and_ends_when_the_container_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    write(path, rec(0, "stdout", b"first"))
    script = Scripted(
        [
            lambda: write(path, rec(1, "stdout", b"sec", partial=True)),
            lambda: write(path, rec(2, "stdout", b"ond")),
            lambda: write(path, rec(3, "stderr", b"third")),
        ]
    )
    lines = list(read_logs(path, follow=True, is_running=script.is_running))
    script.join()
    assert messages(lines) == [
        ("stdout", b"first"),
        ("stdout", b"second"),
        ("stderr", b"third"),
    ]


def test_follow_after_tail_starts_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    write(path, rec(0, "stdout", b"old1"), rec(1, "stdout", b"old2"))
    script = Scripted([lambda: write(path, rec(2, "stdout", b"new"))])
    lines = list(read_logs(path, tail=0, follow=True, is_running=script.is_running))
    script.join()
    assert messages(lines) == [("stdout", b"new")]


def test_follow_survives_log_replacement(tmp_path: Path) -> None:
    """conmon's --log-size-max renames a fresh file over the log."""
    path = tmp_path / "ctr.log"
    write(path, rec(0, "stdout", b"before"))

    def rotate() -> None:
        write(path, rec(1, "stdout", b"last of old"))
        fresh = tmp_path / "ctr.log.tmp"
        write(fresh, rec(2, "stdout", b"first of new"))
        os.replace(fresh, path)

    script = Scripted([rotate, lambda: write(path, rec(3, "stdout", b"more"))])
    lines = list(read_logs(path, follow=True, is_running=script.is_running))
    script.join()
    assert messages(lines) == [
        ("stdout", b"before"),
        ("stdout", b"last of old"),
        ("stdout", b"first of new"),
        ("stdout", b"more"),
    ]


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    script = Scripted([lambda: None, lambda: write(path, rec(0, "stdout", b"hello"))])
    lines = list(read_logs(path, follow=True, is_running=script.is_running))
    script.join()
    assert messages(lines) == [("stdout", b"hello")]


def test_follow_stops_at_until(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    write(path, rec(0, "stdout", b"in"), rec(5000, "stdout", b"after until"))
    lines = list(read_logs(path, follow=True, until=T0 + NS, is_running=lambda: True))
    assert messages(lines) == [("stdout", b"in")]


def test_follow_emits_an_unfinished_line_when_the_container_ends(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    write(path, rec(0, "stdout", b"prompt> ", partial=True))
    lines = list(read_logs(path, follow=True, is_running=lambda: False))
    assert [(line.message, line.partial) for line in lines] == [(b"prompt> ", True)]
