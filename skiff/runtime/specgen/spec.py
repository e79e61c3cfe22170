"""SpecGenerator + image config + rootfs → the OCI runtime ``config.json`` object.

``generate_spec`` is the one entry point. It reads the rootfs (the user
database, the working directory) and may create the image's working
directory in it, exactly as podman 4 does when it initialises a container;
it writes nothing else. What it produces was checked field by field against
podman 4.3's config.json for the same options (tests/integration/
test_specgen_runtime.py compares the two), with these deliberate
differences:

- ``cgroupsPath`` is ``/skiff/<id>`` (or ``--cgroup-parent``/<id>): cgroupfs
  paths, as the runtime design fixes.
- the default rlimits are podman's capped at what skiff holds (limits.py).
- ``container=skiff`` instead of ``container=podman``.
- /dev/shm is a tmpfs in the spec (podman mounts one itself and binds it);
  ``ContainerFiles.shm`` binds a caller-made one instead, for sharing.
- a working directory inside /proc, /sys or /dev (or resolving there through
  a symlink in the image) is refused: those are the runtime's mounts, and a
  cwd there is how CVE-2024-21626 reached host file descriptors.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skiff.errors import ContainerError, UsageError
from skiff.oci.config import ImageConfig
from skiff.runtime.specgen import rootfs as rootfs_paths
from skiff.runtime.specgen.capabilities import capability_sets
from skiff.runtime.specgen.devices import device_entries, host_devices
from skiff.runtime.specgen.env import merge_env
from skiff.runtime.specgen.etcfiles import ContainerFiles
from skiff.runtime.specgen.generator import (
    Namespace,
    NamespaceMode,
    NetworkOptions,
    ResourceOptions,
    SecurityOptions,
    SpecGenerator,
    parse_signal,
)
from skiff.runtime.specgen.host import HostInfo
from skiff.runtime.specgen.limits import DEFAULT_CPU_PERIOD, rlimits
from skiff.runtime.specgen.mounts import (
    INIT_DESTINATION,
    Mount,
    container_mounts,
    default_mounts,
    is_under_mount,
    rootfs_propagation,
)
from skiff.runtime.specgen.seccomp import convert, load_profile
from skiff.runtime.specgen.user import ExecUser, resolve_user

OCI_VERSION = "1.0.2-dev"
"""What runc 1.1 and podman 4 write; crun 1.8 reads it too."""

DEFAULT_CGROUP_PARENT = "/skiff"
DEFAULT_STOP_SIGNAL = 15
DEFAULT_STOP_TIMEOUT = 10

DEFAULT_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
)
DEFAULT_READONLY_PATHS = (
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
DEFAULT_SYSCTLS = {"net.ipv4.ping_group_range": "0 0"}
"""containers.conf ``default_sysctls``: unprivileged ICMP sockets for root."""

INIT_CANDIDATES = (
    "/usr/bin/catatonit",
    "/usr/libexec/skiff/catatonit",
    "/usr/libexec/podman/catatonit",
)
"""Debian's catatonit package first; podman's copy as a fallback."""
_KERNEL_MOUNTS = ("/proc", "/sys", "/dev")
_NS_FILES = {
    "pid": "pid",
    "network": "net",
    "ipc": "ipc",
    "uts": "uts",
    "mount": "mnt",
    "cgroup": "cgroup",
    "user": "user",
}


# --- the pieces ------------------------------------------------------------------


def process_args(sg: SpecGenerator, image: ImageConfig) -> list[str]:
    """Docker's rules: ``--entrypoint`` replaces the image's and drops its
    Cmd; command arguments replace Cmd."""
    basic = sg.basic
    if basic.entrypoint is not None:
        entrypoint = list(basic.entrypoint)
        command = list(basic.command) if basic.command is not None else []
    else:
        entrypoint = image.entrypoint
        command = list(basic.command) if basic.command is not None else image.cmd
    args = entrypoint + command
    if not args:
        raise UsageError(
            "no command or entrypoint provided, and no CMD or ENTRYPOINT from image",
            "give a command after the image name",
        )
    return args


def effective_hostname(sg: SpecGenerator, container_id: str, host: HostInfo) -> str:
    """The container's hostname ("" when it joins another UTS namespace)."""
    mode = sg.network.uts.mode
    if mode == NamespaceMode.HOST:
        return host.hostname
    if mode == NamespaceMode.PRIVATE:
        return sg.basic.hostname or container_id[:12]
    return ""


