"""The CRI server's pod sandboxes against the real runtime, through gRPC.

A real ``skiff cri serve`` (subprocess) over a private store, with a CNI
bridge network of the test's own; the client is the generated CRI stubs.
Covered: the sandbox lifecycle and its idempotent stop/remove, attributes
kept (metadata, labels, annotations), list filters (id prefix, state,
label selector), kubelet's name/attempt rule (AlreadyExists), bad input
(InvalidArgument, NotFound), DNS config and hostname, host (NODE)
network/pid/ipc namespaces, a shared pid namespace, sysctls, hostPort
mappings through CNI portmap and the pod IP on the bridge, a failing CNI
plugin leaving nothing behind, the CLI seeing the CRI's pods, containers
and images, a server restart with running pods, and recovery of what a
killed server left half-made.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import cri_fixtures
import grpc
import pytest
from cri_api.v1 import api_pb2
from cri_fixtures import code_of, list_containers, list_sandboxes, requirements, serving_cri

from skiff.testing.busybox import INDEX_HTML, BusyboxImage
from skiff.testing.criserver import CRIEnv
from skiff.testing.network import fetch, free_port, wait_for

pytestmark = requirements
cri = cri_fixtures.cri
clean = cri_fixtures.clean

READY, NOTREADY = api_pb2.SANDBOX_READY, api_pb2.SANDBOX_NOTREADY


def _sleeper(env: CRIEnv, sandbox_id: str, config: object, name: str = "sleeper") -> str:
    cid = env.create_container(
        sandbox_id, config, env.container_config(name, ["busybox", "sleep", "1000"])
    )
    env.start_container(cid)
    return cid


def _stop(env: CRIEnv, sandbox_id: str) -> None:
    env.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))


def _remove(env: CRIEnv, sandbox_id: str) -> None:
    env.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))


def _netns_entries(env: CRIEnv) -> list[str]:
    return env.netns_entries()


def _ipam_leases(env: CRIEnv) -> list[str]:
    network_dir = env.ipam_dir / env.network_name
    if not network_dir.is_dir():
        return []
    return [p.name for p in network_dir.iterdir() if p.name[0].isdigit()]


# --- lifecycle ------------------------------------------------------------------------------


def test_sandbox_lifecycle_and_idempotent_stop_and_remove(clean: CRIEnv) -> None:
    env = clean
    config = env.sandbox_config(
        "web", labels={"app": "web", "tier": "front"}, annotations={"note": "kept"}
    )
    sid, _ = env.run_sandbox(config)
    status = env.sandbox_status(sid).status
    assert status.state == READY
    assert (status.metadata.name, status.metadata.namespace) == ("web", "default")
    assert status.metadata.uid == config.metadata.uid
    assert dict(status.labels) == {"app": "web", "tier": "front"}
    assert dict(status.annotations) == {"note": "kept"}
    assert status.network.ip.startswith(env.subnet.rsplit(".", 1)[0] + ".")
    assert status.linux.namespaces.options.pid == api_pb2.CONTAINER
    assert [s.id for s in list_sandboxes(env, id=sid)] == [sid]
    assert len(_netns_entries(env)) == 1 and _ipam_leases(env) == [status.network.ip]

    _stop(env, sid)
    stopped = env.sandbox_status(sid).status
    assert stopped.state == NOTREADY
    assert stopped.network.ip == ""
    assert _netns_entries(env) == [] and _ipam_leases(env) == []
    _stop(env, sid)  # idempotent
    assert env.sandbox_status(sid).status.state == NOTREADY

    _remove(env, sid)
    assert list_sandboxes(env, id=sid) == []
    assert code_of(env.sandbox_status, sid) == grpc.StatusCode.NOT_FOUND
    _remove(env, sid)  # idempotent
    _stop(env, "0" * 64)  # unknown: not an error
    _remove(env, "0" * 64)
    assert env.skiff("pod", "ps", "-q").stdout.strip() == ""


def test_remove_without_stop_removes_everything(clean: CRIEnv) -> None:
    env = clean
    sid, config = env.run_sandbox()
    cid = _sleeper(env, sid, config)
    _remove(env, sid)
    assert list_containers(env, id=cid) == []
    assert _netns_entries(env) == [] and _ipam_leases(env) == []
    env.wait_clean()


def test_list_filters(clean: CRIEnv) -> None:
    env = clean
    a, _ = env.run_sandbox(env.sandbox_config("a", labels={"app": "x", "n": "1"}))
    b, _ = env.run_sandbox(env.sandbox_config("b", labels={"app": "x", "n": "2"}))
    c, _ = env.run_sandbox(env.sandbox_config("c", labels={"app": "y"}))
    _stop(env, b)
    ids = {s.id for s in list_sandboxes(env)}
    assert {a, b, c} <= ids
    assert {s.id for s in list_sandboxes(env, label_selector={"app": "x"})} == {a, b}
    assert [s.id for s in list_sandboxes(env, label_selector={"app": "x", "n": "2"})] == [b]
    ready = api_pb2.PodSandboxStateValue(state=READY)
    notready = api_pb2.PodSandboxStateValue(state=NOTREADY)
    assert {s.id for s in list_sandboxes(env, state=ready)} == {a, c}
    assert [s.id for s in list_sandboxes(env, state=notready)] == [b]
    assert [s.id for s in list_sandboxes(env, id=c[:13])] == [c]
    assert list_sandboxes(env, label_selector={"app": "z"}) == []
    item = next(s for s in list_sandboxes(env) if s.id == a)
    assert item.metadata.name == "a" and dict(item.labels) == {"app": "x", "n": "1"}
    assert item.created_at > 0


# --- bad input ----------------------------------------------------------------------------------


def test_duplicate_sandbox_name_is_already_exists_and_the_next_attempt_works(
    clean: CRIEnv,
) -> None:
    env = clean
    config = env.sandbox_config("dup")
    sid, _ = env.run_sandbox(config)
    request = api_pb2.RunPodSandboxRequest(config=config)
    assert code_of(env.runtime.RunPodSandbox, request) == grpc.StatusCode.ALREADY_EXISTS
    assert [s.id for s in list_sandboxes(env)] == [sid]
    assert len(_netns_entries(env)) == 1  # the refused one made no namespace
    _stop(env, sid)
    config.metadata.attempt = 1
    second, _ = env.run_sandbox(config)
    assert env.sandbox_status(second).status.metadata.attempt == 1


def test_bad_sandbox_configs_are_invalid_arguments_and_leave_nothing(clean: CRIEnv) -> None:
    env = clean
    no_name = env.sandbox_config()
    no_name.metadata.name = ""
    bad_chars = env.sandbox_config("bad name!")
    bad_dns = env.sandbox_config(dns_config=api_pb2.DNSConfig(servers=["not-an-ip"]))
    bad_sysctl = env.sandbox_config(
        linux=api_pb2.LinuxPodSandboxConfig(sysctls={"kernel.hostname": "x"})
    )
    for config in (no_name, bad_chars, bad_dns, bad_sysctl):
        code = code_of(env.runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=config))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, config
    handler = api_pb2.RunPodSandboxRequest(config=env.sandbox_config(), runtime_handler="kata")
    assert code_of(env.runtime.RunPodSandbox, handler) == grpc.StatusCode.INVALID_ARGUMENT
    assert list_sandboxes(env) == []
    assert _netns_entries(env) == [] and _ipam_leases(env) == []
    assert env.skiff("pod", "ps", "-q").stdout.strip() == ""
    assert code_of(env.sandbox_status, "f" * 64) == grpc.StatusCode.NOT_FOUND
    stats = api_pb2.PodSandboxStatsRequest(pod_sandbox_id="f" * 64)
    assert code_of(env.runtime.PodSandboxStats, stats) == grpc.StatusCode.NOT_FOUND


def test_a_failing_cni_plugin_fails_the_sandbox_and_leaves_nothing(clean: CRIEnv) -> None:
    env = clean
    broken = env.cni_dir / "00-broken.conflist"
    config = env.cni_config(("bridge",))
    config["name"] = env.network_name + "-broken"
    config["plugins"].append({"type": "no-such-plugin"})
    broken.write_text(json.dumps(config))
    try:
        status = env.runtime.Status(api_pb2.StatusRequest()).status
        network = next(c for c in status.conditions if c.type == "NetworkReady")
        assert not network.status and network.reason == "NetworkPluginNotReady"
        assert "no-such-plugin" in network.message
        with pytest.raises(grpc.RpcError) as failure:
            env.run_sandbox()
        assert failure.value.code() == grpc.StatusCode.UNKNOWN
        assert "no-such-plugin" in failure.value.details()
    finally:
        broken.unlink()
    assert list_sandboxes(env) == []
    assert _netns_entries(env) == []
    assert not list((env.ipam_dir / config["name"]).glob("10.*"))  # bridge's ADD was undone
    env.wait_clean()


# --- namespaces, DNS, hostname, sysctls -------------------------------------------------------


def test_dns_config_hostname_and_sysctls(clean: CRIEnv) -> None:
    env = clean
    config = env.sandbox_config(
        "named",
        hostname="my-host",
        dns_config=api_pb2.DNSConfig(
            servers=["10.10.10.10"], searches=["example.test"], options=["ndots:8"]
        ),
        linux=api_pb2.LinuxPodSandboxConfig(
            sysctls={"net.ipv4.ip_unprivileged_port_start": "1024", "kernel.shm_rmid_forced": "1"}
        ),
    )
    sid, _ = env.run_sandbox(config)
    cid = _sleeper(env, sid, config)
    out = env.exec_sync(cid, ["cat", "/etc/resolv.conf"])
    assert out.exit_code == 0 and out.stderr == b""
    text = out.stdout.decode()
    for line in ("nameserver 10.10.10.10", "search example.test", "options ndots:8"):
        assert line in text
    assert env.exec_sync(cid, ["hostname"]).stdout == b"my-host\n"
    sysctls = env.exec_sync(
        cid,
        [
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
            "/proc/sys/kernel/shm_rmid_forced",
        ],
    )
    assert sysctls.stdout.split() == [b"1024", b"1"]


def test_node_namespaces_are_the_hosts(clean: CRIEnv) -> None:
    env = clean
    options = api_pb2.NamespaceOption(network=api_pb2.NODE, pid=api_pb2.NODE, ipc=api_pb2.NODE)
    linux = api_pb2.LinuxPodSandboxConfig(
        security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=options)
    )
    config = env.sandbox_config("hostns", linux=linux)
    sid, _ = env.run_sandbox(config)
    status = env.sandbox_status(sid).status
    assert status.state == READY and status.network.ip == ""
    assert _netns_entries(env) == []
    container = env.container_config(
        "c", ["busybox", "sleep", "1000"],
        linux=api_pb2.LinuxContainerConfig(
            security_context=api_pb2.LinuxContainerSecurityContext(namespace_options=options)
        ),
    )  # fmt: skip
    cid = env.create_container(sid, config, container)
    env.start_container(cid)
    for kind in ("net", "pid", "ipc", "uts"):
        inside = env.exec_sync(cid, ["readlink", f"/proc/self/ns/{kind}"]).stdout.decode().strip()
        assert inside == os.readlink(f"/proc/self/ns/{kind}"), kind


def test_pod_pid_namespace_is_shared_between_containers(clean: CRIEnv) -> None:
    env = clean
    options = api_pb2.NamespaceOption(pid=api_pb2.POD)
    sandbox_linux = api_pb2.LinuxPodSandboxConfig(
        security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=options)
    )
    config = env.sandbox_config("shared-pid", linux=sandbox_linux)
    sid, _ = env.run_sandbox(config)
    container_linux = api_pb2.LinuxContainerConfig(
        security_context=api_pb2.LinuxContainerSecurityContext(namespace_options=options)
    )
    first = env.create_container(
        sid, config, env.container_config("a", ["busybox", "sleep", "1001"], linux=container_linux)
    )
    second = env.create_container(
        sid, config, env.container_config("b", ["busybox", "sleep", "1002"], linux=container_linux)
    )
    env.start_container(first)
    env.start_container(second)
    ps = env.exec_sync(second, ["ps", "-o", "args"]).stdout.decode()
    assert "sleep 1001" in ps and "sleep 1002" in ps and "catatonit" in ps
    # kubelet's default (CONTAINER): each its own
    own = env.create_container(sid, config, env.container_config("c", ["busybox", "sleep", "1003"]))
    env.start_container(own)
    assert "sleep 1001" not in env.exec_sync(own, ["ps", "-o", "args"]).stdout.decode()


# --- ports and addresses ------------------------------------------------------------------------


def test_host_port_mapping_and_the_pod_ip(clean: CRIEnv) -> None:
    env = clean
    port = free_port()
    config = env.sandbox_config(
        "httpd",
        port_mappings=[
            api_pb2.PortMapping(container_port=80, host_port=port, host_ip="127.0.0.1"),
            api_pb2.PortMapping(container_port=8080),  # documents the pod only
        ],
    )
    sid, _ = env.run_sandbox(config)
    cid = env.create_container(
        sid, config, env.container_config("web", ["httpd", "-f", "-p", "80", "-h", "/var/www"])
    )
    env.start_container(cid)
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/") == INDEX_HTML, "the host port", 20)
    ip = env.sandbox_status(sid).status.network.ip
    assert fetch(f"http://{ip}:80/") == INDEX_HTML  # the test's own bridge
    info = json.loads(env.sandbox_status(sid, verbose=True).info["info"])
    assert info["portMappings"] == [
        {"hostPort": port, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}
    ]
    _stop(env, sid)
    assert fetch(f"http://127.0.0.1:{port}/") is None


# --- the CLI administers what the CRI runs --------------------------------------------------------


def test_the_cli_sees_the_cri_pods_containers_images_and_logs(clean: CRIEnv) -> None:
    env = clean
    config = env.sandbox_config("seen")
    sid, _ = env.run_sandbox(config)
    cid = env.create_container(
        sid, config, env.container_config("talker", ["sh", "-c", "echo from-cri; sleep 1000"])
    )
    env.start_container(cid)
    pods = env.skiff("pod", "ps", "--format", "json").json()
    pod = next(p for p in pods if p["Id"] == sid)
    assert pod["Name"] == f"k8s_POD_seen_default_{config.metadata.uid}_0"
    assert pod["Status"] == "Running"
    rows = {row["Id"]: row for row in env.ps()}
    assert rows[cid]["Names"] == [f"k8s_talker_seen_default_{config.metadata.uid}_0"]
    assert rows[cid]["State"] == "running"
    assert rows[cid]["Pod"] == sid
    wait_for(lambda: "from-cri" in env.skiff("logs", cid).stdout, "skiff logs", 20)
    images = env.skiff("images", "--format", "{{.Repository}}").stdout.split()
    assert "localhost/busybox" in images and "localhost/skiff-pause" in images
    # and what the CLI does, the CRI sees
    env.skiff("stop", "-t", "0", cid)
    assert env.container_status(cid).status.state == api_pb2.CONTAINER_EXITED


# --- restarts and recovery ---------------------------------------------------------------------------


@pytest.fixture
def own(busybox_layout: BusyboxImage) -> Iterator[CRIEnv]:
    with serving_cri(busybox_layout, "skiff-cri-own-") as env:
        yield env


def test_a_restarted_server_keeps_running_pods(own: CRIEnv) -> None:
    env = own
    config = env.sandbox_config("survivor")
    sid, _ = env.run_sandbox(config)
    cid = _sleeper(env, sid, config)
    ip = env.sandbox_status(sid).status.network.ip
    pid = json.loads(env.container_status(cid, verbose=True).info["info"])["pid"]
    env.restart()
    status = env.sandbox_status(sid).status
    assert status.state == READY and status.network.ip == ip
    assert env.container_status(cid).status.state == api_pb2.CONTAINER_RUNNING
    assert json.loads(env.container_status(cid, verbose=True).info["info"])["pid"] == pid
    assert env.exec_sync(cid, ["echo", "still"]).stdout == b"still\n"
    # the network recorded before the restart is torn down by the new server
    _stop(env, sid)
    assert _netns_entries(env) == [] and _ipam_leases(env) == []
    _remove(env, sid)
    env.wait_clean()


def test_a_restarted_server_cleans_up_what_a_killed_one_left(own: CRIEnv) -> None:
    from skiff.config import SystemContext
    from skiff.cri.cni import CNI, PodIdentity
    from skiff.cri.records import SandboxConfig, SandboxRecords, SandboxState
    from skiff.runtime.network.netns import create_netns
    from skiff.storage.store import Store

    env = own
    assert env.stop() == 0
    ctx = SystemContext(storage_root=env.root, run_root=env.runroot, storage_driver=env.driver)
    store = Store.open(ctx)
    try:
        # RunPodSandbox killed after CNI ADD, before the pod was made
        records = SandboxRecords(store.db)
        netns = create_netns(env.runroot, "cri-halfmade")
        sandbox_id = "a" * 64
        records.add(sandbox_id, SandboxConfig(name="half"), SandboxState(netns=str(netns)))
        cni = CNI(store.db, env.cni_dir, [Path("/usr/lib/cni")])
        cni.add(sandbox_id, netns, PodIdentity("half", "default", "u"))
        # and an attachment whose sandbox record is gone
        orphan = create_netns(env.runroot, "cri-orphan")
        cni.add("b" * 64, orphan, PodIdentity("orphan", "default", "v"))
    finally:
        store.close()
    assert len(_ipam_leases(env)) == 2
    env.start()
    assert list_sandboxes(env) == []
    assert _ipam_leases(env) == []
    assert _netns_entries(env) == ["cri-orphan"]  # DEL does not own a namespace it did not make
    from skiff.runtime.network.netns import remove_netns

    remove_netns(orphan)
