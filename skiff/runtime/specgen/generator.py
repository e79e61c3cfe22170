"""``SpecGenerator``: everything a user asked for about one container, typed.

The CLI (and the CRI translation) turns flags into a SpecGenerator with the
``parse_*`` helpers of this package; ``validate()`` refuses contradictions
with podman-like messages before anything touches the store; ``spec.
generate_spec`` then combines it with the image config and the rootfs.
Grouped as podman's specgen is:

    basic      command, entrypoint, env, workdir, hostname, tty, init,
               labels, annotations, stop signal/timeout, umask, sysctls
    storage    mounts (bind, volume, tmpfs), --read-only, /dev/shm size, devices
    security   user, groups, privileged, capabilities, seccomp,
               no-new-privileges, masked/unmasked paths
    network    namespaces (pid, ipc, uts, network, cgroup, user), DNS, hosts
    resources  cgroup limits, cgroup parent, oom_score_adj, ulimits

A SpecGenerator is plain data (JSON-able through ``dataclasses.asdict``),
so the create step can record it with the container and regenerate the
spec at every start from the same intent.
"""

from __future__ import annotations

import json
import posixpath
import re
import signal
from dataclasses import dataclass, field
from enum import StrEnum

from skiff.errors import UsageError
from skiff.runtime.specgen import capabilities as caps
from skiff.runtime.specgen.devices import DeviceRequest
from skiff.runtime.specgen.etcfiles import HostEntry
from skiff.runtime.specgen.host import CgroupLayout, HostInfo
from skiff.runtime.specgen.limits import (
    DEFAULT_PIDS_LIMIT,
    MIN_MEMORY,
    Ulimit,
    check_ulimits,
    validate_cpuset,
)
from skiff.runtime.specgen.mounts import (
    SHM_DEFAULT_SIZE,
    Mount,
    check_destinations,
)
from skiff.runtime.specgen.user import split_user_spec, validate_group_add


class NamespaceMode(StrEnum):
    PRIVATE = "private"
    HOST = "host"
    PATH = "path"
    CONTAINER = "container"
    NONE = "none"
    """network only: a new namespace with nothing but loopback."""


@dataclass(frozen=True)
class Namespace:
    mode: NamespaceMode = NamespaceMode.PRIVATE
    value: str = ""
    """The path (PATH) or container ID (CONTAINER)."""


NAMESPACE_KINDS = ("pid", "ipc", "uts", "network", "cgroup", "user")


def parse_namespace(text: str, kind: str) -> Namespace:
    """podman's ``--pid/--ipc/--uts/--network/--cgroupns/--userns`` values:
    ``private``, ``host``, ``ns:PATH``, ``container:ID``; for the network
    also ``none`` and ``bridge`` (= private: the lifecycle code makes the
    namespace and passes its path)."""
    if kind not in NAMESPACE_KINDS:
        raise ValueError(kind)
    mode, sep, value = text.partition(":")
    if text in ("private", "") or (kind == "network" and text == "bridge"):
        return Namespace(NamespaceMode.PRIVATE)
    if text == "host":
        return Namespace(NamespaceMode.HOST)
    if text == "none" and kind == "network":
        return Namespace(NamespaceMode.NONE)
    if sep and mode in ("ns", "path") and value.startswith("/"):
        return Namespace(NamespaceMode.PATH, posixpath.normpath(value))
    if sep and mode == "container" and value:
        return Namespace(NamespaceMode.CONTAINER, value)
    choices = "private, host, ns:PATH, container:ID" + (
        ", none, bridge" if kind == "network" else ""
    )
    raise UsageError(f"invalid --{kind} value {text!r}", f"use one of: {choices}")


def parse_signal(text: str) -> int:
    """``SIGTERM``, ``TERM``, ``term``, ``15``, ``RTMIN+3`` → signal number."""
    raw = text.strip()
    if raw.isdigit():
        number = int(raw)
        if 1 <= number <= signal.SIGRTMAX:
            return number
        raise UsageError(f"invalid signal {text!r}: out of range", f"use 1..{int(signal.SIGRTMAX)}")
    name = raw.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    match = re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name)
    if match:
        base = signal.SIGRTMIN if match.group(1) == "IN" else signal.SIGRTMAX
        number = int(base) + int(match.group(2) or 0)
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return number
        raise UsageError(f"invalid signal {text!r}: out of range")
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(
            f"invalid signal {text!r}", "use a name like SIGTERM or a number"
        ) from None