def stop_signal(sg: SpecGenerator, image: ImageConfig) -> int:
    """``--stop-signal``, else the image's StopSignal, else SIGTERM."""
    if sg.basic.stop_signal is not None:
        return sg.basic.stop_signal
    if image.stop_signal:
        try:
            return parse_signal(image.stop_signal)
        except UsageError as exc:
            raise ContainerError(
                f"the image's StopSignal {image.stop_signal!r} is invalid",
                "give --stop-signal",
            ) from exc
    return DEFAULT_STOP_SIGNAL


def stop_timeout(sg: SpecGenerator) -> int:
    return sg.basic.stop_timeout if sg.basic.stop_timeout is not None else DEFAULT_STOP_TIMEOUT


def find_init(path: str = "") -> str:
    """The catatonit binary ``--init`` bind-mounts."""
    candidates = (path,) if path else INIT_CANDIDATES
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ContainerError(
        f"--init: no init binary at {', '.join(candidates)}",
        "install catatonit, or give --init-path",
    )


def _inside(path: str, roots: tuple[str, ...]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root + "/"):
            return root
    return None


def prepare_workdir(
    rootfs: Path,
    cwd: str,
    *,
    from_user: bool,
    user: ExecUser,
    mounts: list[Mount],
    container_id: str,
) -> None:
    """Check (and for the image's WorkingDir, create) the working directory.

    podman 4: a ``-w`` that does not exist is an error; the image's
    WorkingDir is created owned by the container user. Resolved inside the
    rootfs, never on the host.
    """
    clean = posixpath.normpath(cwd)
    resolved = clean
    if not is_under_mount(clean, mounts):
        try:
            resolved = rootfs_paths.resolve(rootfs, clean).path
        except OSError as exc:
            raise ContainerError(
                f"cannot resolve the working directory {cwd} in container {container_id}: "
                f"{exc.strerror or exc}"
            ) from exc
    for path in (clean, resolved):
        root = _inside(path, _KERNEL_MOUNTS)
        if root is not None:
            raise ContainerError(
                f"working directory {cwd} is inside {root}, which the runtime mounts",
                "choose a working directory in the image's own file system",
            )
    if is_under_mount(clean, mounts):
        return  # a mount provides it; the runtime makes the mount point
    try:
        kind = rootfs_paths.is_dir(rootfs, clean)
        if kind is True:
            return
        if kind is False:
            raise ContainerError(
                f'workdir "{cwd}" exists on container {container_id}, but is not a directory'
            )
        if from_user:
            raise ContainerError(
                f'workdir "{cwd}" does not exist on container {container_id}',
                "create it in the image, or mount a volume there",
            )
        rootfs_paths.make_dirs(rootfs, clean, user.uid, user.gid)
        # what was made, resolved again now that it exists
        made = rootfs_paths.resolve(rootfs, clean).path
        root = _inside(made, _KERNEL_MOUNTS)
        if root is not None:
            raise ContainerError(
                f"working directory {cwd} is inside {root}, which the runtime mounts",
                "choose a working directory in the image's own file system",
            )
    except OSError as exc:
        raise ContainerError(
            f"cannot prepare the working directory {cwd} in container {container_id}: "
            f"{exc.strerror or exc}"
        ) from exc


def masked_and_readonly(sec: SecurityOptions) -> tuple[list[str], list[str]]:
    masked = [] if sec.privileged else list(DEFAULT_MASKED_PATHS)
    readonly = [] if sec.privileged else list(DEFAULT_READONLY_PATHS)
    for pattern in sec.unmask:
        if pattern == "ALL":
            masked, readonly = [], []
            continue
        masked = [p for p in masked if not fnmatch.fnmatchcase(p, pattern)]
        readonly = [p for p in readonly if not fnmatch.fnmatchcase(p, pattern)]
    masked.extend(p for p in dict.fromkeys(sec.mask) if p not in masked)
    readonly.extend(p for p in dict.fromkeys(sec.readonly) if p not in readonly)
    return masked, readonly


