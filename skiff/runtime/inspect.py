"""``container inspect``: a container as podman 4.3's inspect JSON describes it.

The shape (field names, order, types, zero values) follows ``podman
container inspect`` of comparable containers on a private podman store, so
that ``--format '{{.State.Pid}}'`` templates and scripts written against
podman work unchanged. Values come from the container's record (its
SpecGenerator, state and network status), its image's config, and — once
the container has run — the config.json it last ran with (environment,
capabilities, rlimits as the runtime got them).

Where skiff has no such notion the field keeps podman's zero value:
``MountLabel``/``ProcessLabel`` (no SELinux), ``AppArmorProfile``,
``Health`` (no health checks), checkpoint times, ``Namespace`` (no libpod
namespaces). Differences from podman, on purpose:

- ``CgroupPath`` is skiff's cgroupfs path (``/skiff/<id>``).
- ``CapAdd``/``CapDrop`` are relative to skiff's default capability set
  (podman compares against its compiled-in list, so a plain podman
  container shows three dropped capabilities that were never asked for).
- ``ResolvConfPath``/``HostsPath``/``HostnamePath`` name the files in the
  container's userdata directory once they exist (podman keeps them in its
  run root).
- ``Config.Env`` of a container that never ran is computed from the image
  and the options, with HOME as the image's user would get it in podman
  only once the container ran (config.json).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from skiff.oci.config import ImageConfig
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status

ZERO_TIME = "0001-01-01T00:00:00Z"
OCI_VERSION = "1.0.2-dev"


def go_time(ts: float) -> str:
    """A Unix time as Go's RFC 3339 with nanoseconds, UTC (podman's inspect times)."""
    if not ts:
        return ZERO_TIME
    dt = datetime.fromtimestamp(ts, UTC)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def _octal(value: int) -> str:
    return f"{value:04o}"


# --- what the container ran with ---------------------------------------------------------


def _oci_config(rt: Runtime, container: Container) -> dict[str, Any] | None:
    """The config.json the container last ran with (None before its first start)."""
    path = rt.paths(container.id).config_json
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _image_config(rt: Runtime, container: Container) -> ImageConfig:
    if container.config.image_id is None:
        return ImageConfig({})
    image = rt.store.images.find(container.config.image_id)
    return ImageConfig.from_bytes(image.config) if image is not None else ImageConfig({})


def _image_digest(rt: Runtime, container: Container) -> str:
    if container.config.image_id is None:
        return ""
    image = rt.store.images.find(container.config.image_id)
    if image is None or image.digest is None:
        return ""
    return str(image.digest)


# --- sections ----------------------------------------------------------------------------


def _state(container: Container, sg: Any) -> dict[str, Any]:
    from skiff.runtime.specgen.spec import cgroups_path

    state = container.state
    running = state.status in (Status.RUNNING, Status.PAUSED)
    return {
        "OciVersion": OCI_VERSION,
        "Status": state.status.value,
        "Running": state.status == Status.RUNNING,
        "Paused": state.status == Status.PAUSED,
        "Restarting": False,
        "OOMKilled": state.oom_killed,
        "Dead": False,
        "Pid": state.pid if running else 0,
        "ConmonPid": state.conmon_pid if running else 0,
        "ExitCode": state.exit_code if state.exit_code is not None else 0,
        "Error": state.error,
        "StartedAt": go_time(state.started_at),
        "FinishedAt": go_time(state.finished_at),
        "Health": {"Status": "", "FailingStreak": 0, "Log": None},
        "CgroupPath": cgroups_path(sg.resources, container.id) if running else "",
        "CheckpointedAt": ZERO_TIME,
        "RestoredAt": ZERO_TIME,
    }


def _capabilities(sg: Any, oci: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """(effective, bounding) as the process got them, or as it would."""
    caps = (oci or {}).get("process", {}).get("capabilities")
    if isinstance(caps, dict):
        return list(caps.get("effective") or []), list(caps.get("bounding") or [])
    from skiff.runtime.specgen.capabilities import capability_sets
    from skiff.runtime.specgen.host import HostInfo

    sets = capability_sets(
        privileged=sg.security.privileged,
        cap_add=sg.security.cap_add,
        cap_drop=sg.security.cap_drop,
        uid=0,
        available=HostInfo.detect().bounding_caps,
    )
    return sets.effective, sets.bounding


def _graph_driver(rt: Runtime, container: Container) -> dict[str, Any]:
    store = rt.store
    driver = store.driver_name
    storage = store.containers.find(container.id)
    if storage is None or driver != "overlay":
        return {"Name": driver, "Data": None}
    chain = [layer.id for layer in store.layers.chain(storage.layer_id)]
    upper = store.driver.layer_dir(storage.layer_id)
    data: dict[str, str] = {}
    lowers = [str(store.driver.layer_dir(i)) for i in chain if i != storage.layer_id]
    if lowers:
        data["LowerDir"] = ":".join(lowers)
    data["MergedDir"] = str(store.driver.mount_point(storage.layer_id))
    data["UpperDir"] = str(upper)
    data["WorkDir"] = str(upper.parent / "work")
    return {"Name": driver, "Data": data}


def _mounts(rt: Runtime, container: Container, sg: Any) -> list[dict[str, Any]]:
    """Bind and volume mounts (tmpfs ones are in HostConfig.Tmpfs, as in podman)."""
    from skiff.runtime.specgen.mounts import BindMount, VolumeMount

    recorded: list[Any] = []
    try:
        from skiff.runtime.volumes import recorded_mounts

        recorded = list(recorded_mounts(rt.store, container.id))
    except ImportError:
        recorded = []
    out: list[dict[str, Any]] = []
    if recorded:
        for m in recorded:
            if m.kind == "tmpfs":
                continue
            entry: dict[str, Any] = {"Type": m.kind}
            if m.kind == "volume":
                entry["Name"] = m.name
            entry.update(
                {
                    "Source": m.source,
                    "Destination": m.destination,
                    "Driver": "local" if m.kind == "volume" else "",
                    "Mode": "",
                    "Options": [
                        o for o in m.options if o not in ("ro", "rw") and o != m.propagation
                    ],
                    "RW": not m.read_only,
                    "Propagation": m.propagation or "rprivate",
                }
            )
            out.append(entry)
        return out
    for m in sg.storage.mounts:
        if isinstance(m, BindMount):
            out.append(
                {
                    "Type": "bind",
                    "Source": m.source,
                    "Destination": m.destination,
                    "Driver": "",
                    "Mode": "",
                    "Options": ["rbind" if m.recursive else "bind"],
                    "RW": not m.read_only,
                    "Propagation": m.propagation or "rprivate",
                }
            )
        elif isinstance(m, VolumeMount):
            out.append(
                {
                    "Type": "volume",
                    "Name": m.name,
                    "Source": "",
                    "Destination": m.destination,
                    "Driver": "local",
                    "Mode": "",
                    "Options": ["nosuid", "nodev", "rbind"],
                    "RW": not m.read_only,
                    "Propagation": m.propagation or "rprivate",
                }
            )
    return out


def _dependencies(container: Container, sg: Any) -> list[str]:
    from skiff.runtime.specgen.generator import NamespaceMode

    deps: list[str] = []
    for ns in (sg.network.pid, sg.network.ipc, sg.network.uts, sg.network.network):
        if ns.mode == NamespaceMode.CONTAINER and ns.value not in deps:
            deps.append(ns.value)
    for other in container.config.volumes_from:
        ref = other.split(":", 1)[0]
        if ref not in deps:
            deps.append(ref)
    return deps


def published_ports(container: Container) -> list[dict[str, Any]]:
    """The container's published ports as set up (running), else as asked."""
    state = container.state
    if state.network_status and state.network_status.get("ports") is not None:
        return list(state.network_status["ports"])
    return list(container.config.ports)


