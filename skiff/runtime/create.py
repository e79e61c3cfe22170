"""Creating a container: its storage (rw layer), its record, nothing running yet.

CLI strings → SpecGenerator (the CLI's job) → validated here → recorded with
the container. The OCI spec itself is generated at every start, from the
same SpecGenerator, because it depends on things that change between starts
(the network namespace, the mount point).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skiff.errors import NameInUse, SkiffError, UsageError
from skiff.oci.config import ImageConfig
from skiff.runtime import serde
from skiff.runtime.engine import Runtime
from skiff.runtime.names import random_name
from skiff.runtime.records import Container, ContainerConfig, ContainerState, RestartPolicy, Status
from skiff.runtime.specgen.generator import NamespaceMode, SpecGenerator
from skiff.runtime.specgen.spec import process_args, stop_signal
from skiff.storage.images import Image
from skiff.storage.layers import random_id

if TYPE_CHECKING:
    from skiff.runtime.oci import OCIRuntime

log = logging.getLogger(__name__)

NAME_RE_TEXT = "[a-zA-Z0-9][a-zA-Z0-9_.-]*"


@dataclass
class CreateOptions:
    """Everything ``create``/``run`` decide beyond the OCI process (podman's flags)."""

    image: Image
    spec: SpecGenerator
    image_name: str = ""
    name: str = ""
    networks: list[str] = field(default_factory=list)
    network_aliases: dict[str, list[str]] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    publish_all: bool = False
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    auto_remove: bool = False
    pod_id: str | None = None
    infra: bool = False
    runtime: str = ""
    log_driver: str = "k8s-file"
    log_path: str = ""
    volumes_from: list[str] = field(default_factory=list)
    created_by: str = "cli"
    cri: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""
    create_command: list[str] = field(default_factory=list)
    """The command line that asked for the container (inspect shows it)."""


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(NAME_RE_TEXT, name):
        raise UsageError(
            f"container name {name!r} is not valid",
            f"names must match {NAME_RE_TEXT}",
        )


def _name_in_use(rt: Runtime, name: str) -> bool:
    """Whether a container (record or storage) has exactly this name. Not
    ``records.find``: that also matches ID prefixes, and a name such as "b"
    or "cafe" may be the prefix of an unrelated container's ID."""
    return (
        rt.store.db.read_one("SELECT 1 FROM runtime_containers WHERE name=?", (name,)) is not None
        or rt.store.db.read_one("SELECT 1 FROM storage_containers WHERE name=?", (name,))
        is not None
    )


def _unique_name(rt: Runtime) -> str:
    for _ in range(100):
        name = random_name()
        if not _name_in_use(rt, name):
            return name
    return f"{random_name()}_{random_id()[:6]}"


def network_mode_of(sg: SpecGenerator, pod_id: str | None) -> str:
    ns = sg.network.network
    if ns.mode == NamespaceMode.PRIVATE:
        return "bridge"
    if ns.mode == NamespaceMode.CONTAINER:
        return f"container:{ns.value}"
    if ns.mode == NamespaceMode.PATH:
        return f"ns:{ns.value}"
    return str(ns.mode.value)


def _propagates_to_host(sg: SpecGenerator) -> bool:
    """Whether mounts made in the container should reach the host
    (``shared``/``rshared`` propagation of a bind or volume)."""
    return any(getattr(m, "propagation", "") in ("shared", "rshared") for m in sg.storage.mounts)


def _runtime_for(rt: Runtime, requested: str, sg: SpecGenerator) -> OCIRuntime:
    """The OCI runtime for a new container: the one asked for, else the
    default — except that a container whose mounts propagate to the host
    gets runc when the default is crun behind its hybrid-cgroups wrapper
    (whose calls run in a mount namespace of their own: crun_hybrid.py)."""
    runtime = rt.oci(requested)
    if requested or runtime.choice.wrapper is None or not _propagates_to_host(sg):
        return runtime
    try:
        return rt.oci("runc")
    except SkiffError as exc:
        log.warning("shared mount propagation may not reach the host: %s", exc)
        return runtime


def create_container(rt: Runtime, opts: CreateOptions) -> Container:
    """Record a new container over ``opts.image``; returns it in state Created."""
    sg = opts.spec
    sg.validate()
    if opts.name:
        _check_name(opts.name)
        if _name_in_use(rt, opts.name):
            raise NameInUse(
                f'creating container storage: the container name "{opts.name}" is already in use',
                "remove that container or choose another name",
            )
    name = opts.name or _unique_name(rt)
    image_config = ImageConfig.from_bytes(opts.image.config)
    runtime = _runtime_for(rt, opts.runtime, sg)
    container_id = opts.container_id or random_id()
    for other in opts.volumes_from:
        rt.records.get(other.split(":", 1)[0])
    sig = stop_signal(sg, image_config)
    stop_timeout = sg.basic.stop_timeout if sg.basic.stop_timeout is not None else 10
    mode = network_mode_of(sg, opts.pod_id)
    networks = list(opts.networks) if mode == "bridge" else []
    config = ContainerConfig(
        image_id=opts.image.id,
        image_name=opts.image_name or (opts.image.names[0] if opts.image.names else opts.image.id),
        spec=serde.to_data(sg),
        command=process_args(sg, image_config),
        networks=networks,
        network_mode=mode,
        network_aliases=dict(opts.network_aliases),
        ports=list(opts.ports),
        publish_all=opts.publish_all,
        exposed_ports=image_config.exposed_ports,
        volumes_from=list(opts.volumes_from),
        restart=opts.restart,
        auto_remove=opts.auto_remove,
        stop_signal=sig,
        stop_timeout=stop_timeout,
        labels={**image_config.labels, **sg.basic.labels},
        annotations=dict(sg.basic.annotations),
        tty=sg.basic.terminal,
        stdin=sg.basic.stdin,
        runtime=runtime.name if not opts.runtime or "/" not in opts.runtime else opts.runtime,
        pod_id=opts.pod_id,
        infra=opts.infra,
        log_driver=opts.log_driver,
        log_path=opts.log_path or str(rt.paths(container_id).log_path),
        hostname=sg.basic.hostname,
        created_by=opts.created_by,
        cri=dict(opts.cri),
        create_command=list(opts.create_command),
    )
    # The record comes first, as "configured" (podman's state before storage
    # exists): a process killed before the storage is made leaves a record
    # that ps lists and rm removes, never storage that nothing names.
    container = rt.records.add(container_id, name, config, ContainerState(status=Status.CONFIGURED))
    try:
        rt.store.create_container(name, opts.image.id, container_id=container_id)
        rt.paths(container_id).userdata.mkdir(parents=True, exist_ok=True)
    except BaseException:
        if rt.store.containers.find(container_id) is not None:
            rt.store.delete_container(container_id)
        rt.records.delete(container_id)
        raise
    with rt.lock(container_id):
        container = rt.records.reload(container)
        if container.state.status == Status.CONFIGURED:
            container.state.status = Status.CREATED
            rt.records.save_state(container)
    return container


def spec_of(container: Container) -> SpecGenerator:
    """The container's recorded SpecGenerator."""
    sg: SpecGenerator = serde.from_data(SpecGenerator, container.config.spec)
    return sg
