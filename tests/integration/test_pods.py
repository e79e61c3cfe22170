"""Pods against the real runtime: runc, conmon, netavark, cgroups, overlay.

Each test works in a private store (tmpfs) with the busybox image and a
network of its own (own subnet and bridge), and ends by removing its pods
and checking that nothing of them is left on the host: no mounts under the
test directory (the pod's /dev/shm tmpfs included), no network namespace,
no conmon, no runtime state, no container or pod record, no pod cgroup.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.testing.busybox import INDEX_HTML, BusyboxImage
from skiff.testing.containers import PodContainerEnv, wait_for, wait_output
from skiff.testing.network import fetch, free_port

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
    pytest.mark.skipif(not Path("/usr/bin/catatonit").exists(), reason="catatonit is missing"),
]

CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")


class PodEnv(PodContainerEnv):
    """A ContainerEnv that knows about pods: their records, cgroups and leftovers."""

    def pod(self, ref: str) -> dict:
        return json.loads(self.skiff("pod", "inspect", ref).stdout)

    def pod_status(self, ref: str) -> str:
        return str(self.pod(ref)["State"])

    def pod_ids(self) -> list[str]:
        return self.skiff("pod", "ps", "-q").stdout.split()

    def pod_leftovers(self, pod: dict) -> list[str]:
        found = [f"pod {p}" for p in self.pod_ids()]
        cgroup = CGROUP_V1_MEMORY / pod["CgroupPath"].lstrip("/")
        if CGROUP_V1_MEMORY.is_dir() and cgroup.exists():
            found.append(f"cgroup {cgroup}")
        pod_dir = self.runroot / "pods" / pod["Id"]
        if pod_dir.exists():
            found.append(f"pod run dir {pod_dir}")
        return found + self.leftovers(networks=False)


@pytest.fixture
def env(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[PodEnv]:
    environment = PodEnv(tmp_shm / "env", busybox_layout)
    try:
        yield environment
    finally:
        environment.close()


def ns_inode(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def remove_and_check(env: PodEnv, name: str) -> None:
    pod = env.pod(name)
    env.skiff("pod", "rm", "-f", "-t", "0", name)
    wait_for(lambda: not env.pod_leftovers(pod), "the pod to leave nothing behind", 20)


# --- sharing ---------------------------------------------------------------------------------


def test_members_talk_over_localhost_and_the_pod_publishes_the_port(env: PodEnv) -> None:
    net = env.network()
    port = free_port()
    pod_id = env.skiff(
        "pod", "create", "--name", "web", "--network", net, "-p", f"127.0.0.1:{port}:80"
    ).stdout.strip()
    assert len(pod_id) == 64
    env.run_detached(
        "--pod", "web", "--name", "srv", env.image, "httpd", "-f", "-p", "80", "-h", "/var/www"
    )
    # a second member reaches the first on localhost
    out = env.skiff(
        "run", "--rm", "--pod", "web", env.image, "sh", "-c",
        "until wget -q -O - http://localhost/; do sleep 0.1; done",
    ).stdout  # fmt: skip
    assert out.encode() == INDEX_HTML
    # the pod's port, published by the infra container, reaches the member
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: fetch(url) == INDEX_HTML, "the pod's published port", 20)
    # the UTS namespace and the infra's /etc/hosts are shared: the pod's name resolves
    out = env.skiff(
        "run", "--rm", "--pod", "web", env.image, "sh", "-c", "hostname; cat /etc/hostname; grep -w web /etc/hosts"
    ).stdout.split("\n")  # fmt: skip
    assert out[0] == "web" and out[1] == "web" and "web" in out[2]
    pod = env.pod("web")
    assert pod["State"] == "Running"
    assert pod["InfraConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    remove_and_check(env, "web")
    assert fetch(url) is None
    # netavark's port forwarding for the pod is gone with it
    from skiff.testing.network import iptables_lines

    assert [line for line in iptables_lines() if f"--dport {port}" in line] == []


def test_a_container_joining_a_running_pod_shares_its_namespaces(env: PodEnv) -> None:
    net = env.network()
    env.skiff("pod", "create", "--name", "p", "--network", net, "--share", "+pid")
    env.skiff("pod", "start", "p")
    pod = env.pod("p")
    infra_pid = env.pid(pod["InfraContainerID"])
    assert env.pod_status("p") == "Running"
    env.run_detached("--pod", "p", "--name", "late", env.image, "busybox", "sleep", "1000")
    pid = env.pid("late")
    for kind in ("net", "ipc", "uts", "pid"):
        assert ns_inode(pid, kind) == ns_inode(infra_pid, kind), kind
    assert ns_inode(pid, "mnt") != ns_inode(infra_pid, "mnt")
    # with the pid namespace shared, catatonit is PID 1 and the member sees it
    ps = env.skiff("exec", "late", "ps", "-o", "pid,args").stdout
    assert "1 /catatonit -P" in " ".join(ps.split())
    # the member's cgroup is inside the pod's cgroup
    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"{pod['CgroupPath']}/" in cgroups
    remove_and_check(env, "p")


def test_members_share_dev_shm(env: PodEnv) -> None:
    env.skiff("pod", "create", "--name", "shm", "--network", "none")
    env.run_detached("--pod", "shm", "--name", "writer", env.image, "busybox", "sleep", "1000")
    env.run_detached("--pod", "shm", "--name", "reader", env.image, "busybox", "sleep", "1000")
    env.skiff("exec", "writer", "sh", "-c", "echo shared > /dev/shm/token")
    assert env.skiff("exec", "reader", "cat", "/dev/shm/token").stdout == "shared\n"
    remove_and_check(env, "shm")


def test_the_first_member_starts_the_infra_container(env: PodEnv) -> None:
    env.skiff("pod", "create", "--name", "lazy", "--network", "none")
    assert env.pod_status("lazy") == "Created"
    env.skiff("create", "--pod", "lazy", "--name", "m", env.image, "busybox", "sleep", "1000")
    env.skiff("start", "m")
    assert env.pod_status("lazy") == "Running"
    remove_and_check(env, "lazy")


# --- limits and statistics -----------------------------------------------------------------


def test_pod_limits_bound_the_whole_pod_and_stats_count_it(env: PodEnv) -> None:
    from skiff.runtime.engine import Runtime
    from skiff.runtime.pods.records import PodRecords
    from skiff.runtime.pods.usage import pod_usage

    env.skiff(
        "pod", "create", "--name", "lim", "--network", "none", "--memory", "32m", "--cpus", "0.5"
    )
    pod = env.pod("lim")
    assert pod["memory_limit"] == 32 << 20 and pod["cpu_quota"] == 50000
    if CGROUP_V1_MEMORY.is_dir():
        limit = (
            CGROUP_V1_MEMORY / pod["CgroupPath"].lstrip("/") / "memory.limit_in_bytes"
        ).read_text()
        assert int(limit) == 32 << 20
    env.run_detached("--pod", "lim", "--name", "idle", env.image, "busybox", "sleep", "1000")
    # a member that touches more than the pod may have is killed, though it has no limit itself
    hog = env.skiff(
        "run", "--pod", "lim", "--name", "hog", env.image,
        "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=80M", "count=1", expect=None,
    )  # fmt: skip
    assert hog.returncode == 137, hog.describe()
    # pod stats: one row per container, podman's keys
    rows = json.loads(env.skiff("pod", "stats", "--no-stream", "--format", "json", "lim").stdout)
    assert {r["Name"] for r in rows} == {pod["Containers"][0]["Name"], "idle", "hog"}
    running = next(r for r in rows if r["Name"] == "idle")
    assert running["PIDS"] == "1" and running["MemUsage"] != "-- / --"
    assert set(running) == {
        "CPU",
        "MemUsage",
        "MemUsageBytes",
        "Mem",
        "NetIO",
        "BlockIO",
        "PIDS",
        "Pod",
        "CID",
        "Name",
    }
    # the pod's cgroup counts its members together
    rt = Runtime(env.context())
    try:
        sample = pod_usage(rt, PodRecords(rt.store.db).get("lim"))
    finally:
        rt.close()
    assert sample.running and sample.pids >= 2 and sample.mem_usage > 0
    assert sample.mem_limit == 32 << 20
    remove_and_check(env, "lim")


# --- failures ----------------------------------------------------------------------------------


def test_killing_the_infra_process_shows_the_pod_degraded(env: PodEnv) -> None:
    net = env.network()
    env.skiff("pod", "create", "--name", "k", "--network", net)
    env.run_detached("--pod", "k", "--name", "m", env.image, "busybox", "sleep", "1000")
    infra = env.pod("k")["InfraContainerID"]
    os.kill(env.pid(infra), 9)
    wait_for(lambda: env.pod_status("k") == "Degraded", "the pod to be degraded", 20)
    assert env.state(infra) == "exited"
    assert env.skiff("pod", "ps", "--format", "{{.Status}}").stdout.strip() == "Degraded"
    env.skiff("pod", "stop", "-t", "0", "k")
    assert env.pod_status("k") == "Exited"
    # nothing of the network is left while the pod is stopped
    assert env.netns_entries() == []
    env.skiff("pod", "start", "k")
    assert env.pod_status("k") == "Running"
    remove_and_check(env, "k")


def test_exit_policy_stop_stops_the_pod_after_its_last_member(env: PodEnv) -> None:
    env.skiff("pod", "create", "--name", "once", "--network", "none", "--exit-policy", "stop")
    env.skiff("run", "--pod", "once", "--name", "job", env.image, "true")
    wait_for(lambda: env.pod_status("once") == "Exited", "the pod to stop", 20)
    remove_and_check(env, "once")


def test_removing_a_running_pod_needs_force_and_removes_nothing_without_it(env: PodEnv) -> None:
    env.skiff("pod", "create", "--name", "busy", "--network", "none")
    env.run_detached("--pod", "busy", "--name", "m", env.image, "busybox", "sleep", "1000")
    message = env.fails("pod", "rm", "busy")
    assert "cannot remove container" in message and "without force" in message
    assert env.state("m") == "running" and env.pod_status("busy") == "Running"
    remove_and_check(env, "busy")


def test_a_failed_pod_create_leaves_nothing(env: PodEnv) -> None:
    message = env.fails(
        "pod", "create", "--name", "bad", "--network", "none", "--cpuset-cpus", "4095"
    )
    assert "cpuset" in message
    assert env.pod_ids() == []
    assert env.skiff("ps", "-a", "-q").stdout == ""
    env.wait_clean()


def test_run_pod_new_moves_the_ports_to_a_new_pod(env: PodEnv) -> None:
    net = env.network()
    port = free_port()
    env.run_detached(
        "--pod", "new:fresh", "--network", net, "-p", f"127.0.0.1:{port}:80", "--name", "srv",
        env.image, "httpd", "-f", "-p", "80", "-h", "/var/www",
    )  # fmt: skip
    pod = env.pod("fresh")
    assert pod["InfraConfig"]["Networks"] == [net]
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/") == INDEX_HTML, "the new pod's port", 20)
    assert env.container("srv")["Pod"] == pod["Id"]  # type: ignore[index]
    remove_and_check(env, "fresh")


def test_restart_policy_member_comes_back_and_pod_stays_running(env: PodEnv) -> None:
    env.skiff("pod", "create", "--name", "rp", "--network", "none")
    env.run_detached(
        "--pod", "rp", "--name", "flaky", "--restart", "always", env.image, "sh", "-c", "sleep 0.3; exit 3"
    )  # fmt: skip
    wait_output(lambda: env.skiff("inspect", "--format", "{{.RestartCount}}", "flaky"), "1", 20)
    env.skiff("pod", "stop", "-t", "0", "rp")
    assert env.pod_status("rp") == "Exited"
    remove_and_check(env, "rp")
