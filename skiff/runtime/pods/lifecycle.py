"""A pod's life: start, stop, restart, kill, pause, unpause, remove, prune.

Every pod-wide step holds the pod's lock, then acts on the containers
through the container lifecycle (``skiff.runtime.lifecycle``), each under
its own lock: lock order pod → member → infra. Order as podman: the infra
container starts first and stops last; members in creation order.

Two calls come from the container lifecycle itself:

- ``ready_infra`` — a member is about to start and joins the infra's
  namespaces: the infra is started if it is not running (podman starts a
  container's dependencies), with the pod's cgroup and /dev/shm tmpfs in
  place. It runs under the member's lock, so it never takes the pod's lock.
- ``member_exited`` — a member's exit was cleaned up (conmon's exit
  command): with exit policy ``stop``, the pod is stopped once no member
  is running any more (members never started do not count as exited, so
  init containers running before the others do not stop the pod).

Removing a pod removes its members, its infra container (network
namespace, netavark state and mounts go with it), the volumes made for it
(kube emptyDir/configMap, labelled ``io.skiff.pod``), its /dev/shm tmpfs
and its cgroup, so nothing of it is left on the host.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal as signals
from collections.abc import Callable
from dataclasses import dataclass, field

from skiff.errors import ContainerError, ContainerStateError, SkiffError
from skiff.runtime import lifecycle
from skiff.runtime.engine import Runtime
from skiff.runtime.locks import pod_lock
from skiff.runtime.pods import cgroup as pod_cgroups
from skiff.runtime.pods.create import mount_pod_shm, pod_run_dir, pods_of, unmount_pod_shm
from skiff.runtime.pods.model import LABEL_POD_VOLUME, Pod, PodStatus, pod_status
from skiff.runtime.records import Container, Status
from skiff.storage.db import boot_id

log = logging.getLogger(__name__)

ACTIVE = (Status.RUNNING, Status.PAUSED, Status.INITIALIZED, Status.STOPPING)


@dataclass
class PodActionReport:
    """What a pod-wide step did: the pod, and the containers that failed (ID → error)."""

    pod: Pod
    errors: dict[str, str] = field(default_factory=dict)

    def raise_errors(self, verb: str) -> None:
        if not self.errors:
            return
        lines = [f"{verb} container {cid}: {message}" for cid, message in self.errors.items()]
        raise ContainerError(
            "; ".join(lines), f"see 'skiff pod inspect {self.pod.name}' and the containers' logs"
        )


# --- looking ---------------------------------------------------------------------------


def containers_of(rt: Runtime, pod: Pod, *, sync: bool = True) -> list[Container]:
    """The pod's containers (infra included), oldest first, synced with reality."""
    found = rt.records.by_pod(pod.id)
    if not sync:
        return found
    out = []
    for record in found:
        current = record
        if record.state.status in (*ACTIVE, Status.INITIALIZED):
            with rt.lock(record.id):
                try:
                    current = lifecycle.sync(rt, record)
                except SkiffError:
                    continue
        out.append(current)
    return out


def status_of(rt: Runtime, pod: Pod, containers: list[Container] | None = None) -> PodStatus:
    return pod_status(containers if containers is not None else containers_of(rt, pod))


def _members(containers: list[Container]) -> list[Container]:
    return [c for c in containers if not c.config.infra]


def _infra(containers: list[Container]) -> Container | None:
    return next((c for c in containers if c.config.infra), None)


def _each(
    report: PodActionReport, containers: list[Container], step: Callable[[Container], object]
) -> None:
    for c in containers:
        try:
            step(c)
        except SkiffError as exc:
            report.errors[c.id] = str(exc)


def _each_at_once(
    report: PodActionReport, containers: list[Container], step: Callable[[Container], object]
) -> None:
    """``step`` for every container in threads of its own.

    For the steps that mostly wait (a stop timeout, runc, unmounting): each
    takes its own container's lock and database connection, so they do not
    share state; the pod's lock, held by the caller, covers them all.
    """
    if len(containers) < 2:
        _each(report, containers, step)
        return
    from concurrent.futures import ThreadPoolExecutor

    def run(c: Container) -> tuple[str, str | None]:
        try:
            step(c)
        except SkiffError as exc:
            return c.id, str(exc)
        return c.id, None

    with ThreadPoolExecutor(max_workers=len(containers)) as pool:
        for container_id, error in pool.map(run, containers):
            if error is not None:
                report.errors[container_id] = error


# --- hooks of the container lifecycle ----------------------------------------------------