def _namespace(
    kind: str, ns: Namespace, netns_path: str | None, container_pids: Mapping[str, int]
) -> dict[str, str] | None:
    if ns.mode == NamespaceMode.HOST:
        return None
    if ns.mode == NamespaceMode.PATH:
        return {"type": kind, "path": ns.value}
    if ns.mode == NamespaceMode.CONTAINER:
        pid = container_pids.get(ns.value)
        if pid is None:
            raise ContainerError(
                f"cannot join the {kind} namespace of container {ns.value}: it is not running",
                "start that container first",
            )
        return {"type": kind, "path": f"/proc/{pid}/ns/{_NS_FILES[kind]}"}
    if kind == "network" and ns.mode == NamespaceMode.PRIVATE and netns_path:
        return {"type": kind, "path": netns_path}
    return {"type": kind}


def namespaces(
    net: NetworkOptions,
    host: HostInfo,
    *,
    netns_path: str | None,
    container_pids: Mapping[str, int],
) -> list[dict[str, str]]:
    cgroup = net.cgroup
    if cgroup is None:
        cgroup = Namespace(
            NamespaceMode.PRIVATE if host.cgroup.version == 2 else NamespaceMode.HOST
        )
    out = []
    for kind, ns in (
        ("pid", net.pid),
        ("network", net.network),
        ("ipc", net.ipc),
        ("uts", net.uts),
        ("mount", Namespace()),
        ("cgroup", cgroup),
        ("user", net.user),
    ):
        entry = _namespace(kind, ns, netns_path, container_pids)
        if entry is not None:
            out.append(entry)
    return out


def cgroup_resources(
    r: ResourceOptions, device_rules: list[dict[str, Any]], *, privileged: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "devices": [{"allow": True, "access": "rwm"}]
        if privileged
        else [{"allow": False, "access": "rwm"}, *device_rules]
    }
    memory: dict[str, Any] = {}
    if r.memory is not None:
        memory["limit"] = r.memory
    if r.memory_reservation is not None:
        memory["reservation"] = r.memory_reservation
    if r.memory_swap is not None:
        memory["swap"] = r.memory_swap
    elif r.memory is not None:
        memory["swap"] = 2 * r.memory
    if r.memory_swappiness is not None:
        memory["swappiness"] = r.memory_swappiness
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if r.cpu_shares is not None:
        cpu["shares"] = r.cpu_shares
    if r.cpus is not None:
        cpu["quota"] = int(r.cpus * DEFAULT_CPU_PERIOD)
        cpu["period"] = DEFAULT_CPU_PERIOD
    else:
        if r.cpu_quota is not None:
            cpu["quota"] = r.cpu_quota
        if r.cpu_period is not None:
            cpu["period"] = r.cpu_period
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit is not None and r.pids_limit > 0:
        out["pids"] = {"limit": r.pids_limit}
    return out


def cgroups_path(r: ResourceOptions, container_id: str) -> str:
    parent = (r.cgroup_parent or DEFAULT_CGROUP_PARENT).rstrip("/")
    return f"{parent}/{container_id}"


def seccomp_profile(
    sec: SecurityOptions, bounding: list[str], host: HostInfo
) -> dict[str, Any] | None:
    from skiff.config import SECCOMP_PROFILE

    profile = sec.seccomp_profile
    if profile == "unconfined" or (sec.privileged and not profile):
        return None
    path = Path(profile) if profile else SECCOMP_PROFILE
    return convert(
        load_profile(path),
        caps=bounding,
        machine=host.machine,
        kernel=host.kernel,
        source=str(path),
    )


# --- the spec --------------------------------------------------------------------