def port_bindings(container: Container, *, include_exposed: bool) -> dict[str, Any]:
    """podman's ``Ports``/``PortBindings`` map: ``"80/tcp": [{"HostIp", "HostPort"}]``,
    ranges expanded, exposed-only ports as null (``include_exposed``)."""
    out: dict[str, Any] = {}
    for p in published_ports(container):
        rng = int(p.get("range") or 1)
        for offset in range(rng):
            for proto in str(p.get("protocol") or "tcp").split(","):
                key = f"{int(p['container_port']) + offset}/{proto}"
                out.setdefault(key, []).append(
                    {
                        "HostIp": p.get("host_ip") or "",
                        "HostPort": str(int(p.get("host_port") or 0) + offset),
                    }
                )
    if include_exposed:
        for exposed in container.config.exposed_ports:
            key = exposed if "/" in exposed else f"{exposed}/tcp"
            out.setdefault(key, None)
    return out


_BASIC_NETWORK_CONFIG: Mapping[str, Any] = MappingProxyType(
    {
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": "",
    }
)
"""podman's InspectBasicNetworkConfig, empty: the leading fields of
NetworkSettings and of each of its Networks (Go embeds the struct in both)."""


def _network_entry(result: dict[str, Any] | None, name: str, aliases: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        **_BASIC_NETWORK_CONFIG,
        "NetworkID": name,
        "DriverOpts": None,
        "IPAMConfig": None,
        "Links": None,
        "Aliases": aliases or None,
    }
    if not result:
        return entry
    import ipaddress

    for iface in (result.get("interfaces") or {}).values():
        if not entry["MacAddress"]:
            entry["MacAddress"] = iface.get("mac_address") or ""
        for subnet in iface.get("subnets") or []:
            net = ipaddress.ip_interface(subnet["ipnet"])
            gateway = subnet.get("gateway") or ""
            if net.version == 4 and not entry["IPAddress"]:
                entry["IPAddress"] = str(net.ip)
                entry["IPPrefixLen"] = net.network.prefixlen
                entry["Gateway"] = gateway
            elif net.version == 6 and not entry["GlobalIPv6Address"]:
                entry["GlobalIPv6Address"] = str(net.ip)
                entry["GlobalIPv6PrefixLen"] = net.network.prefixlen
                entry["IPv6Gateway"] = gateway
    return entry