def ready_infra(rt: Runtime, infra: Container) -> Container:
    """Start the pod's infra container if needed, with the pod's cgroup and
    /dev/shm in place (called under a member's lock)."""
    if infra.state.status == Status.RUNNING:
        return infra
    pod = pods_of(rt).find(infra.config.pod_id or "")
    if pod is not None:
        _ensure_cgroup(rt, pod)  # with its limits, after a reboot
        mount_pod_shm(rt, pod)
    return lifecycle.start(rt, infra)


def member_exited(rt: Runtime, pod_id: str) -> None:
    """Apply the pod's exit policy after a member exited (conmon's exit command)."""
    pod = pods_of(rt).find(pod_id)
    if pod is None or pod.config.exit_policy != "stop":
        return
    with pod_lock(rt.run_root, pod.id):
        try:
            pod = pods_of(rt).reload(pod)
        except SkiffError:
            return
        containers = containers_of(rt, pod)
        members = _members(containers)
        if not members or any(c.state.status != Status.EXITED for c in members):
            return
        infra = _infra(containers)
        if infra is not None and infra.state.status in ACTIVE:
            log.info("pod %s: last container exited, stopping it (exit policy stop)", pod.name)
            lifecycle.stop(rt, infra)


# --- start, stop, restart ------------------------------------------------------------------


def _ensure_cgroup(rt: Runtime, pod: Pod) -> None:
    if pod.state.cgroup_boot == boot_id() and pod_cgroups.pod_cgroup_exists(pod.config.cgroup_path):
        return
    pod_cgroups.create_pod_cgroup(pod.config.cgroup_path, pod.config.resources)
    pod.state.cgroup_boot = boot_id()
    pods_of(rt).save_state(pod)


def start_pod(rt: Runtime, pod: Pod) -> PodActionReport:
    """Start the infra container, then every member not running."""
    with pod_lock(rt.run_root, pod.id):
        pod = pods_of(rt).reload(pod)
        report = PodActionReport(pod)
        containers = containers_of(rt, pod)
        if not containers:
            raise ContainerStateError(
                f"no containers in pod {pod.id} have no dependencies, cannot start pod: "
                "no such container",
                "add containers to the pod first",
            )
        _ensure_cgroup(rt, pod)
        infra = _infra(containers)
        if infra is not None:
            try:
                with rt.lock(infra.id):
                    ready_infra(rt, lifecycle.sync(rt, infra))
            except SkiffError as exc:
                report.errors[infra.id] = str(exc)
                return report
        # the infra runs: members only join it, so they can start side by side
        _each_at_once(
            report,
            [
                c
                for c in _members(containers)
                if c.state.status not in (Status.RUNNING, Status.PAUSED)
            ],
            lambda c: lifecycle.start(rt, c),
        )
        return report


def stop_pod(rt: Runtime, pod: Pod, timeout: int | None = None) -> PodActionReport:
    """Stop every member (their stop signal, SIGKILL after the timeout), then the infra."""
    with pod_lock(rt.run_root, pod.id):
        pod = pods_of(rt).reload(pod)
        return _stop_locked(rt, pod, timeout)


def _stop_locked(rt: Runtime, pod: Pod, timeout: int | None) -> PodActionReport:
    report = PodActionReport(pod)
    containers = containers_of(rt, pod)
    # every member, exited ones too: one between two runs of a restart policy
    # must not be restarted by its cleanup once the pod is stopping
    _stop_all(rt, report, _members(containers), timeout)
    infra = _infra(containers)
    if infra is not None and infra.state.status in ACTIVE:
        _stop_all(rt, report, [infra], timeout)
    if not report.errors:
        unmount_pod_shm(rt, pod)
    return report


def _stop_all(
    rt: Runtime, report: PodActionReport, containers: list[Container], timeout: int | None
) -> None:
    """Signal all first, then wait for each: the stop timeouts run side by side.

    Each is marked stopped by the user first (under its lock), so that no
    restart policy brings it back while the pod stops.
    """
    for c in containers:
        wait = c.config.stop_timeout if timeout is None else timeout
        sig = c.config.stop_signal if wait > 0 else signals.SIGKILL
        with rt.lock(c.id), contextlib.suppress(SkiffError):
            current = lifecycle.sync(rt, c)
            if current.state.status == Status.REMOVING:
                continue
            current.state.stopped_by_user = True
            rt.records.save_state(current)
            if current.state.status in (Status.RUNNING, Status.PAUSED):
                runtime = rt.oci(current.config.runtime)
                if current.state.status == Status.PAUSED:
                    runtime.resume(current.id)
                runtime.kill(current.id, sig)
    _each_at_once(report, containers, lambda c: lifecycle.stop(rt, c, timeout))


def restart_pod(rt: Runtime, pod: Pod, timeout: int | None = None) -> PodActionReport:
    with pod_lock(rt.run_root, pod.id):
        pod = pods_of(rt).reload(pod)
        report = _stop_locked(rt, pod, timeout)
    if report.errors:
        return report
    return start_pod(rt, pod)