def parse_entrypoint(text: str) -> list[str]:
    """``--entrypoint``: a JSON array (``["/bin/sh","-c"]``) or one string;
    ``""`` clears the image's entrypoint."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(
                f"invalid --entrypoint {text!r}",
                'use a string or a JSON array of strings, e.g. ["/bin/sh", "-c"]',
            )
        return value
    return [text] if text else []


_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62})$")
_SYSCTL_IPC = (
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
)
_SYSCTL_UTS = ("kernel.domainname", "kernel.hostname")


@dataclass
class BasicOptions:
    name: str = ""
    command: list[str] | None = None
    """Arguments after the image: None keeps the image's Cmd."""
    entrypoint: list[str] | None = None
    """None keeps the image's; [] (``--entrypoint ""``) clears it."""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    """``-w``: "" keeps the image's WorkingDir (or "/")."""
    terminal: bool = False
    stdin: bool = False
    """``-i``: for the monitor; not part of the spec."""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    stop_signal: int | None = None
    stop_timeout: int | None = None
    init: bool = False
    init_path: str = ""
    """catatonit to use with ``init``; "" looks in the usual places."""
    umask: int = 0o022
    sysctls: dict[str, str] = field(default_factory=dict)


@dataclass
class StorageOptions:
    mounts: list[Mount] = field(default_factory=list)
    read_only: bool = False
    read_only_tmpfs: bool = True
    shm_size: int = SHM_DEFAULT_SIZE
    devices: list[DeviceRequest] = field(default_factory=list)


@dataclass
class SecurityOptions:
    user: str | None = None
    """``--user``; None keeps the image's User."""
    group_add: list[str] = field(default_factory=list)
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    seccomp_profile: str = ""
    """"" (default profile), "unconfined", or a profile path."""
    no_new_privileges: bool = False
    mask: list[str] = field(default_factory=list)
    unmask: list[str] = field(default_factory=list)
    readonly: list[str] = field(default_factory=list)
    """Paths mounted read-only in addition to the defaults (the CRI's
    ``readonly_paths``; with ``unmask=["ALL"]`` they replace them)."""
    label_disable: bool = False
    """``label=disable``: accepted; there is no SELinux labelling to disable."""

    def add_security_opt(self, text: str) -> None:
        """Apply one ``--security-opt`` (podman's syntax)."""
        key, sep, value = text.partition("=")
        if text == "no-new-privileges" or (key == "no-new-privileges" and value in ("true", "")):
            self.no_new_privileges = True
        elif key == "no-new-privileges" and value == "false":
            self.no_new_privileges = False
        elif key == "seccomp" and sep and value:
            self.seccomp_profile = value
        elif key in ("mask", "unmask") and sep and value:
            paths = [p for p in value.split(":") if p]
            for p in paths:
                if not p.startswith("/") and not (key == "unmask" and p == "ALL"):
                    raise UsageError(
                        f"invalid --security-opt {text!r}: {p!r} is not an absolute path"
                    )
            (self.mask if key == "mask" else self.unmask).extend(paths)
        elif key == "label":
            if value == "disable":
                self.label_disable = True
            elif value.split(":", 1)[0] in ("user", "role", "type", "level", "filetype", "nested"):
                pass  # SELinux options: nothing to label without SELinux
            else:
                raise UsageError(
                    f"invalid --security-opt {text!r}", "label=disable|user:U|role:R|type:T|level:L"
                )
        elif key == "apparmor" and value in ("unconfined", ""):
            pass
        elif key == "proc-opts":
            raise UsageError(f"--security-opt {text!r} is not supported")
        else:
            raise UsageError(
                f"invalid --security-opt {text!r}",
                "supported: seccomp=unconfined|PATH, no-new-privileges, mask=PATHS, "
                "unmask=PATHS|ALL, label=disable",
            )


@dataclass
class NetworkOptions:
    pid: Namespace = field(default_factory=Namespace)
    ipc: Namespace = field(default_factory=Namespace)
    uts: Namespace = field(default_factory=Namespace)
    network: Namespace = field(default_factory=Namespace)
    cgroup: Namespace | None = None
    """None: private on cgroup v2, host on v1 (podman's default)."""
    user: Namespace = field(default_factory=lambda: Namespace(NamespaceMode.HOST))
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    add_hosts: list[HostEntry] = field(default_factory=list)