def _network_settings(container: Container) -> dict[str, Any]:
    from skiff.runtime.network.model import DEFAULT_NETWORK

    state = container.state
    running = state.status in (Status.RUNNING, Status.PAUSED)
    settings: dict[str, Any] = {
        **_BASIC_NETWORK_CONFIG,
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": port_bindings(container, include_exposed=True) if running else {},
        "SandboxKey": state.netns if running else "",
    }
    if container.config.network_mode != "bridge":
        return settings
    results: dict[str, Any] = (state.network_status or {}).get("networks") or {}
    names = list(container.config.networks) or [DEFAULT_NETWORK]
    aliases = list(container.config.network_aliases.get("*", []))
    short = container.id[:12]
    networks = {}
    for name in names:
        entry = _network_entry(
            results.get(name) if running else None, name, [*aliases, short] if running else aliases
        )
        networks[name] = entry
    if len(networks) == 1:
        only = next(iter(networks.values()))
        for key in (
            "Gateway",
            "IPAddress",
            "IPPrefixLen",
            "IPv6Gateway",
            "GlobalIPv6Address",
            "GlobalIPv6PrefixLen",
            "MacAddress",
        ):
            settings[key] = only[key]
    settings["Networks"] = networks
    return settings


def _entrypoint_and_cmd(sg: Any, image: ImageConfig) -> tuple[list[str], list[str]]:
    if sg.basic.entrypoint is not None:
        return list(sg.basic.entrypoint), list(sg.basic.command or [])
    cmd = list(sg.basic.command) if sg.basic.command is not None else image.cmd
    return image.entrypoint, cmd


