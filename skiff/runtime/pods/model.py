"""What a pod is: its options, its recorded config and state, its status.

A pod is a group of containers that share kernel namespaces (network, IPC
and UTS unless ``--share`` says otherwise) held open by an *infra*
container running ``catatonit -P``; the infra container owns the network
(its namespace, networks and published ports), and the pod owns a cgroup
(``CgroupPath``) that every member's cgroup lives in, so limits set on the
pod apply to all of it and its counters add up the whole pod.

``PodCreateOptions`` is the one input of ``create_pod``: the CLI fills it
from ``skiff pod create``'s flags, ``kube play`` from a Pod spec, and the
CRI server from a PodSandboxConfig, which is why it speaks in namespaces
(host or private per kind), DNS, port mappings, sysctls, labels and
annotations rather than in flags. What is fixed at create is recorded as
``PodConfig``; ``PodState`` holds the little that changes (the cgroup
made, the last status seen). A pod's *status* is never stored: it is
computed from its containers each time, with podman's rules
(``pod_status``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from skiff.errors import StorageError, UsageError
from skiff.runtime.records import Container, Status

NAME_RE_TEXT = "[a-zA-Z0-9][a-zA-Z0-9_.-]*"
_NAME_RE = re.compile(rf"\A{NAME_RE_TEXT}\Z")

SHAREABLE = ("cgroup", "ipc", "net", "pid", "uts")
"""podman's ``--share`` kinds (``user`` is not supported: skiff has no user namespaces)."""
DEFAULT_SHARE = ("ipc", "net", "uts")
SPEC_KIND = {"cgroup": "cgroup", "ipc": "ipc", "net": "network", "pid": "pid", "uts": "uts"}
"""``--share`` names → the SpecGenerator's namespace fields."""

EXIT_POLICIES = ("continue", "stop")

LABEL_POD_VOLUME = "io.skiff.pod"
"""Label of a volume that belongs to one pod (kube emptyDir/configMap volumes):
the pod ID; ``pod rm`` removes such volumes with the pod."""


class PodUnknown(StorageError):
    """No pod with that name or ID."""


def unknown_pod(ref: str) -> PodUnknown:
    return PodUnknown(
        f"no pod with name or ID {ref} found: no such pod", "list pods with 'skiff pod ps'"
    )


class PodStatus(StrEnum):
    """podman's pod states, as ``pod ps`` prints them."""

    CREATED = "Created"
    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPED = "Stopped"
    EXITED = "Exited"
    DEGRADED = "Degraded"
    ERROR = "Error"


def check_pod_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(f"pod name {name!r} is not valid", f"names must match {NAME_RE_TEXT}")
    return name


def parse_share(text: str) -> list[str]:
    """``--share``: a comma list of kinds, ``none``, or ``+kind`` to add to the default."""
    text = text.strip()
    if text == "none":
        return []
    add = text.startswith("+")
    wanted = [p.strip() for p in text.lstrip("+").split(",") if p.strip()]
    for kind in wanted:
        if kind not in SHAREABLE:
            raise UsageError(
                f"invalid kernel namespace to share: {kind}. "
                "Options are: cgroup, ipc, net, pid, uts or none"
            )
    chosen = [*DEFAULT_SHARE, *wanted] if add else wanted
    return sorted(set(chosen))


@dataclass
class PodResources:
    """Limits on the pod's cgroup (``pod create --cpus/--memory/...``): every
    member's cgroup is below it, so they bound the pod as a whole."""

    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    memory: int | None = None
    memory_swap: int | None = None
    """memory + swap; -1 unlimited; None: twice ``memory`` (podman)."""
    pids_limit: int | None = None

    def empty(self) -> bool:
        return self == PodResources()