def generate_spec(
    sg: SpecGenerator,
    image_config: ImageConfig,
    rootfs: Path,
    *,
    container_id: str,
    container_files: ContainerFiles,
    volumes: Mapping[str, Path] | None = None,
    netns_path: str | None = None,
    container_pids: Mapping[str, int] | None = None,
    host: HostInfo | None = None,
) -> dict[str, Any]:
    """The config.json object for one container.

    ``rootfs``: the mounted root file system (``store.mount_container``);
    ``container_files``: the /etc files written into the userdata dir;
    ``volumes``: volume name → host path for every ``VolumeMount``;
    ``netns_path``: the network namespace the lifecycle code made (for a
    private network; None with --network none gives a fresh empty one);
    ``container_pids``: pids of the containers named by ``container:ID``
    namespace modes; ``host``: HostInfo.detect() unless given.
    """
    host = host if host is not None else HostInfo.detect()
    sg.validate(host)
    basic, storage, sec, net = sg.basic, sg.storage, sg.security, sg.network
    user_text = sec.user if sec.user is not None else image_config.user
    user = resolve_user(rootfs, user_text, sec.group_add)

    args = process_args(sg, image_config)
    init_binary = find_init(basic.init_path) if basic.init else None
    if init_binary is not None:
        args = [INIT_DESTINATION, "--", *args]

    hostname = effective_hostname(sg, container_id, host)
    env = merge_env(image_config.env, basic.env, hostname=hostname, home=user.home)
    if not hostname:
        env = [e for e in env if not e.startswith("HOSTNAME=")]

    cwd = basic.workdir or image_config.working_dir or "/"
    prepare_workdir(
        rootfs,
        cwd,
        from_user=bool(basic.workdir),
        user=user,
        mounts=storage.mounts,
        container_id=container_id,
    )

    cap_sets = capability_sets(
        privileged=sec.privileged,
        cap_add=sec.cap_add,
        cap_drop=sec.cap_drop,
        uid=user.uid,
        available=host.bounding_caps,
    )
    process: dict[str, Any] = {
        "terminal": basic.terminal,
        "user": {"uid": user.uid, "gid": user.gid, "umask": basic.umask},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": cap_sets.to_json(),
        "rlimits": [u.to_json() for u in rlimits(sg.resources.ulimits, host)],
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    if sec.no_new_privileges:
        process["noNewPrivileges"] = True
    if sg.resources.oom_score_adj is not None:
        process["oomScoreAdj"] = sg.resources.oom_score_adj

    devices: list[dict[str, Any]] = []
    device_rules: list[dict[str, Any]] = []
    if sec.privileged:
        devices.extend(host_devices())
    for request in storage.devices:
        found, rules = device_entries(request)
        devices.extend(found)
        device_rules.extend(rules)

    defaults = default_mounts(
        privileged=sec.privileged,
        read_only=storage.read_only,
        read_only_tmpfs=storage.read_only_tmpfs,
        shm_size=storage.shm_size,
        ipc_host=net.ipc.mode == NamespaceMode.HOST,
        files=container_files,
        init_binary=init_binary,
    )
    mounts = container_mounts(defaults, storage.mounts, volumes or {})

    linux: dict[str, Any] = {}
    sysctls: dict[str, str] = {}
    if net.network.mode not in (NamespaceMode.HOST, NamespaceMode.CONTAINER):
        sysctls.update(DEFAULT_SYSCTLS)
    sysctls.update(basic.sysctls)
    if sysctls:
        linux["sysctl"] = sysctls
    linux["resources"] = cgroup_resources(sg.resources, device_rules, privileged=sec.privileged)
    linux["cgroupsPath"] = cgroups_path(sg.resources, container_id)
    linux["namespaces"] = namespaces(
        net, host, netns_path=netns_path, container_pids=container_pids or {}
    )
    if devices:
        linux["devices"] = devices
    seccomp = seccomp_profile(sec, cap_sets.bounding, host)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    masked, readonly = masked_and_readonly(sec)
    if masked:
        linux["maskedPaths"] = masked
    if readonly:
        linux["readonlyPaths"] = readonly
    propagation = rootfs_propagation(storage.mounts)
    if propagation is not None:
        linux["rootfsPropagation"] = propagation

    annotations = dict(basic.annotations)
    annotations.setdefault("io.container.manager", "skiff")
    annotations.setdefault(
        "org.opencontainers.image.stopSignal", str(stop_signal(sg, image_config))
    )

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs)},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }
    if storage.read_only:
        spec["root"]["readonly"] = True
    if hostname and net.uts.mode == NamespaceMode.PRIVATE:
        spec["hostname"] = hostname
    return spec
