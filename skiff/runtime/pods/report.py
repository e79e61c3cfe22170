"""What ``pod inspect`` and ``pod ps`` show about pods (podman 4.3's shapes).

``inspect_pod`` returns podman's ``InspectPodData`` as a dict (key order
and omitted-when-empty fields as podman's JSON tags say: ``Labels``,
resource limits and ``InfraConfig`` of a pod without infra are left out).
``PodReport`` is one ``pod ps`` row: the fields podman's templates know
(``{{.ID}}``, ``{{.Name}}``, ``{{.Status}}``, ``{{.Created}}``,
``{{.InfraID}}``, ``{{.NumberOfContainers}}``, ``{{.ContainerNames}}``,
``{{.ContainerIds}}``, ``{{.ContainerStatuses}}``, ``{{.Cgroup}}``,
``{{.Networks}}``, ``{{.Labels}}``) and its ``--format json`` record.
Both are plain data, so the CRI's PodSandboxStatus can be built from the
same reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from skiff.runtime.engine import Runtime
from skiff.runtime.inspect import go_time
from skiff.runtime.network.model import DEFAULT_NETWORK
from skiff.runtime.pods.lifecycle import containers_of
from skiff.runtime.pods.model import Pod, PodStatus, pod_status
from skiff.runtime.records import Container
from skiff.runtime.specgen.limits import DEFAULT_CPU_PERIOD
from skiff.runtime.specgen.spec import DEFAULT_CGROUP_PARENT

_INSPECT_SHARE_ORDER = ("cgroup", "ipc", "net", "pid", "uts")


def _port_bindings(ports: list[dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        count = int(p.get("range") or 1)
        for i in range(count):
            key = f"{int(p['container_port']) + i}/{p.get('protocol') or 'tcp'}"
            host_port = int(p.get("host_port") or 0)
            out.setdefault(key, []).append(
                {
                    "HostIp": str(p.get("host_ip") or ""),
                    "HostPort": str(host_port + i) if host_port else "",
                }
            )
    return out


def _networks(pod: Pod) -> list[str]:
    if pod.config.network_mode != "bridge":
        return []
    return list(pod.config.networks) or [DEFAULT_NETWORK]


def _infra_ports(rt: Runtime, pod: Pod, containers: list[Container]) -> list[dict[str, Any]]:
    """The ports as published (host ports chosen at start), else as asked for."""
    infra = next((c for c in containers if c.config.infra), None)
    if infra is not None and infra.state.network_status.get("ports"):
        return list(infra.state.network_status["ports"])
    return list(pod.config.ports)


def _limits(pod: Pod) -> dict[str, Any]:
    r = pod.config.resources
    out: dict[str, Any] = {}
    if r.cpus is not None:
        out["cpu_period"] = DEFAULT_CPU_PERIOD
        out["cpu_quota"] = int(r.cpus * DEFAULT_CPU_PERIOD)
    if r.cpu_shares is not None:
        out["cpu_shares"] = r.cpu_shares
    if r.cpuset_cpus:
        out["cpuset_cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        out["cpuset_mems"] = r.cpuset_mems
    if r.memory is not None:
        out["memory_limit"] = r.memory
        out["memory_swap"] = r.memory_swap if r.memory_swap is not None else 2 * r.memory
    return out


def inspect_pod(rt: Runtime, pod: Pod) -> dict[str, Any]:
    """podman's ``pod inspect`` object for one pod."""
    containers = containers_of(rt, pod)
    cfg = pod.config
    data: dict[str, Any] = {
        "Id": pod.id,
        "Name": pod.name,
        "Created": go_time(pod.created),
        "CreateCommand": list(cfg.create_command) or None,
        "ExitPolicy": cfg.exit_policy,
        "State": pod_status(containers).value,
        "Hostname": cfg.hostname,
    }
    if cfg.labels:
        data["Labels"] = dict(cfg.labels)
    data.update(
        {
            "CreateCgroup": True,
            "CgroupParent": cfg.cgroup_parent or DEFAULT_CGROUP_PARENT,
            "CgroupPath": cfg.cgroup_path,
            "CreateInfra": cfg.infra,
        }
    )
    if cfg.infra:
        data["InfraContainerID"] = cfg.infra_id
        infra_config: dict[str, Any] = {
            "PortBindings": _port_bindings(_infra_ports(rt, pod, containers)),
            "HostNetwork": cfg.network_mode == "host",
            "StaticIP": "",
            "StaticMAC": "",
            "NoManageResolvConf": False,
            "DNSServer": list(cfg.dns_servers) or None,
            "DNSSearch": list(cfg.dns_search) or None,
            "DNSOption": list(cfg.dns_options) or None,
            "NoManageHosts": False,
            "HostAdd": list(cfg.add_hosts) or None,
            "Networks": _networks(pod),
            "NetworkOptions": None,
        }
        limits = _limits(pod)
        for key in ("cpu_period", "cpu_quota"):
            if key in limits:
                infra_config[key] = limits[key]
        infra_config.update({"pid_ns": cfg.pid_mode, "userns": "host", "uts_ns": cfg.uts_mode})
        data["InfraConfig"] = infra_config
    data["SharedNamespaces"] = [k for k in _INSPECT_SHARE_ORDER if k in cfg.share] or None
    data["NumContainers"] = len(containers)
    data["Containers"] = [
        {"Id": c.id, "Name": c.name, "State": c.state.status.value} for c in containers
    ]
    data.update(_limits(pod))
    return data