@dataclass
class PodCreateOptions:
    """Everything a pod is made from (``pod create``, ``kube play``, the CRI)."""

    name: str = ""
    """"" picks a random name."""
    hostname: str = ""
    """The UTS namespace's hostname; "" is the pod's name."""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    share: list[str] | None = None
    """Kinds from SHAREABLE; None: ipc, net, uts (or nothing without infra)."""
    infra: bool = True
    infra_image: str = ""
    """An image in the store; "" is skiff's own pause image (infra.py)."""
    infra_command: list[str] | None = None
    infra_name: str = ""
    network_mode: str = "bridge"
    """bridge, none, host or ns:PATH (the infra container's network)."""
    networks: list[str] = field(default_factory=list)
    network_aliases: list[str] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    """PortMapping.to_json() records, published by the infra container."""
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    """``NAME:IP`` entries (``--add-host``)."""
    pid_mode: str = "private"
    """private or host: the pid namespace the infra gets (members join it with
    ``--share pid``)."""
    ipc_mode: str = "private"
    uts_mode: str = "private"
    sysctls: dict[str, str] = field(default_factory=dict)
    shm_size: int | None = None
    cgroup_parent: str = ""
    """"" is skiff's default parent (/skiff); the pod's cgroup is PARENT/POD_ID."""
    resources: PodResources = field(default_factory=PodResources)
    exit_policy: str = "continue"
    """continue, or stop: the pod stops when its last member exits."""
    pod_id: str = ""
    """"" picks a random ID (the CRI may give its own)."""
    created_by: str = "cli"
    create_command: list[str] = field(default_factory=list)


@dataclass
class PodConfig:
    """What a pod is: fixed at create."""

    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    share: list[str] = field(default_factory=list)
    infra: bool = True
    infra_id: str = ""
    infra_image: str = ""
    infra_command: list[str] = field(default_factory=list)
    network_mode: str = "bridge"
    networks: list[str] = field(default_factory=list)
    network_aliases: list[str] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    pid_mode: str = "private"
    ipc_mode: str = "private"
    uts_mode: str = "private"
    sysctls: dict[str, str] = field(default_factory=dict)
    shm_size: int | None = None
    cgroup_parent: str = ""
    cgroup_path: str = ""
    resources: PodResources = field(default_factory=PodResources)
    exit_policy: str = "continue"
    created_by: str = "cli"
    create_command: list[str] = field(default_factory=list)


@dataclass
class PodState:
    """What changes: whether the pod's cgroup exists (this boot)."""

    cgroup_boot: str = ""
    """The boot the pod's cgroup was made in ("" none made)."""


@dataclass
class Pod:
    id: str
    name: str
    created: float
    config: PodConfig
    state: PodState = field(default_factory=PodState)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def infra_id(self) -> str:
        return self.config.infra_id


def _bucket(status: Status) -> str:
    if status in (Status.EXITED, Status.STOPPED):
        return "exited"
    if status in (Status.RUNNING, Status.STOPPING):
        return "running"
    if status == Status.PAUSED:
        return "paused"
    if status in (Status.CREATED, Status.CONFIGURED, Status.INITIALIZED):
        return "created"
    return "error"


def pod_status(containers: list[Container]) -> PodStatus:
    """podman 4.3's pod status from its containers' (infra included) statuses.

    Running with anything else not running is Degraded; all of one kind
    is that kind; some exited (none running) is Stopped; no containers is
    Created.
    """
    if not containers:
        return PodStatus.CREATED
    counts = {"running": 0, "paused": 0, "exited": 0, "created": 0, "error": 0}
    for c in containers:
        counts[_bucket(c.state.status)] += 1
    total = len(containers)
    if counts["running"] and counts["running"] != total:
        return PodStatus.DEGRADED
    if counts["running"] == total:
        return PodStatus.RUNNING
    if counts["paused"] == total:
        return PodStatus.PAUSED
    if counts["exited"] == total:
        return PodStatus.EXITED
    if counts["exited"]:
        return PodStatus.STOPPED
    if counts["error"]:
        return PodStatus.ERROR
    return PodStatus.CREATED
