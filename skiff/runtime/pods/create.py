"""Creating a pod, and making a new container a member of one.

``create_pod``: options checked → the pod's record (with its infra
container's ID chosen up front) → the infra container (skiff's pause
image, the pod's network, hostname, DNS, ports) → the pod's cgroup with
its limits. Anything that fails removes what was made before it, so a
failed ``pod create`` leaves no pod, container or cgroup behind.

``join_pod``: what a container needs to be a member (``run/create --pod``,
``kube play``, the CRI's CreateContainer): the pod's ID, a
``container:INFRA`` namespace for every shared kind, the pod's cgroup as
its cgroup parent, and the infra's ``/etc/hosts``, ``/etc/resolv.conf``,
``/etc/hostname`` bound in when the network or UTS namespace is shared —
so every member sees the same names and resolvers, as in podman.

Shared IPC also means a shared /dev/shm (POSIX shared memory lives
there, not in the IPC namespace): the pod has one tmpfs at
``RUNROOT/pods/ID/shm`` that the infra and every member bind at /dev/shm.
It is mounted when the infra starts (``mount_pod_shm``, from
``lifecycle.ready_infra``) and unmounted when the pod stops or is removed.
A bind mount cannot reach into another mount namespace, so the infra's
own /dev/shm could not be shared directly.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import replace
from pathlib import Path

from skiff.errors import SkiffError, UsageError
from skiff.runtime.create import CreateOptions, create_container
from skiff.runtime.engine import Runtime
from skiff.runtime.names import random_name
from skiff.runtime.pods import cgroup as pod_cgroups
from skiff.runtime.pods.model import (
    DEFAULT_SHARE,
    EXIT_POLICIES,
    SHAREABLE,
    SPEC_KIND,
    Pod,
    PodConfig,
    PodCreateOptions,
    check_pod_name,
)
from skiff.runtime.pods.records import PodRecords
from skiff.runtime.specgen.generator import Namespace, NamespaceMode, SpecGenerator
from skiff.runtime.specgen.mounts import SHM_DEFAULT_SIZE, BindMount
from skiff.storage.db import boot_id
from skiff.storage.layers import random_id

log = logging.getLogger(__name__)

_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62})$")
SHM_FLAGS = ("nosuid", "noexec", "nodev")
MODES = ("private", "host")


def pods_of(rt: Runtime) -> PodRecords:
    return PodRecords(rt.store.db)


def pod_run_dir(rt: Runtime, pod_id: str) -> Path:
    """RUNROOT/pods/ID: per-boot files of a pod (its /dev/shm tmpfs)."""
    return rt.run_root / "pods" / pod_id


def shm_dir(rt: Runtime, pod_id: str) -> Path:
    return pod_run_dir(rt, pod_id) / "shm"


def shares_shm(config: PodConfig) -> bool:
    return config.infra and "ipc" in config.share and config.ipc_mode == "private"


# --- checking the options ---------------------------------------------------------------


def _share(opts: PodCreateOptions) -> list[str]:
    if opts.share is None:
        return sorted(DEFAULT_SHARE) if opts.infra else []
    share = sorted(set(opts.share))
    for kind in share:
        if kind not in SHAREABLE:
            raise UsageError(
                f"invalid kernel namespace to share: {kind}. "
                "Options are: cgroup, ipc, net, pid, uts or none"
            )
    if share and not opts.infra:
        raise UsageError(
            f"cannot set share({','.join(share)}) namespaces without an infra container",
            "drop --infra=false, or --share none",
        )
    if share == ["cgroup"]:
        raise UsageError(
            "the cgroup namespace can only be shared together with another namespace",
            "add ipc, net, pid or uts to --share",
        )
    return share


def _check(opts: PodCreateOptions) -> None:
    mode = opts.network_mode
    if mode not in ("bridge", "none", "host") and not mode.startswith("ns:"):
        raise UsageError(
            f"invalid pod network {mode!r}", "use bridge, none, host, ns:PATH or network names"
        )
    if opts.ports and mode != "bridge":
        raise UsageError(
            "PortMappings can only be used with Bridge or slirp4netns networking",
            "drop -p, or use a bridge network",
        )
    if opts.networks and mode != "bridge":
        raise UsageError(f"networks cannot be joined with --network {mode}")
    if not opts.infra and (
        opts.ports or opts.networks or opts.dns_servers or opts.add_hosts or opts.hostname
    ):
        raise UsageError(
            "a pod without an infra container has no network, ports, DNS or hostname of its own",
            "drop --infra=false",
        )
    if opts.exit_policy not in EXIT_POLICIES:
        raise UsageError(f"invalid pod exit policy {opts.exit_policy!r}", "use continue or stop")
    for kind, value in (("pid", opts.pid_mode), ("ipc", opts.ipc_mode), ("uts", opts.uts_mode)):
        if value not in MODES:
            raise UsageError(f"invalid pod --{kind} {value!r}", "use private or host")
    if opts.hostname:
        if not _HOSTNAME.match(opts.hostname):
            raise UsageError(f"invalid hostname {opts.hostname!r}")
        if opts.uts_mode == "host":
            raise UsageError("cannot set the hostname of a pod that uses the host's UTS namespace")
    for server in opts.dns_servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise UsageError(f"invalid --dns {server!r}: not an IP address") from None
    if opts.cgroup_parent and (
        not opts.cgroup_parent.startswith("/") or ".." in opts.cgroup_parent.split("/")
    ):
        raise UsageError(
            f"invalid --cgroup-parent {opts.cgroup_parent!r}", "use an absolute cgroup path"
        )


def _unique_name(rt: Runtime) -> str:
    records = pods_of(rt)
    for _ in range(100):
        name = random_name()
        if records.find(name) is None:
            return name
    return f"{random_name()}_{random_id()[:6]}"


# --- the infra container ------------------------------------------------------------------


def _network_namespace(mode: str) -> Namespace:
    if mode == "host":
        return Namespace(NamespaceMode.HOST)
    if mode == "none":
        return Namespace(NamespaceMode.NONE)
    if mode.startswith("ns:"):
        return Namespace(NamespaceMode.PATH, mode[3:])
    return Namespace(NamespaceMode.PRIVATE)


def infra_spec(name: str, config: PodConfig) -> SpecGenerator:
    """The infra container's SpecGenerator: the pod's network, names and sysctls."""
    from skiff.runtime.specgen.etcfiles import parse_add_host

    sg = SpecGenerator()
    if config.infra_command:
        sg.basic.entrypoint = list(config.infra_command)
        sg.basic.command = []
    if config.uts_mode == "private":
        sg.basic.hostname = config.hostname or name
    sg.basic.sysctls = dict(config.sysctls)
    net = sg.network
    net.network = _network_namespace(config.network_mode)
    if config.pid_mode == "host":
        net.pid = Namespace(NamespaceMode.HOST)
    if config.ipc_mode == "host":
        net.ipc = Namespace(NamespaceMode.HOST)
    if config.uts_mode == "host":
        net.uts = Namespace(NamespaceMode.HOST)
    if config.network_mode != "host":
        net.dns_servers = list(config.dns_servers)
        net.dns_search = list(config.dns_search)
        net.dns_options = list(config.dns_options)
    net.add_hosts = [parse_add_host(h) for h in config.add_hosts]
    if config.shm_size is not None:
        sg.storage.shm_size = config.shm_size
    sg.resources.cgroup_parent = config.cgroup_path
    return sg


def _shm_bind(source: Path | str) -> BindMount:
    return BindMount(source=str(source), destination="/dev/shm", recursive=False, flags=SHM_FLAGS)


def _infra_image(rt: Runtime, config: PodConfig) -> tuple[object, str]:
    from skiff.errors import ImageUnknown

    if config.infra_image:
        found = rt.store.images.find(config.infra_image)
        if found is None:
            raise ImageUnknown(
                f"{config.infra_image}: image not known", "pull the infra image first"
            )
        return found, config.infra_image
    from skiff.runtime.pods.infra import pause_image  # tarfile: only when a pod is made

    image = pause_image(rt)
    return image, image.names[0] if image.names else image.id


# --- create ----------------------------------------------------------------------------------


def create_pod(rt: Runtime, opts: PodCreateOptions) -> Pod:
    """Create a pod (and its infra container, not started); returns it."""
    share = _share(opts)
    _check(opts)
    records = pods_of(rt)
    name = check_pod_name(opts.name) if opts.name else _unique_name(rt)
    pod_id = opts.pod_id or random_id()
    infra_id = random_id() if opts.infra else ""
    cgroup_path = pod_cgroups.pod_cgroup_path(pod_id, opts.cgroup_parent)
    config = PodConfig(
        hostname=opts.hostname,
        labels=dict(opts.labels),
        annotations=dict(opts.annotations),
        share=share,
        infra=opts.infra,
        infra_id=infra_id,
        infra_command=list(opts.infra_command or []),
        network_mode=opts.network_mode,
        networks=list(opts.networks),
        network_aliases=list(opts.network_aliases),
        ports=[dict(p) for p in opts.ports],
        dns_servers=list(opts.dns_servers),
        dns_search=list(opts.dns_search),
        dns_options=list(opts.dns_options),
        add_hosts=list(opts.add_hosts),
        pid_mode=opts.pid_mode,
        ipc_mode=opts.ipc_mode,
        uts_mode=opts.uts_mode,
        sysctls=dict(opts.sysctls),
        shm_size=opts.shm_size,
        cgroup_parent=opts.cgroup_parent,
        cgroup_path=cgroup_path,
        resources=replace(opts.resources),
        exit_policy=opts.exit_policy,
        created_by=opts.created_by,
        create_command=list(opts.create_command),
    )
    if opts.networks:
        from skiff.runtime.network.store import NetworkStore

        definitions = NetworkStore.of(rt.store)
        for network in opts.networks:
            definitions.get(network)  # unknown networks fail now, not at the first start
    image = None
    if opts.infra:
        config.infra_image = opts.infra_image
        image, config.infra_image = _infra_image(rt, config)
        sg = infra_spec(name, config)
        if shares_shm(config):
            sg.storage.mounts.append(_shm_bind(shm_dir(rt, pod_id)))
        sg.validate()  # before anything is recorded
    pod = records.add(pod_id, name, config)
    try:
        if opts.infra:
            from skiff.storage.images import Image

            assert isinstance(image, Image)
            create_container(
                rt,
                CreateOptions(
                    image=image,
                    spec=sg,
                    image_name=config.infra_image,
                    name=opts.infra_name or f"{pod_id[:12]}-infra",
                    networks=list(opts.networks),
                    network_aliases={"*": list(opts.network_aliases)}
                    if opts.network_aliases
                    else {},
                    ports=[dict(p) for p in opts.ports],
                    pod_id=pod_id,
                    infra=True,
                    container_id=infra_id,
                    created_by=opts.created_by,
                    create_command=list(opts.create_command),
                ),
            )
        pod_cgroups.create_pod_cgroup(cgroup_path, config.resources)
        pod.state.cgroup_boot = boot_id()
        records.save_state(pod)
    except BaseException:
        _undo_create(rt, pod)
        raise
    return pod


def _undo_create(rt: Runtime, pod: Pod) -> None:
    from skiff.runtime import lifecycle

    try:
        if pod.config.infra_id:
            infra = rt.records.find(pod.config.infra_id)
            if infra is not None:
                lifecycle.remove(rt, infra, force=True)
        pod_cgroups.remove_pod_cgroup(pod.config.cgroup_path)
    except SkiffError as exc:
        log.warning("cleaning up after a failed pod create: %s", exc)
    finally:
        pods_of(rt).delete(pod.id)


# --- joining ----------------------------------------------------------------------------------


def _mounted_at(sg: SpecGenerator, destination: str) -> bool:
    return any(m.destination.rstrip("/") == destination for m in sg.storage.mounts)


def pod_mount_sources(rt: Runtime, pod: Pod) -> tuple[str, ...]:
    """Where the mounts ``join_pod`` adds come from (so ``kube generate`` can skip them)."""
    out = [str(shm_dir(rt, pod.id)), "/dev/shm"]
    if pod.config.infra_id:
        userdata = rt.store.container_dir(pod.config.infra_id)
        out += [str(userdata / f) for f in ("hosts", "resolv.conf", "hostname")]
    return tuple(out)


def join_pod(rt: Runtime, pod: Pod, opts: CreateOptions) -> CreateOptions:
    """Make ``opts`` create a member of ``pod`` (changes and returns ``opts``).

    Refuses what a shared namespace makes impossible, with podman's
    reasons: ports, networks, a hostname, DNS options or another namespace
    mode for a kind the pod shares.
    """
    sg = opts.spec
    net = sg.network
    shared = set(pod.config.share) if pod.config.infra else set()
    infra_id = pod.config.infra_id
    if "net" in shared:
        if opts.ports or opts.publish_all:
            raise UsageError(
                "invalid config provided: published or exposed ports must be defined when the "
                "pod is created: network cannot be configured when it is shared with a pod",
                f"publish the ports on the pod: skiff pod create -p ... {pod.name}",
            )
        if opts.networks:
            raise UsageError(
                f"the container joins the network of pod {pod.name}: it cannot join networks",
                "give --network when creating the pod",
            )
    if "uts" in shared and sg.basic.hostname:
        raise UsageError(
            f"cannot set a hostname: the container shares the UTS namespace of pod {pod.name}",
            "give --hostname when creating the pod",
        )
    for kind in sorted(shared):
        field_name = SPEC_KIND[kind]
        current = getattr(net, field_name)
        if current is not None and current.mode not in (NamespaceMode.PRIVATE,):
            raise UsageError(
                f"the {kind} namespace is shared by pod {pod.name}: --{field_name} "
                f"{current.mode.value} cannot be used in it",
                "create the pod with --share without this namespace",
            )
        setattr(net, field_name, Namespace(NamespaceMode.CONTAINER, infra_id))
    if not sg.resources.cgroup_parent:
        sg.resources.cgroup_parent = pod.config.cgroup_path
    if infra_id:
        userdata = rt.store.container_dir(infra_id)
        wanted: list[tuple[str, str]] = []
        if "net" in shared:
            wanted += [(str(userdata / "hosts"), "/etc/hosts")]
            wanted += [(str(userdata / "resolv.conf"), "/etc/resolv.conf")]
        if "uts" in shared and pod.config.uts_mode == "private":
            wanted += [(str(userdata / "hostname"), "/etc/hostname")]
        for source, destination in wanted:
            if not _mounted_at(sg, destination):
                sg.storage.mounts.append(
                    BindMount(source=source, destination=destination, recursive=False)
                )
        if "ipc" in shared and not _mounted_at(sg, "/dev/shm"):
            host_ipc = pod.config.ipc_mode == "host"
            sg.storage.mounts.append(_shm_bind("/dev/shm" if host_ipc else shm_dir(rt, pod.id)))
    opts.pod_id = pod.id
    opts.infra = False
    return opts


def mount_pod_shm(rt: Runtime, pod: Pod) -> None:
    """Mount the pod's /dev/shm tmpfs unless it is mounted (before the infra starts)."""
    from skiff.storage import mount as mounts

    if not shares_shm(pod.config):
        return
    target = shm_dir(rt, pod.id)
    target.mkdir(parents=True, exist_ok=True, mode=0o755)
    if mounts.is_mounted(target):
        return
    size = pod.config.shm_size if pod.config.shm_size is not None else SHM_DEFAULT_SIZE
    try:
        mounts.mount(
            "shm",
            target,
            "tmpfs",
            mounts.MS_NOSUID | mounts.MS_NODEV | mounts.MS_NOEXEC,
            f"mode=1777,size={size}",
        )
    except SkiffError as exc:
        from skiff.errors import ContainerError

        raise ContainerError(
            f"cannot mount the shared /dev/shm of pod {pod.name}: {exc.message}",
            "skiff must run as root",
        ) from exc


def unmount_pod_shm(rt: Runtime, pod: Pod) -> None:
    """Unmount the pod's /dev/shm (the members' copies go with their mount namespaces)."""
    from skiff.storage import mount as mounts

    target = shm_dir(rt, pod.id)
    if mounts.is_mounted(target):
        mounts.unmount(target, detach=True)
