"""Capabilities and seccomp conversion (pure logic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import ConfigError, UsageError
from skiff.runtime.specgen import capabilities as caps
from skiff.runtime.specgen.seccomp import convert, load_profile, native_arches

ALL = frozenset(caps.CAPABILITIES)
NO_SYS_RESOURCE = ALL - {"CAP_SYS_RESOURCE"}
DEBIAN_PROFILE = Path("/usr/share/containers/seccomp.json")

# --- capabilities ----------------------------------------------------------------------


def test_capability_numbers_match_the_kernel_header() -> None:
    assert caps.CAPABILITIES.index("CAP_SYS_ADMIN") == 21
    assert caps.CAPABILITIES.index("CAP_SYS_RESOURCE") == 24
    assert caps.CAPABILITIES.index("CAP_CHECKPOINT_RESTORE") == 40
    assert caps.from_mask(0x800405FB) == set(caps.DEFAULT_CAPABILITIES)


@pytest.mark.parametrize("name", ["net_admin", "NET_ADMIN", "cap_net_admin", " Cap_Net_Admin "])
def test_normalize(name: str) -> None:
    assert caps.normalize(name) == "CAP_NET_ADMIN"


def test_normalize_unknown() -> None:
    with pytest.raises(UsageError, match="unknown capability 'frobnicate'"):
        caps.normalize("frobnicate")


def test_merge() -> None:
    base = list(caps.DEFAULT_CAPABILITIES)
    merged = caps.merge(base, ["net_raw"], ["chown", "kill"], ALL)
    assert "CAP_NET_RAW" in merged and "CAP_CHOWN" not in merged and "CAP_KILL" not in merged
    assert merged == sorted(merged)
    assert caps.merge(base, ["net_admin"], ["all"], ALL) == ["CAP_NET_ADMIN"]
    assert caps.merge(base, [], ["ALL"], ALL) == []
    assert caps.merge(base, ["all"], ["mknod"], NO_SYS_RESOURCE) == sorted(
        NO_SYS_RESOURCE - {"CAP_MKNOD"}
    )


@pytest.mark.parametrize(
    ("add", "drop", "message"),
    [
        (["ALL"], ["all"], "adding all capabilities and dropping all"),
        (["chown"], ["CAP_CHOWN"], "both added and dropped"),
        (["sys_resource"], [], "skiff itself does not hold it"),
    ],
)
def test_merge_errors(add: list[str], drop: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        caps.merge(caps.DEFAULT_CAPABILITIES, add, drop, NO_SYS_RESOURCE)


def test_sets_for_root() -> None:
    sets = caps.capability_sets(privileged=False, cap_add=[], cap_drop=[], uid=0, available=ALL)
    assert sets.bounding == sets.effective == sets.permitted == sorted(caps.DEFAULT_CAPABILITIES)
    assert sets.inheritable == sets.ambient == []
    assert set(sets.to_json()) == {"bounding", "effective", "permitted"}


def test_sets_for_other_users() -> None:
    plain = caps.capability_sets(privileged=False, cap_add=[], cap_drop=[], uid=1000, available=ALL)
    assert plain.bounding == sorted(caps.DEFAULT_CAPABILITIES)
    assert plain.effective == plain.permitted == plain.inheritable == plain.ambient == []
    added = caps.capability_sets(
        privileged=False, cap_add=["net_admin"], cap_drop=[], uid=1000, available=ALL
    )
    for s in (added.effective, added.permitted, added.inheritable, added.ambient):
        assert s == ["CAP_NET_ADMIN"]
    assert added.to_json()["ambient"] == ["CAP_NET_ADMIN"]


def test_privileged_gets_what_skiff_holds() -> None:
    sets = caps.capability_sets(
        privileged=True, cap_add=[], cap_drop=["sys_admin"], uid=0, available=NO_SYS_RESOURCE
    )
    assert set(sets.bounding) == NO_SYS_RESOURCE - {"CAP_SYS_ADMIN"}


def test_defaults_are_debians_containers_conf() -> None:
    import tomllib

    conf = Path("/usr/share/containers/containers.conf")
    if not conf.exists():
        pytest.skip("golang-github-containers-common is not installed")
    listed = tomllib.loads(conf.read_text())["containers"]["default_capabilities"]
    assert sorted(caps.normalize(c) for c in listed) == sorted(caps.DEFAULT_CAPABILITIES)


# --- seccomp -------------------------------------------------------------------------------


def rule(names: list[str], action: str = "SCMP_ACT_ALLOW", **extra: Any) -> dict[str, Any]:
    return {"names": names, "action": action, **extra}


PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [
        {
            "architecture": "SCMP_ARCH_X86_64",
            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        },
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        rule(["read", "write"], comment="always", includes={}, excludes={}, args=[]),
        rule(["arch_prctl"], includes={"arches": ["amd64", "x32"]}),
        rule(["breakpoint"], includes={"arches": ["arm", "arm64"]}),
        rule(["bpf"], includes={"caps": ["CAP_SYS_ADMIN"]}),
        rule(
            ["bpf"],
            "SCMP_ACT_ERRNO",
            excludes={"caps": ["CAP_SYS_ADMIN"]},
            errnoRet=1,
            errno="EPERM",
        ),
        rule(["new_call"], includes={"minKernel": "6.2"}),
        rule(["not_on_amd64"], excludes={"arches": ["amd64"]}),
        rule(
            ["personality"],
            args=[{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        ),
        rule(
            ["masked"], args=[{"index": 1, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]
        ),
        {"name": "legacy", "action": "SCMP_ACT_ALLOW"},
    ],
}


def names(converted: dict[str, Any]) -> list[list[str]]:
    return [r["names"] for r in converted["syscalls"]]


def test_convert_amd64_without_caps() -> None:
    out = convert(PROFILE, caps=[], machine="x86_64", kernel=(6, 1))
    assert out["defaultAction"] == "SCMP_ACT_ERRNO" and out["defaultErrnoRet"] == 38
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert names(out) == [
        ["read", "write"],
        ["arch_prctl"],
        ["bpf"],
        ["personality"],
        ["masked"],
        ["legacy"],
    ]
    bpf = out["syscalls"][2]
    assert bpf == {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    assert out["syscalls"][3]["args"] == [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]
    assert out["syscalls"][4]["args"] == [
        {"index": 1, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    assert "comment" not in out["syscalls"][0] and "args" not in out["syscalls"][0]


def test_convert_with_caps_newer_kernel_and_arm64() -> None:
    out = convert(PROFILE, caps=["CAP_SYS_ADMIN"], machine="aarch64", kernel=(6, 2))
    assert out["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert ["breakpoint"] in names(out) and ["arch_prctl"] not in names(out)
    assert ["not_on_amd64"] in names(out) and ["new_call"] in names(out)
    bpf = [r for r in out["syscalls"] if r["names"] == ["bpf"]]
    assert bpf == [{"names": ["bpf"], "action": "SCMP_ACT_ALLOW"}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"defaultAction": "SCMP_ACT_NOPE"}, "invalid defaultAction"),
        ({"architectures": ["SCMP_ARCH_X86_64"]}, "both 'architectures' and 'archMap'"),
        ({"syscalls": [rule(["x"], "BOGUS")]}, "unknown action"),
        ({"syscalls": [rule([])]}, "no syscall names"),
        (
            {"syscalls": [rule(["x"], args=[{"index": 0, "value": 1, "op": "LIKE"}])]},
            "unknown operator",
        ),
        ({"syscalls": [rule(["x"], includes={"minKernel": "six"})]}, "invalid minKernel"),
        ({"syscalls": [rule(["x"], includes={"caps": "CAP_X"})]}, "not a list of strings"),
        ({"syscalls": "all"}, "'syscalls' is not a list"),
    ],
)
def test_convert_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        convert({**PROFILE, **change}, caps=[], machine="x86_64")


def test_unsupported_arch() -> None:
    with pytest.raises(ConfigError, match="unsupported architecture"):
        native_arches("vax")


def test_oci_profile_passes_through() -> None:
    oci = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    assert convert(oci, caps=[], machine="x86_64") == oci


def test_load_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_profile(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_profile(tmp_path / "list.json")


@pytest.mark.skipif(not DEBIAN_PROFILE.exists(), reason="golang-github-containers-common missing")
def test_debian_profile_converts_for_default_caps() -> None:
    out = convert(
        load_profile(DEBIAN_PROFILE),
        caps=caps.DEFAULT_CAPABILITIES,
        machine="x86_64",
        kernel=(6, 1),
    )
    allowed = {
        n
        for r in out["syscalls"]
        if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
        for n in r["names"]
    }
    denied = {n for r in out["syscalls"] if r["action"] == "SCMP_ACT_ERRNO" for n in r["names"]}
    assert "chroot" in allowed  # CAP_SYS_CHROOT is a default
    assert {"bpf", "perf_event_open", "open_by_handle_at", "swapoff"} <= denied
    assert "read" in allowed and "arch_prctl" in allowed
    json.dumps(out)  # serialisable as it goes into config.json