@dataclass
class ResourceOptions:
    memory: int | None = None
    memory_swap: int | None = None
    """memory + swap; -1 unlimited; None: twice ``memory`` (podman)."""
    memory_reservation: int | None = None
    memory_swappiness: int | None = None
    cpus: float | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = DEFAULT_PIDS_LIMIT
    """None or ≤ 0: unlimited."""
    cgroup_parent: str = ""
    oom_score_adj: int | None = None
    ulimits: list[Ulimit] = field(default_factory=list)


@dataclass
class SpecGenerator:
    basic: BasicOptions = field(default_factory=BasicOptions)
    storage: StorageOptions = field(default_factory=StorageOptions)
    security: SecurityOptions = field(default_factory=SecurityOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    resources: ResourceOptions = field(default_factory=ResourceOptions)

    def validate(self, host: HostInfo | None = None) -> None:
        """Refuse what cannot be run, with podman's wording where it has one.

        ``host`` enables the checks that depend on this machine (ulimits
        above what skiff holds, oom_score_adj below its own, capabilities it
        lacks); without it only the option set itself is checked.
        """
        _validate_basic(self.basic, self.network)
        _validate_storage(self.storage, self.network)
        _validate_security(self.security, host)
        _validate_network(self.network)
        _validate_resources(self.resources, host)


def _validate_basic(b: BasicOptions, n: NetworkOptions) -> None:
    if b.workdir and not b.workdir.startswith("/"):
        raise UsageError(
            f"invalid working directory {b.workdir!r}: must be an absolute path", "e.g. -w /src"
        )
    if b.hostname:
        if n.uts.mode != NamespaceMode.PRIVATE:
            raise UsageError(
                "cannot set the hostname when not using a private UTS namespace",
                "drop --hostname or --uts",
            )
        if not _HOSTNAME.match(b.hostname):
            raise UsageError(
                f"invalid hostname {b.hostname!r}",
                "use up to 64 letters, digits, '.', '-' or '_', starting with a letter or digit",
            )
    if b.stop_timeout is not None and b.stop_timeout < 0:
        raise UsageError(f"invalid --stop-timeout {b.stop_timeout}: must not be negative")
    if not 0 <= b.umask <= 0o777:
        raise UsageError(f"invalid --umask {oct(b.umask)}: must be between 0000 and 0777")
    for key, value in b.sysctls.items():
        if key.startswith("net.") and n.network.mode == NamespaceMode.HOST:
            raise UsageError(f"sysctl {key} cannot be set with --network host")
        if (
            key in _SYSCTL_IPC or key.startswith("fs.mqueue.")
        ) and n.ipc.mode == NamespaceMode.HOST:
            raise UsageError(f"sysctl {key} cannot be set with --ipc host")
        if key in _SYSCTL_UTS:
            raise UsageError(f"sysctl {key} cannot be set", "use --hostname")
        if not (key.startswith(("net.", "fs.mqueue.")) or key in _SYSCTL_IPC):
            raise UsageError(
                f"sysctl {key} is not namespaced and cannot be set for a container",
                "allowed: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*",
            )
        if "\n" in value or "\0" in value:
            raise UsageError(f"invalid value for sysctl {key}")
    if b.init and b.entrypoint == [] and b.command == []:
        raise UsageError("--init needs a command to run")


def _validate_storage(s: StorageOptions, n: NetworkOptions) -> None:
    check_destinations(s.mounts)
    if s.shm_size <= 0:
        raise UsageError("invalid --shm-size: must be greater than 0")
    for m in s.mounts:
        if m.destination == "/":
            raise UsageError("cannot mount over the container's root directory /")


def _validate_security(sec: SecurityOptions, host: HostInfo | None) -> None:
    if sec.user:
        split_user_spec(sec.user)
    for g in sec.group_add:
        validate_group_add(g)
    if sec.seccomp_profile not in ("", "unconfined") and not sec.seccomp_profile.startswith("/"):
        raise UsageError(
            f"invalid seccomp profile {sec.seccomp_profile!r}",
            "use seccomp=unconfined or an absolute path to a profile",
        )
    available = host.bounding_caps if host is not None else frozenset(caps.CAPABILITIES)
    caps.merge(caps.DEFAULT_CAPABILITIES, sec.cap_add, sec.cap_drop, available)


def _validate_network(n: NetworkOptions) -> None:
    if n.user.mode != NamespaceMode.HOST:
        raise UsageError("user namespaces are not supported", "drop --userns")
    if n.network.mode in (NamespaceMode.HOST, NamespaceMode.CONTAINER):
        what = "--network " + n.network.mode.value
        if n.dns_servers or n.dns_search or n.dns_options:
            raise UsageError(
                f"cannot set DNS options with {what}",
                "the container uses the resolv.conf of the namespace's owner",
            )
        if n.add_hosts and n.network.mode == NamespaceMode.CONTAINER:
            raise UsageError(
                f"cannot add hosts with {what}", "the container shares the other one's /etc/hosts"
            )


def _validate_resources(r: ResourceOptions, host: HostInfo | None) -> None:
    if r.memory is not None and r.memory < MIN_MEMORY:
        raise UsageError(f"minimum memory limit allowed is 6MB, got {r.memory} bytes")
    if r.memory_swap is not None and r.memory_swap != -1:
        if r.memory is None:
            raise UsageError("you must provide a memory limit when setting --memory-swap")
        if r.memory_swap < r.memory:
            raise UsageError(
                "minimum memoryswap limit should be larger than memory limit, see usage",
                "--memory-swap is memory plus swap; -1 for unlimited swap",
            )
    if r.memory_reservation is not None:
        if r.memory_reservation < 0:
            raise UsageError("invalid --memory-reservation: must not be negative")
        if r.memory is not None and r.memory_reservation > r.memory:
            raise UsageError(
                "minimum memory limit can not be less than memory reservation limit, see usage"
            )
    if r.memory_swappiness is not None:
        if not 0 <= r.memory_swappiness <= 100:
            raise UsageError(f"invalid --memory-swappiness {r.memory_swappiness}: must be 0..100")
        if host is not None and host.cgroup.version == 2:
            raise UsageError("--memory-swappiness is not supported on cgroup v2")
    if r.cpus is not None and (r.cpu_period is not None or r.cpu_quota is not None):
        raise UsageError("--cpu-period/--cpu-quota and --cpus cannot be set together")
    if r.cpus is not None and r.cpus <= 0:
        raise UsageError(f"invalid --cpus {r.cpus}: must be positive")
    if r.cpu_period is not None and not 1000 <= r.cpu_period <= 1_000_000:
        raise UsageError(f"invalid --cpu-period {r.cpu_period}: must be 1000..1000000 (µs)")
    if r.cpu_quota is not None and r.cpu_quota != -1 and r.cpu_quota < 1000:
        raise UsageError(f"invalid --cpu-quota {r.cpu_quota}: must be at least 1000 (µs), or -1")
    if r.cpu_shares is not None and not 2 <= r.cpu_shares <= 262144:
        raise UsageError(f"invalid --cpu-shares {r.cpu_shares}: must be 2..262144")
    validate_cpuset(r.cpuset_cpus, "--cpuset-cpus")
    validate_cpuset(r.cpuset_mems, "--cpuset-mems")
    if r.cgroup_parent:
        parent = r.cgroup_parent
        if parent.endswith(".slice"):
            raise UsageError(
                f"--cgroup-parent {parent}: systemd slices need the systemd cgroup manager",
                "skiff uses cgroupfs: give a path like /skiff/app",
            )
        if not parent.startswith("/") or ".." in parent.split("/"):
            raise UsageError(f"invalid --cgroup-parent {parent!r}", "use an absolute cgroup path")
    if r.oom_score_adj is not None:
        if not -1000 <= r.oom_score_adj <= 1000:
            raise UsageError(f"invalid --oom-score-adj {r.oom_score_adj}: must be -1000..1000")
        floor = max(0, host.oom_score_adj) if host is not None else 0
        if r.oom_score_adj < floor:
            raise UsageError(
                f"--oom-score-adj {r.oom_score_adj} is below {floor}",
                "lowering an oom_score_adj needs CAP_SYS_RESOURCE, which skiff does not use; "
                f"give {floor} or more",
            )
    check_ulimits(r.ulimits, host if host is not None else _ANY_HOST)


_ANY_HOST = HostInfo(
    cgroup=CgroupLayout(1),
    bounding_caps=frozenset(caps.CAPABILITIES),
    effective_caps=frozenset(caps.CAPABILITIES),
)
"""Stands in for the host when validating without one: holds every
capability and unlimited rlimits, so only host-independent checks fail."""
