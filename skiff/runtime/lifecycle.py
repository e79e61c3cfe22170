"""Starting, stopping, cleaning up and removing containers.

Every step takes the container's lock, reloads its record, reconciles it
with reality (``sync``) and only then acts, so that any number of skiff
processes — and conmon's exit command, ``skiff container cleanup ID``, run
when a container exits — can work on one container safely.

start   mount rootfs → network → /etc files → config.json → conmon (runtime
        create) → [attach] → runtime start
stop    stop signal → wait up to the stop timeout → SIGKILL → cleanup
cleanup runtime delete → network teardown → unmount → record exit code;
        then the restart policy, or removal for --rm
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiff.errors import ContainerError, ContainerStateError, SkiffError, StorageError
from skiff.oci.config import ImageConfig
from skiff.runtime import conmon as monitor
from skiff.runtime import seccomp_cache
from skiff.runtime.create import spec_of
from skiff.runtime.engine import Runtime
from skiff.runtime.exitfile import read_exit_record, remove_exit_file, wait_exit
from skiff.runtime.files import replace_file
from skiff.runtime.records import Container, Status
from skiff.runtime.specgen import etcfiles
from skiff.runtime.specgen.generator import NamespaceMode, SpecGenerator
from skiff.runtime.specgen.host import HostInfo
from skiff.runtime.specgen.spec import effective_hostname, generate_spec
from skiff.runtime.specgen.user import resolve_user
from skiff.storage.db import boot_id, process_alive

log = logging.getLogger(__name__)

ACTIVE = (Status.RUNNING, Status.PAUSED, Status.STOPPING)

ATTACHED_EXIT_DELAY = 1
"""Seconds conmon waits before its exit command when a client is attached
(``run`` in the foreground, ``start -a``): that client cleans up itself as
soon as the container exits, so the exit command only matters if the
client went away. Run at once, it would start a second skiff process that
competes with the client for the CPU and for the container's lock; a
second later it finds the container gone (or cleaned up) and exits."""


# --- reconciling ------------------------------------------------------------------


def sync(rt: Runtime, container: Container) -> Container:
    """Bring the record in line with reality (call under the container's lock).

    A container whose process died while nobody watched shows as Exited
    with its code (from conmon's exit file); after a reboot, when the run
    root is empty, a container that was running shows as Exited.
    """
    container = rt.records.reload(container)
    state = container.state
    if state.status not in (*ACTIVE, Status.INITIALIZED):
        return container
    if state.boot_id and state.boot_id != boot_id():
        state.status = Status.EXITED if state.started_at else Status.CREATED
        state.pid = 0
        state.conmon_pid = 0
        state.mount_point = ""
        state.netns = ""
        rt.records.save_state(container)
        return container
    paths = rt.paths(container.id)
    record = read_exit_record(paths.exit_dir, container.id)
    if record is not None:
        _finish(rt, container, record.code, record.finished_at.timestamp())
        return container
    if state.pid and not process_alive(state.pid) and not process_alive(state.conmon_pid):
        # both gone without an exit file (conmon killed): the code is unknown
        _finish(rt, container, -1, time.time())
    return container


def _finish(rt: Runtime, container: Container, code: int, finished: float) -> None:
    """Release what a stopped container held and record how it ended."""
    state = container.state
    runtime = rt.oci(container.config.runtime)
    with contextlib.suppress(ContainerError):
        runtime.delete(container.id, force=True)
    _release(rt, container)
    state.status = Status.EXITED
    state.exit_code = code
    state.finished_at = finished
    state.pid = 0
    state.conmon_pid = 0
    rt.records.save_state(container)


def _release(rt: Runtime, container: Container) -> None:
    state = container.state
    errors: list[str] = []
    if container.config.network_mode == "bridge" or state.netns:
        from skiff.runtime.network.setup import teardown_network

        try:
            teardown_network(rt.store, container.id)
        except SkiffError as exc:
            errors.append(str(exc))
    state.netns = ""
    state.network_status = {}
    if state.mount_point:
        try:
            rt.store.unmount_container(container.id, force=True)
        except SkiffError as exc:
            errors.append(str(exc))
        state.mount_point = ""
    _release_volumes(rt, container)
    if errors:
        log.warning("cleaning up container %s: %s", container.short_id, "; ".join(errors))


def _release_volumes(rt: Runtime, container: Container) -> None:
    from skiff.runtime import volumes

    if volumes.recorded(rt.store, container.id):
        volumes.unmount_for(rt.store, container.id)


# --- starting -----------------------------------------------------------------------


def _image_config(rt: Runtime, container: Container) -> ImageConfig:
    if container.config.image_id is None:
        return ImageConfig({})
    return ImageConfig.from_bytes(rt.store.images.get(container.config.image_id).config)


def _namespace_pids(rt: Runtime, sg: SpecGenerator) -> dict[str, int]:
    """Pids of the containers named by container:ID namespace modes (they must run)."""
    pids: dict[str, int] = {}
    for ns in (sg.network.pid, sg.network.ipc, sg.network.uts, sg.network.network):
        if ns.mode == NamespaceMode.CONTAINER and ns.value not in pids:
            other = rt.records.get(ns.value)
            with rt.lock(other.id):
                other = sync(rt, other)
            if other.config.infra:
                # a pod's infra starts with its first member (podman starts dependencies)
                from skiff.runtime.pods.lifecycle import ready_infra

                other = ready_infra(rt, other)
            if other.state.status != Status.RUNNING:
                raise ContainerStateError(
                    f"cannot join the namespaces of container {other.name}: it is not running"
                )
            pids[ns.value] = other.state.pid
            pids[other.id] = other.state.pid
    return pids


def _prepare(rt: Runtime, container: Container) -> dict[str, Any]:
    """Mount, network, /etc files and config.json; returns the spec."""
    from skiff.runtime import volumes

    sg = spec_of(container)
    image_config = _image_config(rt, container)
    state = container.state
    paths = rt.paths(container.id)
    host = HostInfo.detect()
    rootfs = _mount_rootfs(rt, container)
    state.mount_point = str(rootfs)
    rt.records.save_state(container)

    netns_path: str | None = None
    addresses: list[str] = []
    dns_servers: list[str] = list(sg.network.dns_servers)
    dns_search: list[str] = list(sg.network.dns_search)
    mode = container.config.network_mode
    if mode == "bridge":
        from skiff.runtime.network.setup import setup_network

        status = setup_network(
            rt.store,
            container.id,
            container.name,
            mode="bridge",
            networks=container.config.networks or None,
            aliases=container.config.network_aliases.get("*", []),
            ports=_port_mappings(container),
            dns_servers=sg.network.dns_servers,
        )
        netns_path = str(status.netns)
        state.netns = netns_path
        addresses = [str(a.ip) for a in status.addresses]
        if status.dns_servers:
            dns_servers = [str(ip) for ip in status.dns_servers]
        if status.dns_search_domains and not sg.network.dns_search:
            dns_search = list(status.dns_search_domains)
        state.network_status = {
            "networks": {name: result.to_json() for name, result in status.networks.items()},
            "ports": [p.to_json() for p in status.ports],
        }
        rt.records.save_state(container)

    hostname = effective_hostname(sg, container.id, host)
    private_net = mode not in ("host",)
    host_resolv = _read_text("/etc/resolv.conf")
    files = etcfiles.write_container_files(
        paths.userdata,
        hosts=etcfiles.render_hosts(
            hostname=hostname or host.hostname,
            name=container.name,
            addresses=addresses,
            add_hosts=sg.network.add_hosts,
            base=_read_text("/etc/hosts") if mode == "host" else "",
        ),
        resolv_conf=etcfiles.render_resolv_conf(
            host_resolv_conf=host_resolv,
            servers=dns_servers,
            search=dns_search,
            options=sg.network.dns_options,
            private_netns=private_net,
        ),
        hostname=etcfiles.render_hostname(hostname) if hostname else None,
        containerenv=etcfiles.render_containerenv(
            engine="skiff",
            name=container.name,
            container_id=container.id,
            image=container.config.image_name,
            image_id=container.config.image_id or "",
            privileged=sg.security.privileged,
        ),
    )
    user = resolve_user(
        rootfs,
        sg.security.user if sg.security.user is not None else image_config.user,
        sg.security.group_add,
    )
    volume_paths: dict[str, Path] = {}
    if volumes.needed(sg.storage.mounts, image_config.volumes) or volumes.recorded(
        rt.store, container.id
    ):
        volumes.mount_for(
            rt.store,
            container.id,
            sg.storage.mounts,
            image_config,
            rootfs,
            uid=user.uid,
            gid=user.gid,
        )
        sg.storage.mounts, volume_paths = volumes.as_spec_mounts(
            volumes.recorded_mounts(rt.store, container.id)
        )
    spec = generate_spec(
        sg,
        image_config,
        rootfs,
        container_id=container.id,
        container_files=files,
        volumes=volume_paths,
        netns_path=netns_path,
        container_pids=_namespace_pids(rt, sg),
        host=host,
    )
    seccomp_cache.apply(spec, rt.oci(container.config.runtime))
    _write_json(paths.config_json, spec)
    return spec


def _mount_rootfs(rt: Runtime, container: Container) -> Path:
    """Mount the container's storage. A ``--rm`` container's layer is deleted
    when it exits, so on overlay it is mounted ``volatile``: its writes are
    never synced, neither while it runs nor at unmount (a plain overlay's
    unmount syncs the upper file system: 5-20 ms, at times far more, per
    ``run --rm`` on a journaled disk). Kernels without the option (before
    5.10) get the plain mount."""
    if container.config.auto_remove and rt.store.driver_name == "overlay":
        layer_id = rt.store.containers.get(container.id).layer_id
        try:
            return rt.store.layers.mount(layer_id, ["volatile"])
        except StorageError as exc:
            log.info("volatile overlay refused (%s); mounting it plainly", exc)
    return rt.store.mount_container(container.id)


def _port_mappings(container: Container) -> list[Any]:
    from skiff.runtime.network.model import PortMapping

    return [PortMapping(**p) for p in container.config.ports]


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write_json(path: Path, value: dict[str, Any]) -> None:
    replace_file(path, json.dumps(value).encode(), 0o666)


def start(
    rt: Runtime,
    container: Container,
    *,
    attach: Callable[[Callable[[], None]], Any] | None = None,
) -> Container:
    """Start a created or exited container.

    ``attach(start_fn)``: connect to the container's streams first and call
    ``start_fn`` once connected (so no output is missed); returns when the
    attach ends (the container exited or the user detached).
    """
    with rt.lock(container.id):
        container = sync(rt, container)
        state = container.state
        if state.status in (Status.RUNNING, Status.PAUSED):
            return container
        if state.status == Status.REMOVING:
            raise ContainerStateError(f"container {container.name} is being removed")
        _launch(rt, container, exit_delay=ATTACHED_EXIT_DELAY if attach is not None else None)
        container = rt.records.reload(container)
    runtime = rt.oci(container.config.runtime)

    def start_fn() -> None:
        started = time.time()
        try:
            runtime.start(container.id)
        except SkiffError:
            with rt.lock(container.id):
                c = rt.records.reload(container)
                _abort(rt, c, "start failed")
            raise
        with rt.lock(container.id):
            c = rt.records.reload(container)
            if c.state.status == Status.INITIALIZED:
                c.state.status = Status.RUNNING
                c.state.started_at = started
                rt.records.save_state(c)
            elif not c.state.started_at:
                c.state.started_at = started  # it already exited: keep start before finish
                rt.records.save_state(c)

    if attach is not None:
        attach(start_fn)
    else:
        start_fn()
    return rt.records.reload(container)


def init(rt: Runtime, container: Container) -> Container:
    """``skiff init``: everything up to the runtime's create, not started."""
    with rt.lock(container.id):
        container = sync(rt, container)
        if container.state.status in (Status.RUNNING, Status.PAUSED, Status.INITIALIZED):
            return container
        _launch(rt, container)
        return rt.records.reload(container)


def _launch(rt: Runtime, container: Container, *, exit_delay: int | None = None) -> None:
    """Prepare and hand the container to conmon (runtime create); state Initialized.

    ``exit_delay``: seconds before conmon runs the exit command (None: at once)."""
    state = container.state
    paths = rt.paths(container.id)
    runtime = rt.oci(container.config.runtime)
    if runtime.exists(container.id):
        runtime.delete(container.id, force=True)
    remove_exit_file(paths.exit_dir, container.id)
    state.exit_code = None
    state.error = ""
    state.stopped_by_user = False
    state.boot_id = boot_id()
    try:
        spec = _prepare(rt, container)
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = (
            Path(container.config.log_path) if container.config.log_driver == "k8s-file" else None
        )
        result = monitor.start_monitor(
            monitor.MonitorSpec(
                container_id=container.id,
                name=container.name,
                bundle=paths.bundle,
                runtime_path=runtime.path,
                runtime_args=tuple(runtime.global_args()),
                pid_file=paths.pid_file,
                conmon_pid_file=paths.conmon_pid_file,
                exit_dir=paths.exit_dir,
                socket_dir=paths.socket_dir,
                log_path=log_path,
                log_driver=container.config.log_driver,
                exit_command=tuple(rt.exit_command(container.id)),
                exit_delay=exit_delay,
                terminal=container.config.tty,
                stdin=container.config.stdin,
                leave_stdin_open=_stdin_outlives_attach(container),
                runtime_log=paths.runtime_log,
            )
        )
    except BaseException as exc:
        _abort(rt, container, str(exc) if isinstance(exc, SkiffError) else type(exc).__name__)
        raise
    seccomp_cache.remember(spec, runtime, container.id)
    state.pid = result.container_pid
    state.conmon_pid = result.conmon_pid or 0
    state.status = Status.INITIALIZED
    rt.records.save_state(container)


def _stdin_outlives_attach(container: Container) -> bool:
    """Whether the container's stdin stays open when an attached client leaves.

    The CRI's ``stdin_once`` false (its default) keeps stdin open across
    attach sessions, as CRI-O does; the CLI's containers close it with
    the first client's stdin, as podman's do.
    """
    return (
        container.config.stdin
        and bool(container.config.cri)
        and (not container.config.cri.get("stdin_once", False))
    )


def _abort(rt: Runtime, container: Container, reason: str) -> None:
    """Undo a start that failed half-way; the container stays startable."""
    runtime = rt.oci(container.config.runtime)
    with contextlib.suppress(SkiffError):
        if runtime.exists(container.id):
            runtime.kill(container.id, signal.SIGKILL, all_processes=True)
    with contextlib.suppress(SkiffError):
        runtime.delete(container.id, force=True)
    _release(rt, container)
    state = container.state
    state.pid = 0
    state.conmon_pid = 0
    state.error = reason
    state.status = Status.EXITED if state.started_at else Status.CREATED
    if state.status == Status.EXITED and state.exit_code is None:
        state.exit_code = 127
    rt.records.save_state(container)


# --- stopping --------------------------------------------------------------------------


def kill(rt: Runtime, container: Container, sig: int = signal.SIGKILL) -> Container:
    with rt.lock(container.id):
        container = sync(rt, container)
        if container.state.status not in (Status.RUNNING, Status.PAUSED):
            raise ContainerStateError(
                f"can only kill running containers. {container.short_id} is in state "
                f"{container.state.status.value}: container state improper"
            )
        container.state.stopped_by_user = True
        rt.records.save_state(container)
        rt.oci(container.config.runtime).kill(container.id, sig)
    return container


def wait_for_exit(rt: Runtime, container: Container, timeout: float | None) -> int | None:
    """The exit code once the container exited (None on timeout)."""
    paths = rt.paths(container.id)
    return wait_exit(
        paths.exit_dir, container.id, timeout=timeout, conmon_pid=container.state.conmon_pid or None
    )


def stop(rt: Runtime, container: Container, timeout: int | None = None) -> Container:
    """Send the stop signal, SIGKILL after the timeout, then clean up."""
    with rt.lock(container.id):
        container = sync(rt, container)
        state = container.state
        if state.status not in (Status.RUNNING, Status.PAUSED, Status.INITIALIZED):
            return container
        state.stopped_by_user = True
        rt.records.save_state(container)
        runtime = rt.oci(container.config.runtime)
        wait = container.config.stop_timeout if timeout is None else timeout
        if state.status == Status.PAUSED:
            with contextlib.suppress(ContainerError):
                runtime.resume(container.id)
        if state.status == Status.INITIALIZED:
            with contextlib.suppress(ContainerError):
                runtime.kill(container.id, signal.SIGKILL, all_processes=True)
        else:
            if wait > 0:
                with contextlib.suppress(ContainerStateError):
                    runtime.kill(container.id, container.config.stop_signal)
            code = wait_for_exit(rt, container, float(wait)) if wait > 0 else None
            if code is None:
                with contextlib.suppress(ContainerStateError):
                    runtime.kill(container.id, signal.SIGKILL, all_processes=True)
        code = wait_for_exit(rt, container, 30.0)
        if code is None:
            raise ContainerError(f"container {container.name} did not exit after SIGKILL")
        _cleanup_locked(rt, container, allow_restart=False)
        # a --rm container is removed by its cleanup: it is gone, not an error
        return rt.records.find(container.id) or container


def cleanup(rt: Runtime, container_ref: str) -> None:
    """conmon's exit command: record the exit, release resources, restart or remove."""
    container = rt.records.find(container_ref)
    if container is None:
        return
    with rt.lock(container.id):
        try:
            container = rt.records.reload(container)
        except SkiffError:
            return
        _cleanup_locked(rt, container, allow_restart=True)
    if container.config.pod_id and not container.config.infra:
        from skiff.runtime.pods.lifecycle import member_exited

        member_exited(rt, container.config.pod_id)  # the pod's exit policy


def _cleanup_locked(rt: Runtime, container: Container, *, allow_restart: bool) -> None:
    container = sync(rt, container)
    state = container.state
    if state.status in ACTIVE or state.status == Status.INITIALIZED:
        return  # still running: nothing to clean up yet
    config = container.config
    if state.mount_point or state.netns:
        _release(rt, container)
        rt.records.save_state(container)
    if allow_restart and _should_restart(container):
        state.restart_count += 1
        rt.records.save_state(container)
        try:
            _launch(rt, container)
            rt.oci(config.runtime).start(container.id)
            container = rt.records.reload(container)
            container.state.status = Status.RUNNING
            container.state.started_at = time.time()
            rt.records.save_state(container)
        except SkiffError as exc:
            log.error("restarting container %s failed: %s", container.name, exc)
        return
    if config.auto_remove:
        remove(rt, container, force=True, volumes=True)


def _should_restart(container: Container) -> bool:
    policy = container.config.restart
    state = container.state
    if state.stopped_by_user or policy.name in ("", "no"):
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure":
        failed = state.exit_code not in (0, None)
        return failed and (policy.max_retries <= 0 or state.restart_count < policy.max_retries)
    return False


def restart(rt: Runtime, container: Container, timeout: int | None = None) -> Container:
    container = stop(rt, container, timeout)
    return start(rt, container)


def pause(rt: Runtime, container: Container) -> Container:
    with rt.lock(container.id):
        container = sync(rt, container)
        if container.state.status != Status.RUNNING:
            raise ContainerStateError(
                f"{container.short_id} is not running, can't pause: container state improper"
            )
        rt.oci(container.config.runtime).pause(container.id)
        container.state.status = Status.PAUSED
        rt.records.save_state(container)
        return container


def unpause(rt: Runtime, container: Container) -> Container:
    with rt.lock(container.id):
        container = sync(rt, container)
        if container.state.status != Status.PAUSED:
            raise ContainerStateError(
                f"{container.short_id} is not paused, can't unpause: container state improper"
            )
        rt.oci(container.config.runtime).resume(container.id)
        container.state.status = Status.RUNNING
        rt.records.save_state(container)
        return container


# --- removing --------------------------------------------------------------------------


def remove(
    rt: Runtime,
    container: Container,
    *,
    force: bool = False,
    volumes: bool = False,
    timeout: int | None = None,
) -> None:
    """Remove a container (stopping it first with ``force``) and all it holds."""
    from skiff.runtime import volumes as volumes_mod
    from skiff.runtime.locks import remove_lock_file

    with rt.lock(container.id):
        try:
            container = sync(rt, container)
        except SkiffError:
            return
        if container.state.status in (Status.RUNNING, Status.PAUSED, Status.INITIALIZED):
            if not force:
                raise ContainerStateError(
                    f"cannot remove container {container.id} as it is {container.state.status.value} "
                    "- running or paused containers cannot be removed without force: "
                    "container state improper"
                )
            container = stop(rt, container, timeout)
            if rt.records.find(container.id) is None:
                return  # a --rm container: stopping it removed it
        dependents = [
            c.name for c in rt.records.all() if c.id != container.id and _joins(c, container.id)
        ]
        if dependents and not force:
            raise ContainerStateError(
                f"container {container.short_id} has dependent containers which must be removed "
                f"before it: {', '.join(dependents)}"
            )
        container.state.status = Status.REMOVING
        rt.records.save_state(container)
        runtime = rt.oci(container.config.runtime)
        with contextlib.suppress(ContainerError):
            runtime.delete(container.id, force=True)
        _release(rt, container)
        paths = rt.paths(container.id)
        if container.state.exec_sessions:
            from skiff.runtime.exec import prune_sessions

            container = prune_sessions(rt, container)
        remove_exit_file(paths.exit_dir, container.id)
        monitor.remove_monitor_files(paths.socket_dir, container.id, paths.bundle)
        if volumes_mod.recorded(rt.store, container.id):
            volumes_mod.release(rt.store, container.id, remove_anonymous=volumes)
        if rt.store.containers.find(container.id) is not None:
            rt.store.delete_container(container.id)
        rt.records.delete(container.id)
    remove_lock_file(rt.run_root, container.id)


def _joins(other: Container, container_id: str) -> bool:
    spec = other.config.spec
    network = spec.get("network", {}) if isinstance(spec, dict) else {}
    for key in ("pid", "ipc", "uts", "network"):
        ns = network.get(key) or {}
        if (
            isinstance(ns, dict)
            and ns.get("mode") == "container"
            and ns.get("value") == container_id
        ):
            return True
    return container_id in [v.split(":", 1)[0] for v in other.config.volumes_from]