def _env(
    container: Container, sg: Any, image: ImageConfig, oci: dict[str, Any] | None
) -> list[str]:
    env = (oci or {}).get("process", {}).get("env")
    if isinstance(env, list):
        return [str(e) for e in env]
    from skiff.runtime.specgen.env import merge_env

    user = sg.security.user if sg.security.user is not None else image.user
    home = "/root" if not user or user.split(":", 1)[0] in ("0", "root") else "/"
    hostname = sg.basic.hostname or container.id[:12]
    return merge_env(image.env, sg.basic.env, hostname=hostname, home=home)


def _config(
    container: Container, sg: Any, image: ImageConfig, oci: dict[str, Any] | None
) -> dict[str, Any]:
    from skiff.runtime.specgen.generator import NamespaceMode

    entrypoint, cmd = _entrypoint_and_cmd(sg, image)
    annotations = dict((oci or {}).get("annotations") or {})
    if not annotations:
        annotations = dict(container.config.annotations)
        annotations.setdefault("io.container.manager", "skiff")
        annotations.setdefault(
            "org.opencontainers.image.stopSignal", str(container.config.stop_signal)
        )
    hostname = sg.basic.hostname
    if not hostname and sg.network.uts.mode == NamespaceMode.PRIVATE:
        hostname = container.id[:12]
    volumes = image.volumes
    return {
        "Hostname": hostname,
        "Domainname": "",
        "User": sg.security.user if sg.security.user is not None else image.user,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": container.config.tty,
        "OpenStdin": container.config.stdin,
        "StdinOnce": False,
        "Env": _env(container, sg, image, oci),
        "Cmd": cmd or None,
        "Image": container.config.image_name,
        "Volumes": {v: {} for v in volumes} if volumes else None,
        "WorkingDir": sg.basic.workdir or image.working_dir or "/",
        "Entrypoint": " ".join(entrypoint),
        "OnBuild": None,
        "Labels": dict(container.config.labels) or None,
        "Annotations": annotations,
        "StopSignal": container.config.stop_signal,
        "HealthcheckOnFailureAction": "none",
        "CreateCommand": list(getattr(container.config, "create_command", []) or []) or None,
        "Umask": _octal(sg.basic.umask),
        "Timeout": 0,
        "StopTimeout": container.config.stop_timeout,
        "Passwd": True,
        "sdNotifyMode": "container",
    }


def _namespace_mode(ns: Any, private: str) -> str:
    from skiff.runtime.specgen.generator import NamespaceMode

    if ns.mode == NamespaceMode.HOST:
        return "host"
    if ns.mode == NamespaceMode.CONTAINER:
        return f"container:{ns.value}"
    if ns.mode == NamespaceMode.PATH:
        return f"ns:{ns.value}"
    return private


def _binds(rt: Runtime, container: Container, sg: Any) -> list[str]:
    from skiff.runtime.specgen.mounts import BindMount, VolumeMount

    out = []
    for m in sg.storage.mounts:
        if isinstance(m, BindMount):
            opts = ["ro" if m.read_only else "rw", m.propagation or "rprivate"]
            opts.append("rbind" if m.recursive else "bind")
            out.append(f"{m.source}:{m.destination}:{','.join(opts)}")
        elif isinstance(m, VolumeMount) and m.name:
            opts = ["ro" if m.read_only else "rw", m.propagation or "rprivate", "nosuid", "nodev"]
            out.append(f"{m.name}:{m.destination}:{','.join([*opts, 'rbind'])}")
    return out


