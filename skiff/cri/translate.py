"""CRI messages → skiff's pod options and SpecGenerator.

kubelet speaks in PodSandboxConfig and ContainerConfig; skiff's pods and
containers are made from ``PodCreateOptions`` and ``SpecGenerator``, the
same inputs ``skiff pod create``, ``skiff run`` and ``kube play`` fill.
This module is only that translation: no store, no runtime. What it
cannot express is refused as InvalidArgument (a relative mount path, a
group without a user, image volumes, recursive read-only mounts), never
silently dropped — with two deliberate exceptions, both recorded in the
container's CRI metadata and described in docs/cri.md:

- ``oom_score_adj`` is never applied. kubelet asks -997 for guaranteed
  pods; lowering it needs CAP_SYS_RESOURCE, which skiff does not use, and
  the runtime design forbids setting it at all.
- AppArmor and SELinux options are accepted and ignored: this host has
  neither.

Namespaces (NamespaceOption): network POD is a namespace the server makes
and attaches through CNI (the pod's ``ns:PATH`` network); NODE is the
host's network and then the host's UTS namespace too, as in CRI-O. PID
POD shares the infra container's pid namespace among the pod's
containers, CONTAINER (kubelet's default) gives each its own, NODE is the
host's, TARGET joins another container's. IPC is shared in the pod (POD)
or the host's (NODE).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skiff.cri.errors import InvalidArgument
from skiff.cri.names import hostname_for
from skiff.runtime.pods.model import PodCreateOptions, PodResources
from skiff.runtime.specgen.devices import DeviceRequest
from skiff.runtime.specgen.generator import (
    Namespace,
    NamespaceMode,
    ResourceOptions,
    SpecGenerator,
    parse_signal,
)
from skiff.runtime.specgen.mounts import BindMount, Mount, resolve_host_sources

# NamespaceMode of the CRI (api.proto)
NS_POD = 0
NS_CONTAINER = 1
NS_NODE = 2
NS_TARGET = 3

# MountPropagation of the CRI
PROPAGATION = {0: "rprivate", 1: "rslave", 2: "rshared"}

# SecurityProfile.ProfileType of the CRI
PROFILE_RUNTIME_DEFAULT = 0
PROFILE_UNCONFINED = 1
PROFILE_LOCALHOST = 2


def _linux(config: Any) -> Any | None:
    return config.linux if config.HasField("linux") else None


def sandbox_namespaces(config: Any) -> tuple[int, int, int, str]:
    """(network, pid, ipc, target_id) of a PodSandboxConfig; kubelet's defaults
    (POD, CONTAINER, POD) when it gives none."""
    linux = _linux(config)
    if linux is None or not linux.HasField("security_context"):
        return NS_POD, NS_CONTAINER, NS_POD, ""
    sc = linux.security_context
    if not sc.HasField("namespace_options"):
        return NS_POD, NS_CONTAINER, NS_POD, ""
    ns = sc.namespace_options
    return int(ns.network), int(ns.pid), int(ns.ipc), str(ns.target_id)


def _check_ns(value: int, what: str, allowed: tuple[int, ...]) -> None:
    if value not in allowed:
        raise InvalidArgument(f"unsupported {what} namespace mode {value}")


def pod_options(
    config: Any,
    *,
    sandbox_id: str,
    name: str,
    netns: Path | None,
    pause_image: str,
) -> PodCreateOptions:
    """The skiff pod for a PodSandboxConfig (``netns``: the namespace CNI attached,
    None for the node's network)."""
    network, pid, ipc, _ = sandbox_namespaces(config)
    _check_ns(network, "network", (NS_POD, NS_NODE))
    _check_ns(pid, "pid", (NS_POD, NS_CONTAINER, NS_NODE))
    _check_ns(ipc, "ipc", (NS_POD, NS_NODE))
    host_net = network == NS_NODE
    share = ["ipc", "net", "uts"]
    if pid in (NS_POD, NS_NODE):
        share.append("pid")
    linux = _linux(config)
    dns = config.dns_config if config.HasField("dns_config") else None
    opts = PodCreateOptions(
        name=name,
        hostname="" if host_net else (config.hostname or hostname_for(config.metadata)),
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        share=share,
        infra_image=pause_image,
        infra_name=name,
        network_mode="host" if host_net else f"ns:{netns}",
        dns_servers=list(dns.servers) if dns is not None else [],
        dns_search=list(dns.searches) if dns is not None else [],
        dns_options=list(dns.options) if dns is not None else [],
        pid_mode="host" if pid == NS_NODE else "private",
        ipc_mode="host" if ipc == NS_NODE else "private",
        uts_mode="host" if host_net else "private",
        sysctls=dict(linux.sysctls) if linux is not None else {},
        cgroup_parent=linux.cgroup_parent if linux is not None else "",
        resources=_pod_resources(linux),
        pod_id=sandbox_id,
        created_by="cri",
    )
    if netns is None and not host_net:
        raise InvalidArgument(f"sandbox {name} needs a network namespace")
    return opts


def _pod_resources(linux: Any | None) -> PodResources:
    out = PodResources()
    if linux is None or not linux.HasField("resources"):
        return out
    res = linux.resources
    if res.cpu_quota > 0 and res.cpu_period > 0:
        out.cpus = res.cpu_quota / res.cpu_period
    if res.cpu_shares > 0:
        out.cpu_shares = int(res.cpu_shares)
    if res.memory_limit_in_bytes > 0:
        out.memory = int(res.memory_limit_in_bytes)
    out.cpuset_cpus = res.cpuset_cpus
    out.cpuset_mems = res.cpuset_mems
    return out


def port_mappings(config: Any) -> list[dict[str, Any]]:
    """The sandbox's hostPort mappings as CNI ``portMappings`` (portmap's
    capability); mappings without a host port only document the pod."""
    from cri_api.v1 import api_pb2

    out = []
    for pm in config.port_mappings:
        if pm.host_port <= 0:
            continue
        if not 0 < pm.container_port <= 65535 or pm.host_port > 65535:
            raise InvalidArgument(
                f"invalid port mapping {pm.host_port}:{pm.container_port}", "ports are 1-65535"
            )
        entry: dict[str, Any] = {
            "hostPort": int(pm.host_port),
            "containerPort": int(pm.container_port),
            "protocol": api_pb2.Protocol.Name(pm.protocol).lower(),
        }
        if pm.host_ip:
            entry["hostIP"] = pm.host_ip
        out.append(entry)
    return out


# --- containers -------------------------------------------------------------------------


def container_spec(config: Any) -> SpecGenerator:
    """The SpecGenerator of a ContainerConfig, before it joins its pod."""
    from cri_api.v1 import api_pb2

    sg = SpecGenerator()
    b = sg.basic
    if config.command:
        b.entrypoint = list(config.command)
        b.command = list(config.args)
    elif config.args:
        b.command = list(config.args)
    b.workdir = config.working_dir
    b.env = {kv.key: kv.value for kv in config.envs}
    b.terminal = config.tty
    b.stdin = config.stdin
    b.labels = dict(config.labels)
    b.annotations = dict(config.annotations)
    if config.stop_signal:
        b.stop_signal = parse_signal(api_pb2.Signal.Name(config.stop_signal))
    sg.storage.mounts = mounts(config.mounts)
    sg.storage.devices = [
        DeviceRequest(
            host_path=d.host_path,
            container_path=d.container_path or d.host_path,
            permissions=d.permissions or "rwm",
        )
        for d in config.devices
    ]
    for device in sg.storage.devices:
        if not device.host_path.startswith("/") or not device.container_path.startswith("/"):
            raise InvalidArgument(
                f"invalid device {device.host_path}:{device.container_path}",
                "device paths must be absolute",
            )
    linux = _linux(config)
    if linux is not None:
        if linux.HasField("security_context"):
            _security(sg, linux.security_context)
        if linux.HasField("resources"):
            sg.resources = resources(linux.resources, sg.resources)
    return sg


def mounts(cri_mounts: Any) -> list[Mount]:
    """CRI mounts → bind mounts, their sources resolved (a missing host path is
    created as a directory, as CRI-O does; a symlink is followed once)."""
    out: list[Mount] = []
    for m in cri_mounts:
        if not m.container_path or not m.container_path.startswith("/"):
            raise InvalidArgument(
                f"invalid mount: container path {m.container_path!r} is not absolute",
                "give an absolute container_path",
            )
        if not m.host_path or not m.host_path.startswith("/"):
            raise InvalidArgument(
                f"invalid mount at {m.container_path}: host path {m.host_path!r} is not absolute",
                "give an absolute host_path",
            )
        if m.HasField("image") and m.image.image:
            raise InvalidArgument(
                f"image volume at {m.container_path}: image volumes are not supported"
            )
        if m.recursive_read_only:
            raise InvalidArgument(
                f"mount at {m.container_path}: recursive read-only mounts are not supported",
                "the runtime status lists recursive_read_only_mounts as unsupported",
            )
        if m.propagation not in PROPAGATION:
            raise InvalidArgument(
                f"mount at {m.container_path}: unknown propagation {m.propagation}"
            )
        if not os.path.lexists(m.host_path):
            try:
                Path(m.host_path).mkdir(mode=0o755, parents=True, exist_ok=True)
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot create the host path {m.host_path} of a mount: {exc.strerror}"
                ) from exc
        out.append(
            BindMount(
                source=m.host_path,
                destination=os.path.normpath(m.container_path),
                read_only=m.readonly,
                recursive=True,
                propagation=PROPAGATION[m.propagation],
                given_source=m.host_path,
            )
        )
    return resolve_host_sources(out)