# --- signals, pause -----------------------------------------------------------------------------


def kill_pod(rt: Runtime, pod: Pod, sig: int = signals.SIGKILL) -> PodActionReport:
    """Send ``sig`` to every running container of the pod (members first)."""
    with pod_lock(rt.run_root, pod.id):
        pod = pods_of(rt).reload(pod)
        report = PodActionReport(pod)
        containers = containers_of(rt, pod)
        running = [c for c in containers if c.state.status in (Status.RUNNING, Status.PAUSED)]
        if not running:
            raise ContainerStateError(
                f"pod {pod.id} has no running containers to kill: container state improper"
            )
        ordered = _members(running) + [c for c in running if c.config.infra]
        _each(report, ordered, lambda c: lifecycle.kill(rt, c, sig))
        return report


def pause_pod(rt: Runtime, pod: Pod) -> PodActionReport:
    with pod_lock(rt.run_root, pod.id):
        pod = pods_of(rt).reload(pod)
        report = PodActionReport(pod)
        running = [c for c in containers_of(rt, pod) if c.state.status == Status.RUNNING]
        _each(report, running, lambda c: lifecycle.pause(rt, c))
        return report


def unpause_pod(rt: Runtime, pod: Pod) -> PodActionReport:
    with pod_lock(rt.run_root, pod.id):
        pod = pods_of(rt).reload(pod)
        report = PodActionReport(pod)
        paused = [c for c in containers_of(rt, pod) if c.state.status == Status.PAUSED]
        _each(report, paused, lambda c: lifecycle.unpause(rt, c))
        return report


# --- removing ---------------------------------------------------------------------------------------


def remove_pod(rt: Runtime, pod: Pod, *, force: bool = False, timeout: int | None = None) -> None:
    """Remove a pod and everything it holds (``force``: stop it first).

    Without ``force`` a pod with a running, paused or initialized
    container is refused before anything is removed (podman's message).
    """
    with pod_lock(rt.run_root, pod.id):
        pod = pods_of(rt).reload(pod)
        containers = containers_of(rt, pod)
        busy = [c for c in containers if c.state.status in ACTIVE]
        if busy and not force:
            lines = [
                f"removing container {c.id} from pod {pod.id}: cannot remove container {c.id} "
                f"as it is {c.state.status.value} - running or paused containers cannot be "
                "removed without force: container state improper"
                for c in busy
            ]
            raise ContainerStateError(
                "; ".join(lines), f"stop the pod first, or use 'skiff pod rm -f {pod.name}'"
            )
        if busy:
            report = _stop_locked(rt, pod, timeout)
            report.raise_errors("stopping")
        removed = PodActionReport(pod)

        def remove(c: Container) -> None:
            current = rt.records.find(c.id)
            if current is not None:
                lifecycle.remove(rt, current, force=True, volumes=True, timeout=timeout)

        _each_at_once(removed, _members(containers), remove)
        if not removed.errors:
            _each(removed, [c for c in containers if c.config.infra], remove)
        if removed.errors:
            raise ContainerError(
                "; ".join(
                    f"removing container {cid} from pod {pod.id}: {message}"
                    for cid, message in removed.errors.items()
                ),
                "retry 'skiff pod rm -f'",
            )
        _remove_pod_volumes(rt, pod)
        unmount_pod_shm(rt, pod)
        if not pod_cgroups.remove_pod_cgroup(pod.config.cgroup_path):
            log.warning("the cgroup %s of pod %s is still in use", pod.config.cgroup_path, pod.name)
        shutil.rmtree(pod_run_dir(rt, pod.id), ignore_errors=True)
        pods_of(rt).delete(pod.id)
    with contextlib.suppress(OSError):
        (rt.run_root / "locks" / f"pod-{pod.id}.lock").unlink()


def _remove_pod_volumes(rt: Runtime, pod: Pod) -> None:
    from skiff.runtime.volumes import VolumeStore

    volumes = VolumeStore.of(rt.store)
    for volume in volumes.all():
        if volume.labels.get(LABEL_POD_VOLUME) == pod.id:
            try:
                volumes.remove(volume.name, force=True)
            except SkiffError as exc:
                log.warning("removing volume %s of pod %s: %s", volume.name, pod.name, exc)


def prune_pods(rt: Runtime) -> list[str]:
    """Remove every pod whose containers have all exited (podman's prune); their IDs."""
    removed = []
    for pod in pods_of(rt).all():
        if status_of(rt, pod) == PodStatus.EXITED:
            try:
                remove_pod(rt, pod, force=True)
            except SkiffError as exc:
                log.warning("pruning pod %s: %s", pod.name, exc)
                continue
            removed.append(pod.id)
    return removed