def _ulimits(sg: Any, oci: dict[str, Any] | None) -> list[dict[str, Any]]:
    rlimits = (oci or {}).get("process", {}).get("rlimits")
    if not isinstance(rlimits, list):
        from skiff.runtime.specgen.host import HostInfo
        from skiff.runtime.specgen.limits import rlimits as default_rlimits

        rlimits = [u.to_json() for u in default_rlimits(sg.resources.ulimits, HostInfo.detect())]
    return [{"Name": r["type"], "Soft": r["soft"], "Hard": r["hard"]} for r in rlimits]


def _cap_diff(bounding: list[str]) -> tuple[list[str], list[str]]:
    from skiff.runtime.specgen.capabilities import DEFAULT_CAPABILITIES

    defaults = set(DEFAULT_CAPABILITIES)
    have = set(bounding)
    return sorted(have - defaults), sorted(defaults - have)


def _host_config(
    rt: Runtime, container: Container, sg: Any, oci: dict[str, Any] | None, bounding: list[str]
) -> dict[str, Any]:
    from skiff.runtime.specgen.mounts import TmpfsMount

    res, net, sec = sg.resources, sg.network, sg.security
    cap_add, cap_drop = _cap_diff(bounding)
    restart = container.config.restart
    memory_swap = (
        res.memory_swap
        if res.memory_swap is not None
        else (2 * res.memory if res.memory is not None else 0)
    )
    cgroup_v2 = _cgroup_version() == 2
    return {
        "Binds": _binds(rt, container, sg),
        "CgroupManager": "cgroupfs",
        "CgroupMode": "private" if cgroup_v2 else "host",
        "ContainerIDFile": "",
        "LogConfig": {
            "Type": container.config.log_driver,
            "Config": None,
            "Path": container.config.log_path,
            "Tag": "",
            "Size": "0B",
        },
        "NetworkMode": container.config.network_mode,
        "PortBindings": port_bindings(container, include_exposed=False),
        "RestartPolicy": {
            "Name": "" if restart.name == "no" else restart.name,
            "MaximumRetryCount": restart.max_retries,
        },
        "AutoRemove": container.config.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": list(container.config.volumes_from) or None,
        "CapAdd": cap_add,
        "CapDrop": cap_drop,
        "Dns": list(net.dns_servers),
        "DnsOptions": list(net.dns_options),
        "DnsSearch": list(net.dns_search),
        "ExtraHosts": [f"{';'.join(h.names)}:{h.address}" for h in net.add_hosts],
        "GroupAdd": list(sec.group_add),
        "IpcMode": _namespace_mode(net.ipc, "shareable"),
        "Cgroup": "",
        "Cgroups": "default",
        "Links": None,
        "OomScoreAdj": res.oom_score_adj or 0,
        "PidMode": _namespace_mode(net.pid, "private"),
        "Privileged": sec.privileged,
        "PublishAllPorts": container.config.publish_all,
        "ReadonlyRootfs": sg.storage.read_only,
        "SecurityOpt": _security_opts(sec),
        "Tmpfs": {
            m.destination: ",".join(m.options)
            for m in sg.storage.mounts
            if isinstance(m, TmpfsMount)
        },
        "UTSMode": _namespace_mode(net.uts, "private"),
        "UsernsMode": "",
        "ShmSize": sg.storage.shm_size,
        "Runtime": "oci",
        "ConsoleSize": [0, 0],
        "Isolation": "",
        "CpuShares": res.cpu_shares or 0,
        "Memory": res.memory or 0,
        "NanoCpus": round(res.cpus * 1e9) if res.cpus else 0,
        "CgroupParent": res.cgroup_parent,
        "BlkioWeight": 0,
        "BlkioWeightDevice": None,
        "BlkioDeviceReadBps": None,
        "BlkioDeviceWriteBps": None,
        "BlkioDeviceReadIOps": None,
        "BlkioDeviceWriteIOps": None,
        "CpuPeriod": res.cpu_period or 0,
        "CpuQuota": res.cpu_quota or 0,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "CpusetCpus": res.cpuset_cpus,
        "CpusetMems": res.cpuset_mems,
        "Devices": [
            {
                "PathOnHost": d.host_path,
                "PathInContainer": d.container_path,
                "CgroupPermissions": d.permissions,
            }
            for d in sg.storage.devices
        ],
        "DiskQuota": 0,
        "KernelMemory": 0,
        "MemoryReservation": res.memory_reservation or 0,
        "MemorySwap": memory_swap,
        "MemorySwappiness": res.memory_swappiness if res.memory_swappiness is not None else 0,
        "OomKillDisable": False,
        "PidsLimit": res.pids_limit if res.pids_limit is not None else 0,
        "Ulimits": _ulimits(sg, oci),
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "CgroupConf": None,
    }