@dataclass
class PodContainerInfo:
    Id: str
    Names: str
    Status: str


@dataclass
class PodReport:
    """One pod as ``pod ps`` templates see it (podman's ListPodsReport fields)."""

    Id: str
    Name: str
    Status: str
    Created: str
    CreatedAt: float
    InfraId: str
    Cgroup: str
    Labels: dict[str, str]
    Networks: list[str]
    Containers: list[PodContainerInfo] = field(default_factory=list)
    Namespace: str = ""
    no_trunc: bool = False

    # the table's fields, podman's ListPodReporter methods: the template
    # engine finds ``{{.ID}}`` as ``id()``, ``{{.NumberOfContainers}}`` as
    # ``number_of_containers()`` (``{{.Id}}`` is the field)

    def id(self) -> str:
        return self.Id if self.no_trunc else self.Id[:12]

    def infra_id(self) -> str:
        return self.InfraId if self.no_trunc else self.InfraId[:12]

    def infra_container_id(self) -> str:
        return self.infra_id()

    def number_of_containers(self) -> int:
        return len(self.Containers)

    def container_names(self) -> str:
        return ",".join(c.Names for c in self.Containers)

    def container_ids(self) -> str:
        return ",".join(c.Id if self.no_trunc else c.Id[:12] for c in self.Containers)

    def container_statuses(self) -> str:
        return ",".join(c.Status for c in self.Containers)

    def json(self) -> dict[str, Any]:
        """podman's ``pod ps --format json`` record."""
        return {
            "Cgroup": self.Cgroup,
            "Containers": [
                {"Id": c.Id, "Names": c.Names, "Status": c.Status} for c in self.Containers
            ],
            "Created": go_time(self.CreatedAt),
            "Id": self.Id,
            "InfraId": self.InfraId,
            "Name": self.Name,
            "Namespace": self.Namespace,
            "Networks": list(self.Networks),
            "Status": self.Status,
            "Labels": dict(self.Labels),
        }


def pod_report(
    rt: Runtime, pod: Pod, containers: list[Container] | None = None, now: float | None = None
) -> PodReport:
    from skiff.gotemplate.units import human_duration_since

    containers = containers if containers is not None else containers_of(rt, pod)
    status: PodStatus = pod_status(containers)
    return PodReport(
        Id=pod.id,
        Name=pod.name,
        Status=status.value,
        Created=human_duration_since(pod.created, now if now is not None else time.time()),
        CreatedAt=pod.created,
        InfraId=pod.config.infra_id,
        Cgroup=pod.config.cgroup_parent or DEFAULT_CGROUP_PARENT,
        Labels=dict(pod.config.labels),
        Networks=_networks(pod),
        Containers=[PodContainerInfo(c.id, c.name, c.state.status.value) for c in containers],
    )