def _user(sc: Any) -> str | None:
    user: str | None = None
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    elif sc.run_as_username:
        user = sc.run_as_username
    if sc.HasField("run_as_group"):
        if user is None:
            raise InvalidArgument(
                "run_as_group is set without run_as_user or run_as_username",
                "give the user too",
            )
        user = f"{user}:{sc.run_as_group.value}"
    return user


def _seccomp(sc: Any) -> str:
    """skiff's seccomp_profile: "" (the default profile), "unconfined", or a path."""
    if sc.HasField("seccomp"):
        profile = sc.seccomp
        if profile.profile_type == PROFILE_UNCONFINED:
            return "unconfined"
        if profile.profile_type == PROFILE_LOCALHOST:
            return _localhost_profile(profile.localhost_ref)
        return ""
    path = sc.seccomp_profile_path
    if path in ("", "runtime/default", "docker/default"):
        return ""
    if path == "unconfined":
        return "unconfined"
    if path.startswith("localhost/"):
        return _localhost_profile(path.removeprefix("localhost/"))
    raise InvalidArgument(f"unknown seccomp profile {path!r}")


def _localhost_profile(ref: str) -> str:
    if not ref.startswith("/"):
        raise InvalidArgument(
            f"seccomp profile {ref!r} is not an absolute path", "Localhost profiles are files"
        )
    if not Path(ref).is_file():
        raise InvalidArgument(f"seccomp profile {ref} does not exist")
    return ref


