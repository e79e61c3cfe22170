"""skiff.runtime.cgroups and stats parsers over recorded kernel text (no cgroupfs needed).

The mountinfo and /proc/PID/cgroup samples are this host's (cgroup v1
with a cgroup2 mount at /sys/fs/cgroup/unified), a unified v2 host's, and a
cgroup namespace's, where the hierarchy is mounted from a sub-directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.errors import ContainerError
from skiff.runtime import cgroups
from skiff.runtime.stats import parse_net_dev

HYBRID = """\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

COMOUNTED = """\
31 23 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
99 35 0:32 / /mnt/memory\\040copy rw - cgroup cgroup rw,memory
"""

UNIFIED = """\
26 23 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""

PROC_HYBRID = """\
9:name=systemd:/libpod_parent/libpod-768804
8:pids:/libpod_parent/libpod-768804
4:memory:/process_api/4baa/x
2:cpuacct:/libpod_parent/libpod-768804
0::/libpod_parent/libpod-768804
"""


def test_hybrid_host_is_v1_and_ignores_the_unified_mount() -> None:
    mounts = cgroups.CgroupMounts.parse(HYBRID)
    assert mounts.version == 1
    assert set(mounts.v1) == {"cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "name=systemd"}
    assert mounts.unified is not None and mounts.unified.mountpoint == Path(
        "/sys/fs/cgroup/unified"
    )
    assert len(mounts.v1_mounts()) == 7


def test_comounted_controllers_and_cgroup_namespace_roots() -> None:
    mounts = cgroups.CgroupMounts.parse(COMOUNTED)
    assert mounts.v1["cpu"] is mounts.v1["cpuacct"]
    assert mounts.v1["cpu"].mountpoint == Path("/sys/fs/cgroup/cpu,cpuacct")
    memory = mounts.v1["memory"]
    assert memory.mountpoint == Path("/sys/fs/cgroup/memory")  # preferred over /mnt
    # paths under the mount's root are relative to it; others are taken as given
    assert memory.directory("/docker/abc/sub") == Path("/sys/fs/cgroup/memory/sub")
    assert memory.directory("/docker/abc") == Path("/sys/fs/cgroup/memory")
    assert memory.directory("/other") == Path("/sys/fs/cgroup/memory/other")
    assert cgroups.CgroupMounts.parse(
        "99 35 0:32 / /mnt/memory\\040copy rw - cgroup cgroup rw,memory\n"
    ).v1["memory"].mountpoint == Path("/mnt/memory copy")


def test_unified_host() -> None:
    mounts = cgroups.CgroupMounts.parse(UNIFIED)
    assert mounts.version == 2 and mounts.v1 == {}
    cg = cgroups.cgroup_at("/skiff/abc", mounts)
    assert cg.dir("memory") == cg.dir("pids") == Path("/sys/fs/cgroup/skiff/abc")
    assert cg.any_dir() == Path("/sys/fs/cgroup/skiff/abc")


def test_proc_cgroup_lines() -> None:
    paths = cgroups.parse_proc_cgroup(PROC_HYBRID + "4:cpu,cpuacct:/x\ngarbage\n")
    assert paths["pids"] == "/libpod_parent/libpod-768804"
    assert paths["memory"] == "/process_api/4baa/x"
    assert paths["name=systemd"] == "/libpod_parent/libpod-768804"
    assert paths[cgroups.UNIFIED] == "/libpod_parent/libpod-768804"
    assert paths["cpu"] == paths["cpuacct"] == "/x"


def test_cgroup_at_maps_one_path_into_every_hierarchy() -> None:
    cg = cgroups.cgroup_at("/skiff/abc", cgroups.CgroupMounts.parse(HYBRID))
    assert cg.version == 1
    assert cg.dir("memory") == Path("/sys/fs/cgroup/memory/skiff/abc")
    assert cg.dir("cpuacct") == Path("/sys/fs/cgroup/cpuacct/skiff/abc")
    assert cg.dir("hugetlb") is None
    assert cg.any_dir() == Path("/sys/fs/cgroup/pids/skiff/abc")


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ("machine.slice:libpod:abc", "/machine.slice/libpod-abc.scope"),
        ("a-b-c.slice:skiff:x", "/a.slice/a-b.slice/a-b-c.slice/skiff-x.scope"),
        ("-.slice:skiff:x", "/skiff-x.scope"),
        (":skiff:x", "/skiff-x.scope"),
        ("system.slice::unit.scope", "/system.slice/unit.scope"),
    ],
)
def test_systemd_cgroup_paths(spec: str, path: str) -> None:
    assert cgroups.systemd_cgroup_path(spec) == path


@pytest.mark.parametrize("spec", ["nope.service:a:b", "a--b.slice:x:y", "a/b.slice:x:y", "a:b"])
def test_bad_systemd_paths_and_relative_paths_are_refused(spec: str) -> None:
    with pytest.raises(ContainerError):
        cgroups.cgroup_at(spec, cgroups.CgroupMounts.parse(HYBRID))


def test_blkio_v1_sums_reads_and_writes_of_all_devices() -> None:
    text = (
        "254:0 Read 4096\n254:0 Write 1048576\n254:0 Sync 1048576\n254:0 Async 0\n"
        "254:0 Discard 0\n254:0 Total 1052672\n8:0 Read 10\n8:0 Write 0\nTotal 1052682\n"
    )
    assert cgroups.parse_blkio_v1(text) == cgroups.BlockIO(4106, 1048576)
    assert cgroups.parse_blkio_v1("Total 0\n") == cgroups.BlockIO(0, 0)


def test_io_stat_v2() -> None:
    text = (
        "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
        "8:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n"
    )
    assert cgroups.parse_io_stat(text) == cgroups.BlockIO(4097, 8194)


def test_net_dev() -> None:
    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
        "    lo:    5208      52    0    0    0     0          0         0     5208      52    0    0    0     0       0          0\n"
        "  eth0:12345678901 10    0    0    0     0          0         0      900       9    0    0    0     0       0          0\n"
    )
    assert parse_net_dev(text) == {"lo": (5208, 5208), "eth0": (12345678901, 900)}
    with pytest.raises(ValueError):
        parse_net_dev(text.splitlines()[0] + "\n\n  eth0: 1 2 3\n")
