"""stats and top against real processes in real cgroups (and podman, when installed).

Each test makes its own cgroup v1 directories ``skiff-test-<pid>-<n>``
below this process's own cgroup in the cpu, cpuacct, memory, pids and blkio
hierarchies (below its own so that the test's processes stay inside
whatever memory limit the test run has), starts processes that move
themselves into them before they exec the real program, sets limits, and
compares what skiff samples with what the test arranged. Network counters
are checked in two network namespaces joined by a veth pair (10.x
addresses inside the namespaces only). Teardown kills the processes and
removes the cgroups and namespaces, and fails if a cgroup cannot be
removed.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skiff.cli.statsview import format_stats
from skiff.errors import ContainerError, ContainerStateError
from skiff.runtime import cgroups
from skiff.runtime.stats import (
    StatsTarget,
    physical_memory,
    sample_stats,
    stats_report,
)
from skiff.runtime.top import top_rows
from skiff.testing.network import wait_for

BUSYBOX = "/bin/busybox"
CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "blkio")
WRAP = 'for f in $SKIFF_TEST_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@"'
_names = itertools.count()


def _mounts() -> cgroups.CgroupMounts | None:
    try:
        return cgroups.CgroupMounts.read()
    except ContainerError:
        return None


MOUNTS = _mounts()

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root"),
    pytest.mark.skipif(
        MOUNTS is None or MOUNTS.version != 1 or not all(c in MOUNTS.v1 for c in CONTROLLERS),
        reason="these tests build cgroup v1 hierarchies (cpu, cpuacct, memory, pids, blkio)",
    ),
]


# --- fixtures ---------------------------------------------------------------------------


@dataclass
class TestCgroup:
    """A cgroup of the test's own, in the hierarchies stats reads."""

    __test__ = False

    cgroup: cgroups.Cgroup
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def dirs(self) -> list[Path]:
        return sorted(set(self.cgroup.dirs.values()))

    def write(self, controller: str, name: str, value: str) -> None:
        directory = self.cgroup.dir(controller)
        assert directory is not None
        (directory / name).write_text(value)

    def read(self, controller: str, name: str) -> str:
        directory = self.cgroup.dir(controller)
        assert directory is not None
        return (directory / name).read_text()

    def spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the cgroup: a shell moves itself in, then execs it.

        A bare program name is looked up on PATH first: busybox's shell
        would run its own applet of that name (setpriv, unshare, nsenter).
        """
        if "/" not in argv[0]:
            found = shutil.which(argv[0])
            assert found is not None, f"{argv[0]} is not installed"
            argv = [found, *argv[1:]]
        procs = " ".join(str(d / "cgroup.procs") for d in self.dirs)
        env = {**os.environ, "SKIFF_TEST_PROCS": procs}
        proc = subprocess.Popen(  # type: ignore[call-overload]
            [BUSYBOX, "sh", "-c", WRAP, "wrap", *argv],
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
        self.processes.append(proc)
        wait_for(lambda: proc.pid in self.pids() or proc.poll() is not None, "the move")
        assert proc.poll() is None, f"{argv} exited with {proc.returncode}"
        return proc

    def pids(self) -> list[int]:
        return cgroups.cgroup_procs(self.cgroup)

    def target(self, proc: subprocess.Popen[bytes], **kwargs: object) -> StatsTarget:
        values: dict[str, object] = {
            "id": f"{proc.pid:064x}",
            "name": f"ctr-{proc.pid}",
            "pid": proc.pid,
            "started_at": time.time(),
        }
        values.update(kwargs)
        return StatsTarget(**values)  # type: ignore[arg-type]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _remove_dirs(dirs: list[Path]) -> None:
    for directory in dirs:
        if not directory.exists():
            continue

        def empty(d: Path = directory) -> bool:
            return not (d / "cgroup.procs").read_text().split()

        wait_for(empty, f"{directory} to empty")
        directory.rmdir()


@pytest.fixture
def make_cgroup() -> Iterator[Callable[[], TestCgroup]]:
    assert MOUNTS is not None
    made: list[TestCgroup] = []
    own = cgroups.parse_proc_cgroup(Path("/proc/self/cgroup").read_text())

    def make() -> TestCgroup:
        name = f"skiff-test-{os.getpid()}-{next(_names)}"
        dirs: dict[str, Path] = {}
        for controller in CONTROLLERS:
            mount = MOUNTS.v1[controller]
            directory = mount.directory(own[controller].rstrip("/") + "/" + name)
            if directory in dirs.values():
                continue  # co-mounted with a controller already done (cpu,cpuacct)
            directory.mkdir()
            for c in mount.controllers:
                dirs[c] = directory
        test_cgroup = TestCgroup(cgroups.Cgroup(1, dirs))
        made.append(test_cgroup)
        return test_cgroup

    try:
        yield make
    finally:
        for test_cgroup in made:
            for proc in test_cgroup.processes:
                _kill(proc)
        for test_cgroup in made:
            _remove_dirs(test_cgroup.dirs)


@pytest.fixture
def cg(make_cgroup: Callable[[], TestCgroup]) -> TestCgroup:
    return make_cgroup()


def _read_line(proc: subprocess.Popen[bytes], timeout: float = 30) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the process did not report in time"
    return proc.stdout.readline()


# --- memory -------------------------------------------------------------------------------

HOG = """
import signal
import sys
block = bytearray(32 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
sys.stdout.write("ready\\n")
sys.stdout.flush()
signal.pause()
"""


def test_memory_usage_limit_and_percent(cg: TestCgroup) -> None:
    cg.write("memory", "memory.limit_in_bytes", str(128 << 20))
    proc = cg.spawn([sys.executable, "-c", HOG], stdout=subprocess.PIPE)
    assert _read_line(proc) == b"ready\n"
    target = cg.target(proc)
    assert cgroups.cgroup_of_pid(proc.pid).dir("memory") == cg.cgroup.dir("memory")

    sample = sample_stats(target)
    assert sample.running
    assert 32 << 20 <= sample.mem_usage <= 128 << 20
    assert sample.mem_limit == 128 << 20
    file_usage = int(cg.read("memory", "memory.usage_in_bytes"))
    assert abs(file_usage - sample.mem_usage) < 4 << 20
    (record,) = stats_report(None, [sample])
    assert record["MemLimit"] == 128 << 20
    assert record["MemPerc"] == pytest.approx(sample.mem_usage / (128 << 20) * 100)
    table = format_stats([record], None)
    assert " / 134.2MB" in table.splitlines()[1]


def test_no_memory_limit_reports_the_machines_memory(cg: TestCgroup) -> None:
    proc = cg.spawn([BUSYBOX, "sleep", "1000"])
    sample = sample_stats(cg.target(proc))
    assert sample.mem_limit is None
    (record,) = stats_report(None, [sample])
    mem_total_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert record["MemLimit"] == physical_memory() == mem_total_kib * 1024


# --- CPU and pids -------------------------------------------------------------------------


def _cpu_percent(target: StatsTarget, interval: float = 0.5) -> dict[str, object]:
    before = sample_stats(target)
    time.sleep(interval)  # the measuring interval, as ``stats --interval``
    after = sample_stats(target)
    (record,) = stats_report([before], [after])
    assert isinstance(record["CPUNano"], int) and record["CPUNano"] >= before.cpu_ns
    return record


def test_cpu_percent_of_a_busy_loop(cg: TestCgroup) -> None:
    proc = cg.spawn([BUSYBOX, "sh", "-c", "while :; do :; done"])
    target = cg.target(proc)
    # a loaded 2-core machine may starve the loop for one interval; five tries
    records = []
    for _ in range(5):
        records.append(_cpu_percent(target))
        if float(records[-1]["CPU"]) > 50:  # type: ignore[arg-type]
            break
    record = records[-1]
    assert float(record["CPU"]) > 50, [r["CPU"] for r in records]  # type: ignore[arg-type]
    assert float(record["CPU"]) < 110  # one thread cannot use more than one CPU
    assert float(record["AvgCPU"]) > 0  # type: ignore[arg-type]
    assert 0 <= int(record["CPUSystemNano"]) <= int(record["CPUNano"])  # type: ignore[call-overload]
    per_cpu = record["PerCPU"]
    assert isinstance(per_cpu, list) and len(per_cpu) >= 1
    assert abs(sum(per_cpu) - int(record["CPUNano"])) < 50_000_000  # type: ignore[call-overload]
    assert record["UpTime"] == record["CPUNano"]


def test_cpu_percent_of_a_sleeper_is_near_zero(cg: TestCgroup) -> None:
    proc = cg.spawn([BUSYBOX, "sleep", "1000"])
    record = _cpu_percent(cg.target(proc))
    assert float(record["CPU"]) < 5  # type: ignore[arg-type]


def test_pids_current_and_limit(cg: TestCgroup) -> None:
    cg.write("pids", "pids.max", "10")
    proc = cg.spawn(
        [BUSYBOX, "sh", "-c", "busybox sleep 1000 & busybox sleep 1000 & exec busybox sleep 1000"]
    )
    wait_for(lambda: len(cg.pids()) == 3, "three processes")
    sample = sample_stats(cg.target(proc))
    assert sample.pids == 3
    assert sample.pids_limit == 10
    assert proc.pid in cg.pids()
    (record,) = stats_report(None, [sample])
    assert record["PIDs"] == 3


# --- block I/O ------------------------------------------------------------------------------


def _whole_disk(path: Path) -> str | None:
    """MAJ:MIN of the disk holding ``path`` (throttle rules take disks, not partitions)."""
    dev = os.stat(path).st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not sysfs.exists():
        return None
    if (sysfs / "partition").exists():
        return (sysfs.resolve().parent / "dev").read_text().strip()
    return (sysfs / "dev").read_text().strip()


def test_block_io_of_direct_writes_and_reads(cg: TestCgroup) -> None:
    scratch = Path("/var/tmp")
    disk = _whole_disk(scratch)
    if disk is None:
        pytest.skip("/var/tmp is not on a block device")
    # since Linux 5.x blk-throttle only accounts devices with a rule: a rule that never limits
    cg.write("blkio", "blkio.throttle.write_bps_device", f"{disk} 1099511627776")
    cg.write("blkio", "blkio.throttle.read_bps_device", f"{disk} 1099511627776")
    data = scratch / f"skiff-blkio-test-{os.getpid()}"
    script = (
        f"/bin/dd if=/dev/zero of={data} bs=64k count=16 oflag=direct 2>/dev/null && "
        f"/bin/dd if={data} of=/dev/null bs=64k iflag=direct 2>/dev/null && "
        "echo done && exec busybox sleep 1000"
    )
    try:
        proc = cg.spawn([BUSYBOX, "sh", "-c", script], stdout=subprocess.PIPE)
        assert _read_line(proc) == b"done\n"
        sample = sample_stats(cg.target(proc))
    finally:
        data.unlink(missing_ok=True)
    assert sample.block_write >= 1 << 20
    assert sample.block_read >= 1 << 20
    (record,) = stats_report(None, [sample])
    assert record["BlockOutput"] == sample.block_write


# --- network ----------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.skip("needs ip and nsenter")
    a, b = f"skiff-st-{os.getpid()}-a", f"skiff-st-{os.getpid()}-b"
    veth_a, veth_b = f"skst{os.getpid() % 100000}a", f"skst{os.getpid() % 100000}b"
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("link", "add", veth_a, "netns", a, "type", "veth", "peer", "name", veth_b, "netns", b)
        for ns, veth, addr in ((a, veth_a, "10.251.7.1/30"), (b, veth_b, "10.251.7.2/30")):
            for knob in ("all", "default", "lo"):
                subprocess.run(
                    ["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                     f"net.ipv6.conf.{knob}.disable_ipv6=1"],
                    check=False, capture_output=True, timeout=30,
                )  # fmt: skip
            _ip("-n", ns, "addr", "add", addr, "dev", veth)
            _ip("-n", ns, "link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # permanent neighbours: no ARP traffic to blur the counts
        for ns, veth, peer_ns, peer_veth, peer_addr in (
            (a, veth_a, b, veth_b, "10.251.7.2"),
            (b, veth_b, a, veth_a, "10.251.7.1"),
        ):
            shown = subprocess.run(
                ["ip", "-n", peer_ns, "-o", "link", "show", "dev", peer_veth],
                check=True, capture_output=True, text=True, timeout=30,
            ).stdout  # fmt: skip
            lladdr = shown.split("link/ether ")[1].split()[0]
            _ip("-n", ns, "neigh", "replace", peer_addr, "lladdr", lladdr,
                "nud", "permanent", "dev", veth)  # fmt: skip
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def _ping(ns: str, address: str, count: int, size: int) -> None:
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", BUSYBOX, "ping", "-q", "-i", "0.2", "-c", str(count),
         "-s", str(size), "-W", "5", address],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def test_network_io_counts_the_namespace_interfaces_but_not_lo(
    cg: TestCgroup, netns_pair: tuple[str, str]
) -> None:
    a, _ = netns_pair
    proc = cg.spawn(["nsenter", f"--net=/run/netns/{a}", BUSYBOX, "sleep", "1000"])
    target = cg.target(proc, netns_pid=proc.pid)
    netns = os.stat(f"/run/netns/{a}").st_ino
    wait_for(lambda: os.stat(f"/proc/{proc.pid}/ns/net").st_ino == netns, "nsenter")
    first = sample_stats(target)
    _ping(a, "10.251.7.2", 5, 1000)
    second = sample_stats(target)
    wire = 1000 + 8 + 20 + 14  # ICMP payload + ICMP + IPv4 + Ethernet headers
    assert second.net_tx - first.net_tx == 5 * wire
    assert second.net_rx - first.net_rx == 5 * wire
    _ping(a, "127.0.0.1", 3, 1000)
    third = sample_stats(target)
    assert (third.net_rx, third.net_tx) == (second.net_rx, second.net_tx)
    (record,) = stats_report([first], [second])
    assert record["NetInput"] == second.net_rx and record["NetOutput"] == second.net_tx
    # without a namespace of its own, no network is reported
    assert sample_stats(cg.target(proc, netns_pid=None)).net_rx == 0


# --- stopped containers and missing cgroups ---------------------------------------------------


def test_stopped_and_vanished_containers(cg: TestCgroup) -> None:
    stopped = sample_stats(StatsTarget("a" * 64, "stopped", None))
    assert not stopped.running
    (record,) = stats_report(None, [stopped])
    assert record["PIDs"] == 0 and record["MemUsage"] == 0 and record["Name"] == "stopped"

    proc = cg.spawn([BUSYBOX, "sleep", "1000"])
    target = cg.target(proc)
    _kill(proc)
    with pytest.raises(ContainerStateError) as info:
        sample_stats(target)
    assert target.name in info.value.message and "not running" in info.value.message

    live = cg.spawn([BUSYBOX, "sleep", "1000"])
    gone = cg.target(live, cgroup_path=f"/skiff-test-{os.getpid()}-never-created")
    with pytest.raises(ContainerStateError):
        sample_stats(gone)


# --- parent cgroups and cgroupsPath -----------------------------------------------------------


def test_parent_cgroup_create_use_and_remove() -> None:
    assert MOUNTS is not None
    parent = f"/skiff-test-{os.getpid()}-parent{next(_names)}"
    child = parent + "/ctr"
    created = cgroups.create_cgroup(child)
    proc = None
    try:
        for mount in MOUNTS.v1_mounts():
            assert mount.directory(child).is_dir()
        cpuset = created.dir("cpuset")
        assert cpuset is not None
        assert (cpuset / "cpuset.cpus").read_text().strip()  # initialised from the parent
        assert cgroups.create_cgroup(child) == created  # idempotent
        # moved into every hierarchy but memory (it stays in the test run's own memory cgroup)
        dirs = [created.dir(c) for c in ("cpu", "cpuacct", "pids", "cpuset")]
        procs = " ".join(str(d / "cgroup.procs") for d in dirs if d is not None)
        proc = subprocess.Popen(
            [BUSYBOX, "sh", "-c", WRAP, "wrap", BUSYBOX, "sh", "-c", "while :; do :; done"],
            env={**os.environ, "SKIFF_TEST_PROCS": procs},
            start_new_session=True,
        )
        wait_for(lambda: proc is not None and proc.pid in cgroups.cgroup_procs(created), "move")
        sample = sample_stats(
            StatsTarget("c" * 64, "parented", proc.pid, cgroup_path=child, started_at=time.time())
        )
        assert sample.pids == 1
        wait_for(lambda: sample_stats(
            StatsTarget("c" * 64, "parented", proc.pid, cgroup_path=child)
        ).cpu_ns > 0, "CPU time")  # fmt: skip
        assert cgroups.remove_cgroup(parent) is False  # it has a child
        assert cgroups.remove_cgroup(parent, recursive=True) is False  # the child has a task
        assert cpuset.is_dir()
        _kill(proc)
        proc = None
        assert cgroups.remove_cgroup(parent, recursive=True) is True
        for mount in MOUNTS.v1_mounts():
            assert not mount.directory(parent).exists()
        assert cgroups.remove_cgroup(parent) is True  # already gone
        with pytest.raises(ContainerError):
            cgroups.remove_cgroup("/")
    finally:
        if proc is not None:
            _kill(proc)
        cgroups.remove_cgroup(parent, recursive=True)


# --- top ------------------------------------------------------------------------------------------

PASSWD = b"alice:x:4321:4322::/home/alice:/bin/sh\n"
GROUP = b"team:x:4322:\nextra:x:4323:alice\n"
DURATION = re.compile(r"^(\d+m)?\d+(\.\d+)?(s|ms|µs|ns)$")


@pytest.fixture
def rootfs(tmp_shm: Path) -> Path:
    root = tmp_shm / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_bytes(PASSWD)
    (root / "etc" / "group").write_bytes(GROUP)
    return root


def _host_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def test_top_in_a_pid_namespace_as_another_user(cg: TestCgroup, rootfs: Path) -> None:
    cg.spawn(
        ["unshare", "--pid", "--fork",
         "setpriv", "--reuid", "4321", "--regid", "4322", "--groups", "4323",
         BUSYBOX, "sh", "-c", "busybox sleep 1000 & exec busybox sleep 999"]
    )  # fmt: skip
    descriptors = [
        "user,pid,ppid,pcpu,etime,tty,time,args",
        "comm", "group", "groups", "ruser", "rgroup", "hpid", "huser", "uid", "huid",
        "nice", "state", "vsz", "rss", "seccomp", "stime", "capeff", "hgroups", "%p",
    ]  # fmt: skip

    def rows() -> list[list[str]]:
        return top_rows(cg.pids(), descriptors, rootfs)[1]

    wait_for(lambda: sorted(r[7] for r in rows() if "unshare" not in r[7]) == [
        "busybox sleep 1000 ", "busybox sleep 999 "
    ], "both sleeps")  # fmt: skip
    headers, table = top_rows(cg.pids(), descriptors, rootfs)
    assert headers == [
        "USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND",
        "COMMAND", "GROUP", "GROUPS", "RUSER", "RGROUP", "HPID", "HUSER", "UID", "HUID",
        "NI", "STATE", "VSZ", "RSS", "SECCOMP", "STIME", "EFFECTIVE CAPS", "HGROUPS", "PID",
    ]  # fmt: skip
    assert len(table) == 3
    init, child, unshare = table
    columns = dict(zip(headers[8:], init[8:], strict=True))
    assert init[:4] == ["alice", "1", "0", "0.000"]
    assert DURATION.match(init[4]) and init[5:7] == ["?", "0s"]
    assert init[7] == "busybox sleep 999 "  # psgo keeps the space of the final NUL
    assert columns["COMMAND"] == "busybox"
    assert columns["GROUP"] == columns["RGROUP"] == "team"
    assert columns["GROUPS"] == "extra"
    assert columns["RUSER"] == "alice"
    assert columns["UID"] == columns["HUID"] == "4321"
    assert columns["HUSER"] == _host_user(4321)
    assert columns["HGROUPS"] == "4323"
    assert columns["NI"] == "0" and columns["STATE"] == "S" and columns["SECCOMP"] == "disabled"
    assert int(columns["VSZ"]) > 0 and int(columns["RSS"]) > 0
    assert columns["EFFECTIVE CAPS"] == "none"
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+$", columns["STIME"])
    assert init[-1] == "1"
    hpid = int(columns["HPID"])
    assert hpid in cg.pids()
    assert Path(f"/proc/{hpid}/cmdline").read_bytes() == b"busybox\0sleep\0999\0"

    assert child[1:3] == ["2", "1"] and child[7] == "busybox sleep 1000 "
    # unshare itself runs in the test's pid namespace as root, child of this process
    assert unshare[0] == "0"  # no root entry in the image's passwd: the number
    assert unshare[2] == str(os.getpid())
    assert unshare[1] == unshare[13] and unshare[7].endswith(
        "unshare --pid --fork setpriv --reuid 4321 --regid 4322 "
        "--groups 4323 /bin/busybox sh -c busybox sleep 1000 & "
        "exec busybox sleep 999 "
    )


def test_top_translates_ids_of_a_user_namespace(cg: TestCgroup, rootfs: Path) -> None:
    cg.spawn(["unshare", "--user", "--map-user=4321", "--map-group=4322", BUSYBOX, "sleep", "1000"])
    wait_for(
        lambda: top_rows(cg.pids(), ["args"], None)[1] == [[f"{BUSYBOX} sleep 1000 "]], "the exec"
    )
    headers, table = top_rows(
        cg.pids(), ["user", "uid", "huid", "huser", "group", "hgroup"], rootfs
    )
    assert headers == ["USER", "UID", "HUID", "HUSER", "GROUP", "HGROUP"]
    assert table == [["alice", "4321", "0", "root", "team", "root"]]


def test_top_reads_the_user_database_safely(cg: TestCgroup, tmp_shm: Path) -> None:
    cg.spawn(["setpriv", "--reuid", "4321", "--regid", "4322", "--clear-groups",
              BUSYBOX, "sleep", "1000"])  # fmt: skip
    wait_for(lambda: top_rows(cg.pids(), ["user"], None)[1] == [["4321"]], "the exec")

    outside = tmp_shm / "outside-passwd"
    outside.write_bytes(b"mallory:x:4321:4322::/:/bin/sh\n")
    escaping = tmp_shm / "escaping"
    (escaping / "etc").mkdir(parents=True)
    (escaping / "etc" / "passwd").symlink_to(outside)  # absolute: resolved inside the root
    (escaping / "etc" / "group").symlink_to("../../../../../../../../etc/group")
    fifo = tmp_shm / "fifo"
    (fifo / "etc").mkdir(parents=True)
    os.mkfifo(fifo / "etc" / "passwd")

    for root in (None, escaping, fifo, tmp_shm / "missing"):
        assert top_rows(cg.pids(), ["user", "group"], root)[1] == [["4321", "4322"]], root


def test_top_skips_processes_that_exited(cg: TestCgroup) -> None:
    live = cg.spawn([BUSYBOX, "sleep", "1000"])
    dead = subprocess.Popen([BUSYBOX, "true"])
    dead.wait()
    _, table = top_rows([dead.pid, live.pid], ["hpid"], None)
    assert table == [[str(live.pid)]]


# --- against podman -------------------------------------------------------------------------------


def _podman_conf(base: Path) -> dict[str, str]:
    import resource

    nofile = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = min(pid_max, 32768, nproc_hard if nproc_hard != resource.RLIM_INFINITY else 1 << 30)
    conf = base / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'tmp_dir = "{base}/tmp"\n'
    )
    storage = base / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{base}/root"\nrunroot = "{base}/run"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


@pytest.mark.interop
@pytest.mark.slow
def test_stats_and_top_agree_with_podman(tmp_shm: Path, busybox_layout: object) -> None:
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("podman and runc are not installed")
    env = _podman_conf(tmp_shm)
    layout = getattr(busybox_layout, "layout")  # noqa: B009
    name = f"skiff-stats-{os.getpid()}"

    def podman(*args: str) -> str:
        result = subprocess.run(
            ["podman", *args], check=False, env=env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    podman("run", "-d", "--name", name, "--network", "none", "-m", "64m",
           f"oci:{layout}:latest", "busybox", "sh", "-c", "while :; do :; done")  # fmt: skip
    try:
        info = json.loads(podman("inspect", name))[0]
        pid = info["State"]["Pid"]
        started_at = float(podman("inspect", "-f", "{{.State.StartedAt.UnixNano}}", name)) / 1e9
        target = StatsTarget(info["Id"], name, pid, netns_pid=None, started_at=started_at)
        ours = stats_report(None, [sample_stats(target)])[0]
        theirs = podman(
            "stats", "--no-stream", "--no-reset", "--format",
            "{{.MemLimit}} {{.PIDs}} {{.CPU}} {{.ContainerStats.MemUsage}} {{.NetIO}}", name,
        ).split()  # fmt: skip
        assert int(theirs[0]) == ours["MemLimit"] == 64 << 20
        assert int(theirs[1]) == ours["PIDs"] == 1
        # both measure CPU since the start: close, not equal (sampled at different moments)
        assert abs(float(theirs[2]) - float(ours["CPU"])) < 20
        assert abs(int(theirs[3]) - int(ours["MemUsage"])) < 1 << 20
        assert " ".join(theirs[4:]) == "0B / 0B"

        merged = (info["GraphDriver"].get("Data") or {}).get("MergedDir")
        rootfs = Path(merged or podman("mount", name).strip())  # vfs: the container's dir
        descriptors = ["user", "pid", "ppid", "tty", "args", "comm", "group", "nice", "pgid",
                       "vsz", "ruser", "rgroup", "capbnd", "seccomp", "state", "hpid"]  # fmt: skip
        pids = cgroups.cgroup_procs(cgroups.cgroup_of_pid(pid))
        headers, rows = top_rows(pids, descriptors, rootfs)
        podman_lines = podman("top", name, *descriptors).splitlines()
        assert re.split(r"\s{2,}", podman_lines[0].strip()) == headers
        assert len(podman_lines) == 1 + len(rows)
        assert re.split(r"\s{2,}", podman_lines[1].strip()) == [c.strip() for c in rows[0]]
    finally:
        subprocess.run(
            ["podman", "rm", "-f", "-t", "0", name], check=False, env=env, capture_output=True
        )
        subprocess.run(["podman", "rmi", "-a", "-f"], check=False, env=env, capture_output=True)