def _security(sg: SpecGenerator, sc: Any) -> None:
    sec = sg.security
    sec.user = _user(sc)
    sec.group_add = [str(g) for g in sc.supplemental_groups]
    sec.privileged = sc.privileged
    if sc.HasField("capabilities"):
        sec.cap_add = list(sc.capabilities.add_capabilities)
        sec.cap_drop = list(sc.capabilities.drop_capabilities)
    sec.seccomp_profile = "unconfined" if sc.privileged else _seccomp(sc)
    sec.no_new_privileges = sc.no_new_privs
    if not sc.privileged and (sc.masked_paths or sc.readonly_paths):
        # kubelet sends the whole lists: they replace skiff's defaults
        sec.unmask = ["ALL"]
        sec.mask = list(sc.masked_paths)
        sec.readonly = list(sc.readonly_paths)
    sg.storage.read_only = sc.readonly_rootfs


def resources(res: Any, base: ResourceOptions | None = None) -> ResourceOptions:
    """LinuxContainerResources → ResourceOptions (0 means "not set" in the CRI).

    ``oom_score_adj`` is left out on purpose (module docstring)."""
    out = ResourceOptions() if base is None else base
    if res.cpu_period > 0:
        out.cpu_period = int(res.cpu_period)
    if res.cpu_quota > 0:
        out.cpu_quota = int(res.cpu_quota)
    if res.cpu_shares > 0:
        out.cpu_shares = max(2, int(res.cpu_shares))
    if res.memory_limit_in_bytes > 0:
        out.memory = int(res.memory_limit_in_bytes)
        if res.memory_swap_limit_in_bytes > 0:
            out.memory_swap = max(int(res.memory_swap_limit_in_bytes), out.memory)
    if res.cpuset_cpus:
        out.cpuset_cpus = res.cpuset_cpus
    if res.cpuset_mems:
        out.cpuset_mems = res.cpuset_mems
    return out


def container_namespaces(config: Any) -> tuple[int, str]:
    """(pid mode, target ID) a ContainerConfig asks for (kubelet's default CONTAINER)."""
    linux = _linux(config)
    if linux is None or not linux.HasField("security_context"):
        return NS_CONTAINER, ""
    sc = linux.security_context
    if not sc.HasField("namespace_options"):
        return NS_CONTAINER, ""
    return int(sc.namespace_options.pid), str(sc.namespace_options.target_id)


def pid_namespace(pid_mode: int, target_id: str, infra_id: str) -> Namespace:
    if pid_mode in (NS_POD, NS_NODE):
        return Namespace(NamespaceMode.CONTAINER, infra_id)
    if pid_mode == NS_TARGET:
        if not target_id:
            raise InvalidArgument("pid namespace TARGET needs a target_id")
        return Namespace(NamespaceMode.CONTAINER, target_id)
    return Namespace(NamespaceMode.PRIVATE)
