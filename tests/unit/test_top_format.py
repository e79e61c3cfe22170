"""skiff.runtime.top's pure parts: descriptors, Go durations and times, ttys, capabilities.

Expected strings are what podman 4.3.1 (psgo) printed for the same values
on this host: ``podman top CTR time pcpu etime stime`` gave ``1m41s``,
``90.862``, ``1m51.158131848s``, ``2026-11-28 21:00:16 +0000 UTC``.
"""

from __future__ import annotations

import pytest

from skiff.errors import UsageError
from skiff.gotemplate.duration import go_duration
from skiff.runtime import top
from skiff.runtime.specgen.capabilities import CAPABILITIES


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1500, "1.5µs"),
        (177_986_355, "177.986355ms"),
        (1_000_000, "1ms"),
        (1_000_000_000, "1s"),
        (2_338_399_627, "2.338399627s"),
        (101_000_000_000, "1m41s"),
        (111_158_131_848, "1m51.158131848s"),
        (60_000_000_000, "1m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_661_500_000_000, "1h1m1.5s"),
        (-1_500_000_000, "-1.5s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_go_time_is_local_time_as_go_prints_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        # 2026-11-28 21:00:16 UTC, as podman top's STIME printed it
        assert top._go_time(1795899616) == "2026-11-28 21:00:16 +0000 UTC"
        monkeypatch.setenv("TZ", "Europe/Berlin")
        time.tzset()
        assert top._go_time(1795899616) == "2026-11-28 22:00:16 +0100 CET"
        monkeypatch.setenv("TZ", "<+0530>-5:30")
        time.tzset()
        # a zone without a name: Go prints the offset twice
        assert top._go_time(1795899616) == "2026-11-29 02:30:16 +0530 +0530"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def names(descs: list[top.Descriptor]) -> list[str]:
    return [d.normal for d in descs]


def test_default_descriptors_are_psgos() -> None:
    chosen = top.parse_descriptors([])
    assert names(chosen) == ["user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args"]
    assert [d.header for d in chosen] == [
        "USER",
        "PID",
        "PPID",
        "%CPU",
        "ELAPSED",
        "TTY",
        "TIME",
        "COMMAND",
    ]
    assert names(top.parse_descriptors(["", " , "])) == names(chosen)


def test_descriptors_comma_separated_codes_and_spaces() -> None:
    # podman top CTR pid,user  ==  podman top CTR %p ' user '
    assert names(top.parse_descriptors(["pid,user"])) == ["pid", "user"]
    assert names(top.parse_descriptors(["%p", " user "])) == ["pid", "user"]
    assert names(top.parse_descriptors(["%C", "%G", "%U"])) == ["pcpu", "group", "user"]
    codes = {d.code: d.normal for d in top.DESCRIPTORS if d.code}
    assert codes == {
        "%C": "pcpu",
        "%G": "group",
        "%P": "ppid",
        "%U": "user",
        "%a": "args",
        "%c": "comm",
        "%g": "rgroup",
        "%n": "nice",
        "%p": "pid",
        "%r": "pgid",
        "%t": "etime",
        "%u": "ruser",
        "%x": "time",
        "%y": "tty",
        "%z": "vsz",
    }


def test_headers_are_psgos() -> None:
    headers = {d.normal: d.header for d in top.DESCRIPTORS}
    assert headers["comm"] == headers["args"] == "COMMAND"
    assert headers["nice"] == "NI"
    assert headers["etime"] == "ELAPSED"
    assert headers["capbnd"] == "BOUNDING CAPS"
    assert headers["hgroups"] == "HGROUPS"


def test_unknown_descriptor_is_a_usage_error_listing_the_known_ones() -> None:
    with pytest.raises(UsageError) as info:
        top.parse_descriptors(["pid", "nosuch"])
    assert "'nosuch'" in info.value.message
    assert info.value.hint is not None
    assert "pcpu" in info.value.hint
    assert "vsz" in info.value.hint
    assert top.list_descriptors() == sorted(top.list_descriptors())


@pytest.mark.parametrize(
    ("major", "minor", "name"),
    [
        (0, 0, "?"),
        (136, 0, "pts/0"),
        (136, 5, "pts/5"),
        (137, 1, "pts/257"),
        (136, 300, "pts/300"),
        (4, 1, "tty1"),
        (4, 64, "ttyS0"),
        (5, 1, "console"),
        (5, 0, "tty"),
        (8, 1, "?"),
    ],
)
def test_tty_names(major: int, minor: int, name: str) -> None:
    # /proc/PID/stat's tty_nr encodes the minor as bits 0-7 and 20-31
    tty_nr = (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)
    assert top._tty(tty_nr) == name


def test_capability_sets() -> None:
    full = (1 << len(CAPABILITIES)) - 1
    assert top._caps(f"{full:016x}") == "full"
    assert top._caps("0000000000000000") == "none"
    # podman's default set, as podman top CTR capbnd printed it
    assert (
        top._caps("00000000800405fb")
        == "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,NET_BIND_SERVICE,SETFCAP,SETGID,SETPCAP,SETUID,SYS_CHROOT"
    )


def test_id_maps() -> None:
    text = "         0       1000          1\n         1     100000      65536\n"
    assert top._parse_id_map(text) == [(0, 1000, 1), (1, 100000, 65536)]
    assert top._parse_id_map("") == []


def test_user_and_group_databases() -> None:
    passwd = b"root:x:0:0:root:/root:/bin/sh\nalice:x:4321:4322::/:/bin/sh\nalias:x:4321:1::/:\nbad line\n"
    assert top._names(passwd, group=False) == {0: "root", 4321: "alice"}
    group = b"team:x:4322:\nextra:x:4323:alice\n"
    assert top._names(group, group=True) == {4322: "team", 4323: "extra"}
    assert top._names(None, group=True) == {}
