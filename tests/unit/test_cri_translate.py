"""Pure parts of the CRI server: names, CNI config and results, message translation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2

from skiff.cri import names, translate
from skiff.cri.cni import (
    Invocation,
    NetworkList,
    PodIdentity,
    find_network,
    parse_network,
    plugin_config,
    result_ips,
)
from skiff.cri.config import CRIConfig, from_mapping, socket_path
from skiff.cri.errors import InvalidArgument, code_name
from skiff.errors import ConfigError, ContainerStateError, ContainerUnknown, NameInUse, SkiffError


def test_names_follow_kubelets_rules() -> None:
    sandbox = api_pb2.PodSandboxMetadata(name="web", namespace="prod", uid="u-1", attempt=2)
    container = api_pb2.ContainerMetadata(name="app", attempt=3)
    assert names.sandbox_name(sandbox) == "k8s_POD_web_prod_u-1_2"
    assert names.container_name(sandbox, container) == "k8s_app_web_prod_u-1_3"
    with pytest.raises(InvalidArgument):
        names.check_sandbox_metadata(api_pb2.PodSandboxMetadata(name=""))
    with pytest.raises(InvalidArgument):
        names.check_sandbox_metadata(api_pb2.PodSandboxMetadata(name="a b"))
    with pytest.raises(InvalidArgument):
        names.check_container_metadata(api_pb2.ContainerMetadata(name="x/y"))
    assert names.hostname_for(api_pb2.PodSandboxMetadata(name="a" * 70)) == "a" * 63


def test_error_codes() -> None:
    assert code_name(ContainerUnknown("x")) == "NOT_FOUND"
    assert code_name(NameInUse("x")) == "ALREADY_EXISTS"
    assert code_name(ContainerStateError("x")) == "FAILED_PRECONDITION"
    assert code_name(InvalidArgument("x")) == "INVALID_ARGUMENT"
    assert code_name(SkiffError("x")) == "UNKNOWN"


def test_cni_config_files(tmp_path: Path) -> None:
    (tmp_path / "00-bad.conflist").write_text("{not json")
    (tmp_path / "10-single.conf").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "one", "type": "bridge", "bridge": "b0"})
    )
    (tmp_path / "20-list.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "two", "plugins": [{"type": "bridge"}]})
    )
    network = find_network(tmp_path)
    assert network is not None and network.name == "one"
    assert network.plugins == ({"type": "bridge", "bridge": "b0"},)
    assert find_network(tmp_path / "missing") is None
    with pytest.raises(ConfigError):
        parse_network(json.dumps({"name": "x", "plugins": []}), "f")
    with pytest.raises(ConfigError):
        parse_network(json.dumps({"name": "x", "plugins": [{"no": "type"}]}), "f")


def test_plugin_config_chains_results_and_capabilities() -> None:
    network = NetworkList(
        "net",
        "1.0.0",
        ({"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True}}),
    )
    mappings = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    inv = Invocation("id", "/ns", "eth0", network, "IgnoreUnknown=1", {"portMappings": mappings})
    first = plugin_config(inv, network.plugins[0], None)
    assert first == {"type": "bridge", "name": "net", "cniVersion": "1.0.0"}
    prev = {"ips": [{"address": "10.0.0.2/24"}]}
    second = plugin_config(inv, network.plugins[1], prev)
    assert second["prevResult"] == prev and second["runtimeConfig"] == {"portMappings": mappings}
    args = PodIdentity("p", "ns", "uid").cni_args("sid")
    assert args == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;"
        "K8S_POD_INFRA_CONTAINER_ID=sid;K8S_POD_UID=uid"
    )


def test_result_addresses_of_every_version() -> None:
    assert result_ips({"ips": [{"address": "fd00::2/64"}, {"address": "10.0.0.2/24"}]}) == [
        "fd00::2",
        "10.0.0.2",
    ]
    assert result_ips({"ip4": {"ip": "10.1.0.3/16"}}) == ["10.1.0.3"]
    assert result_ips({"ips": [{"address": "garbage"}]}) == []


def test_container_translation() -> None:
    sc = api_pb2.LinuxContainerSecurityContext(
        run_as_user=api_pb2.Int64Value(value=1000),
        run_as_group=api_pb2.Int64Value(value=2000),
        supplemental_groups=[3000],
        capabilities=api_pb2.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]),
        seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined),
        masked_paths=["/proc/kcore"],
        readonly_paths=["/proc/sys"],
        readonly_rootfs=True,
    )
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="c"),
        image=api_pb2.ImageSpec(image="busybox"),
        args=["-x"],
        envs=[api_pb2.KeyValue(key="A", value="1")],
        stop_signal=api_pb2.SIGINT,
        linux=api_pb2.LinuxContainerConfig(
            security_context=sc,
            resources=api_pb2.LinuxContainerResources(
                cpu_quota=50000,
                cpu_period=100000,
                memory_limit_in_bytes=1 << 30,
                oom_score_adj=-997,
            ),
        ),
    )
    sg = translate.container_spec(config)
    assert sg.basic.entrypoint is None and sg.basic.command == ["-x"]
    assert sg.basic.env == {"A": "1"} and sg.basic.stop_signal == 2
    assert sg.security.user == "1000:2000" and sg.security.group_add == ["3000"]
    assert sg.security.cap_add == ["NET_ADMIN"] and sg.security.cap_drop == ["ALL"]
    assert sg.security.seccomp_profile == "unconfined"
    assert sg.security.unmask == ["ALL"] and sg.security.mask == ["/proc/kcore"]
    assert sg.security.readonly == ["/proc/sys"] and sg.storage.read_only
    assert (sg.resources.cpu_quota, sg.resources.memory) == (50000, 1 << 30)
    assert sg.resources.oom_score_adj is None  # never applied


def test_sandbox_translation() -> None:
    options = api_pb2.NamespaceOption(network=api_pb2.NODE, pid=api_pb2.POD, ipc=api_pb2.NODE)
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="p", namespace="n", uid="u"),
        hostname="ignored-on-the-host-network",
        linux=api_pb2.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/pod-u",
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=options),
        ),
        port_mappings=[
            api_pb2.PortMapping(container_port=80, host_port=8080, protocol=api_pb2.UDP)
        ],
    )
    opts = translate.pod_options(config, sandbox_id="s", name="k8s", netns=None, pause_image="")
    assert opts.network_mode == "host" and opts.uts_mode == "host" and opts.hostname == ""
    assert opts.ipc_mode == "host" and "pid" in (opts.share or [])
    assert opts.cgroup_parent == "/kubepods/pod-u" and opts.created_by == "cri"
    assert translate.port_mappings(config) == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "udp"}
    ]


def test_server_config() -> None:
    assert socket_path("unix:///run/x.sock") == Path("/run/x.sock")
    with pytest.raises(ConfigError):
        socket_path("tcp://1.2.3.4:5")
    config = from_mapping({"cni_plugin_dirs": ["/a", "/b"], "workers": 2}, "f")
    assert config.cni_plugin_dirs == (Path("/a"), Path("/b")) and config.workers == 2
    for bad in ({"workers": "2"}, {"nope": 1}, {"cni_plugin_dirs": [1]}):
        with pytest.raises(ConfigError):
            from_mapping(bad, "f")
    assert CRIConfig(streaming_address="::1").streaming_bind == "[::1]:0"