def _cgroup_version() -> int:
    from skiff.runtime.specgen.host import detect_cgroup_layout

    return detect_cgroup_layout().version


def _security_opts(sec: Any) -> list[str]:
    out = []
    if sec.seccomp_profile:
        out.append(f"seccomp={sec.seccomp_profile}")
    if sec.no_new_privileges:
        out.append("no-new-privileges")
    if sec.label_disable:
        out.append("label=disable")
    return out


def _existing(path: Path) -> str:
    return str(path) if path.exists() else ""


def _size_of(path: Path) -> int:
    """Bytes of the files and links under ``path`` (a layer's diff), links not followed."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


# --- the whole -----------------------------------------------------------------------------


def inspect_container(rt: Runtime, container: Container, *, size: bool = False) -> dict[str, Any]:
    """podman's inspect JSON object for one container (synced with reality first)."""
    from skiff.runtime import lifecycle
    from skiff.runtime.create import spec_of
    from skiff.runtime.exec import exec_ids

    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
    sessions = exec_ids(rt, container)
    container = rt.records.reload(container)
    sg = spec_of(container)
    image = _image_config(rt, container)
    oci = _oci_config(rt, container)
    paths = rt.paths(container.id)
    effective, bounding = _capabilities(sg, oci)
    command = list(container.config.command)
    out: dict[str, Any] = {
        "Id": container.id,
        "Created": go_time(container.created),
        "Path": command[0] if command else "",
        "Args": command[1:],
        "State": _state(container, sg),
        "Image": container.config.image_id or "",
        "ImageDigest": _image_digest(rt, container),
        "ImageName": container.config.image_name,
        "Rootfs": "" if container.config.rootfs_image else container.config.image_name,
        "Pod": container.config.pod_id or "",
        "ResolvConfPath": _existing(paths.userdata / "resolv.conf"),
        "HostnamePath": _existing(paths.userdata / "hostname"),
        "HostsPath": _existing(paths.userdata / "hosts"),
        "StaticDir": str(paths.userdata),
        "OCIConfigPath": str(paths.config_json),
        "OCIRuntime": container.config.runtime,
        "ConmonPidFile": str(paths.conmon_pid_file),
        "PidFile": str(paths.pid_file),
        "Name": container.name,
        "RestartCount": container.state.restart_count,
        "Driver": rt.store.driver_name,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "EffectiveCaps": effective,
        "BoundingCaps": bounding,
        "ExecIDs": sessions,
        "GraphDriver": _graph_driver(rt, container),
        "Mounts": _mounts(rt, container, sg),
        "Dependencies": _dependencies(container, sg),
        "NetworkSettings": _network_settings(container),
        "Namespace": "",
        "IsInfra": container.config.infra,
        "IsService": False,
        "Config": _config(container, sg, image, oci),
        "HostConfig": _host_config(rt, container, sg, oci, bounding),
    }
    if size:
        storage = rt.store.containers.find(container.id)
        rw = _size_of(rt.store.driver.layer_dir(storage.layer_id)) if storage else 0
        image_size = 0
        if container.config.image_id:
            found = rt.store.images.find(container.config.image_id)
            image_size = rt.store.image_size(found) if found is not None else 0
        out["SizeRw"] = rw
        out["SizeRootFs"] = rw + image_size
    return out
