"""The container RPCs: create, start, stop, remove, list, status, update,
ReopenContainerLog, ExecSync, and the Exec/Attach/PortForward URLs.

A CRI container is a member of its sandbox's pod, made with ``join_pod``
(the pod's network, IPC and UTS namespaces, its cgroup, its /etc files)
and ``create_container`` like every skiff container, recorded with
``created_by="cri"`` and its CRI metadata in ``ContainerConfig.cri``:
name and attempt, the sandbox, the image as kubelet gave it and its ID,
kubelet's labels and annotations (the record's labels also hold the
image's), the CRI mounts, and the log path. The log is conmon's k8s-file
log — the CRI format ``TIMESTAMP STREAM P|F MESSAGE`` — written at
LOG_DIRECTORY/LOG_PATH of the sandbox and container configs (kubelet's
layout), or in the store when kubelet gives none; ``skiff logs`` reads it.

States: created (configured, created, initialized), running (running,
paused, stopping), exited (exited, stopped), unknown (being removed).
StopContainer and RemoveContainer are idempotent (an unknown ID is not an
error); StopContainer sends the stop signal and SIGKILL after ``timeout``
seconds; RemoveContainer kills a running container first.

ExecSync runs through conmon like ``skiff exec``: each stream is kept up
to ``EXEC_SYNC_OUTPUT_LIMIT`` bytes (the rest is read and dropped, so the
process never blocks on a full pipe), and a command still running after
``timeout`` seconds is killed (SIGKILL) and the RPC fails with
DeadlineExceeded, as kubelet's probes expect.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2

from skiff.cri import names, translate
from skiff.cri.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skiff.cri.records import Sandbox
from skiff.cri.sandbox import is_ready, labels_match
from skiff.cri.service import CRIService
from skiff.errors import CommandNotFound, CommandNotInvokable, ContainerError, SkiffError
from skiff.runtime import lifecycle
from skiff.runtime.locks import pod_lock
from skiff.runtime.records import Container, Status

EXEC_SYNC_OUTPUT_LIMIT = 16 << 20
"""Bytes kept of each stream of an ExecSync (kubelet's gRPC message limit is 16 MiB)."""
REOPEN_WAIT = 10.0

CREATED_STATES = (Status.CONFIGURED, Status.CREATED, Status.INITIALIZED)
RUNNING_STATES = (Status.RUNNING, Status.PAUSED, Status.STOPPING)
EXITED_STATES = (Status.EXITED, Status.STOPPED)


def cri_state(status: Status) -> Any:
    if status in CREATED_STATES:
        return int(api_pb2.CONTAINER_CREATED)
    if status in RUNNING_STATES:
        return int(api_pb2.CONTAINER_RUNNING)
    if status in EXITED_STATES:
        return int(api_pb2.CONTAINER_EXITED)
    return int(api_pb2.CONTAINER_UNKNOWN)


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000) if seconds else 0


def synced(svc: CRIService, container: Container) -> Container:
    with svc.rt.lock(container.id), contextlib.suppress(SkiffError):
        container = lifecycle.sync(svc.rt, container)
    return container


# --- create ------------------------------------------------------------------------------


def create_container(svc: CRIService, req: Any) -> Any:
    from skiff.libimage.names import find_local_image
    from skiff.runtime.create import CreateOptions
    from skiff.runtime.create import create_container as create
    from skiff.runtime.pods.create import join_pod

    sandbox = svc.get_sandbox(req.pod_sandbox_id)
    if not req.HasField("config"):
        raise InvalidArgument("CreateContainerRequest.config is required")
    config = req.config
    names.check_container_metadata(config.metadata)
    if not config.HasField("image") or not config.image.image:
        raise InvalidArgument(
            "ContainerConfig.Image.Image should not be empty", "give the image to run"
        )
    name = names.container_name(_sandbox_metadata(sandbox), config.metadata)
    with pod_lock(svc.rt.run_root, sandbox.id):
        current = svc.sandboxes.find(sandbox.id)
        pod = svc.pod_of(sandbox) if current is not None else None
        if current is None or pod is None:
            raise NotFound(f'could not find pod "{sandbox.id}": no such pod sandbox')
        if current.state.stopped:
            raise FailedPrecondition(
                f"cannot create container {name}: pod sandbox {sandbox.id[:12]} is stopped",
                "run a new sandbox",
            )
        if svc.rt.records.find(name) is not None:
            raise AlreadyExists(
                f'container with name "{name}" already exists', "remove it or use the next attempt"
            )
        image, _ = find_local_image(svc.ctx, svc.rt.store, config.image.image)
        sg = translate.container_spec(config)
        log_path = _log_path(svc, current, config.log_path)
        cri = {
            "name": config.metadata.name,
            "attempt": int(config.metadata.attempt),
            "sandbox_id": sandbox.id,
            "image": config.image.image,
            "user_specified_image": config.image.user_specified_image,
            "image_id": image.id,
            "labels": dict(config.labels),
            "annotations": dict(config.annotations),
            "mounts": [_mount_record(m) for m in config.mounts],
            "log_path": config.log_path,
            "stdin_once": config.stdin_once,
        }
        opts = CreateOptions(
            image=image,
            spec=sg,
            image_name=config.image.user_specified_image or config.image.image,
            name=name,
            runtime=svc.runtime_name(current.config.runtime_handler),
            log_path=str(log_path) if log_path is not None else "",
            created_by="cri",
            cri=cri,
        )
        join_pod(svc.rt, pod, opts)
        pid_mode, target = translate.container_namespaces(config)
        if pid_mode == translate.NS_TARGET and target:
            target = svc.get_container(target).id
        sg.network.pid = translate.pid_namespace(pid_mode, target, pod.infra_id)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        container = create(svc.rt, opts)
    return api_pb2.CreateContainerResponse(container_id=container.id)


def _sandbox_metadata(sandbox: Sandbox) -> Any:
    c = sandbox.config
    return api_pb2.PodSandboxMetadata(
        name=c.name, uid=c.uid, namespace=c.namespace, attempt=c.attempt
    )


def _log_path(svc: CRIService, sandbox: Sandbox, log_path: str) -> Path | None:
    """LOG_DIRECTORY/LOG_PATH (kubelet's layout); a sandbox without a log
    directory logs under POD_LOG_ROOT/SANDBOX_ID; None: no log path given,
    the store's default."""
    if not log_path:
        return None
    if Path(log_path).is_absolute():
        return Path(log_path)
    directory = sandbox.config.log_directory or str(svc.config.pod_log_root / sandbox.id)
    return Path(directory) / log_path


def _mount_record(m: Any) -> dict[str, Any]:
    return {
        "container_path": m.container_path,
        "host_path": m.host_path,
        "readonly": m.readonly,
        "selinux_relabel": m.selinux_relabel,
        "propagation": int(m.propagation),
    }


# --- start, stop, remove ----------------------------------------------------------------------


def start_container(svc: CRIService, req: Any) -> Any:
    container = svc.get_container(req.container_id)
    sandbox = svc.find_sandbox(container.config.cri.get("sandbox_id", ""))
    if sandbox is None or sandbox.state.stopped:
        raise FailedPrecondition(
            f"cannot start container {container.id[:12]}: its pod sandbox is not ready",
            "run a new sandbox",
        )
    with svc.rt.lock(container.id):
        container = lifecycle.sync(svc.rt, container)
        if container.state.status not in (Status.CREATED, Status.CONFIGURED):
            raise FailedPrecondition(
                f"container {container.id[:12]} is not in created state: "
                f"{container.state.status.value}",
                "a CRI container starts once; create a new one",
            )
    lifecycle.start(svc.rt, container)
    return api_pb2.StartContainerResponse()


def stop_container(svc: CRIService, req: Any) -> Any:
    container = svc.find_container(req.container_id)
    if container is not None:
        timeout = max(0, int(req.timeout))
        try:
            lifecycle.stop(svc.rt, container, timeout)
        except SkiffError:
            if svc.find_container(container.id) is not None:
                raise
    return api_pb2.StopContainerResponse()


def remove_container(svc: CRIService, req: Any) -> Any:
    container = svc.find_container(req.container_id)
    if container is not None:
        try:
            lifecycle.remove(svc.rt, container, force=True, volumes=True, timeout=0)
        except SkiffError:
            if svc.find_container(container.id) is not None:
                raise
        with svc.samples_lock:
            svc.cpu_samples.pop(container.id, None)
    return api_pb2.RemoveContainerResponse()


# --- listing and status ------------------------------------------------------------------------


def _image_spec(container: Container) -> Any:
    cri = container.config.cri
    return api_pb2.ImageSpec(
        image=str(cri.get("image", container.config.image_name)),
        user_specified_image=str(cri.get("user_specified_image", "")),
    )


def _metadata(container: Container) -> Any:
    cri = container.config.cri
    return api_pb2.ContainerMetadata(
        name=str(cri.get("name", container.name)), attempt=int(cri.get("attempt", 0))
    )


def _labels(container: Container) -> dict[str, str]:
    return dict(container.config.cri.get("labels", {}))


def _annotations(container: Container) -> dict[str, str]:
    return dict(container.config.cri.get("annotations", {}))


def matches_filter(container: Container, f: Any | None) -> bool:
    """What a ContainerFilter and a ContainerStatsFilter ask alike (None: no
    filter): an ID prefix, a sandbox ID prefix, a label selector."""
    if f is None:
        return True
    if f.id and not container.id.startswith(f.id):
        return False
    sandbox_id = str(container.config.cri.get("sandbox_id", ""))
    if f.pod_sandbox_id and not sandbox_id.startswith(f.pod_sandbox_id):
        return False
    return labels_match(_labels(container), f.label_selector)


def list_containers(svc: CRIService, req: Any) -> Any:
    f = req.filter if req.HasField("filter") else None
    items = []
    for container in svc.cri_containers():
        if not matches_filter(container, f):
            continue
        sandbox_id = str(container.config.cri.get("sandbox_id", ""))
        current = synced(svc, container)
        state = cri_state(current.state.status)
        if f is not None and f.HasField("state") and f.state.state != state:
            continue
        items.append(
            api_pb2.Container(
                id=current.id,
                pod_sandbox_id=sandbox_id,
                metadata=_metadata(current),
                image=_image_spec(current),
                image_ref=current.config.image_id or "",
                state=state,
                created_at=_ns(current.created),
                labels=_labels(current),
                annotations=_annotations(current),
                image_id=current.config.image_id or "",
            )
        )
    return api_pb2.ListContainersResponse(containers=items)


def _reason(container: Container) -> tuple[str, str]:
    state = container.state
    if state.status not in EXITED_STATES:
        return "", ""
    if state.oom_killed:
        return "OOMKilled", state.error
    if state.error and not state.started_at:
        return "StartError", state.error
    return ("Completed" if state.exit_code == 0 else "Error"), state.error


def _resources(container: Container) -> Any:
    from skiff.runtime.create import spec_of

    res = spec_of(container).resources
    linux = api_pb2.LinuxContainerResources(
        cpu_period=res.cpu_period or 0,
        cpu_quota=res.cpu_quota or 0,
        cpu_shares=res.cpu_shares or 0,
        memory_limit_in_bytes=res.memory or 0,
        cpuset_cpus=res.cpuset_cpus,
        cpuset_mems=res.cpuset_mems,
        memory_swap_limit_in_bytes=res.memory_swap
        if res.memory_swap and res.memory_swap > 0
        else 0,
    )
    return api_pb2.ContainerResources(linux=linux)


def container_status(svc: CRIService, req: Any) -> Any:
    container = synced(svc, svc.get_container(req.container_id))
    state = container.state
    reason, message = _reason(container)
    mounts = [
        api_pb2.Mount(
            container_path=m["container_path"],
            host_path=m["host_path"],
            readonly=m["readonly"],
            selinux_relabel=m["selinux_relabel"],
            propagation=m["propagation"],
        )
        for m in container.config.cri.get("mounts", [])
    ]
    exit_code = state.exit_code if state.exit_code is not None else 0
    status = api_pb2.ContainerStatus(
        id=container.id,
        metadata=_metadata(container),
        state=cri_state(state.status),
        created_at=_ns(container.created),
        started_at=_ns(state.started_at),
        finished_at=_ns(state.finished_at) if state.status in EXITED_STATES else 0,
        exit_code=exit_code if state.status in EXITED_STATES else 0,
        image=_image_spec(container),
        image_ref=container.config.image_id or "",
        reason=reason,
        message=message,
        labels=_labels(container),
        annotations=_annotations(container),
        mounts=mounts,
        log_path=container.config.log_path,
        resources=_resources(container),
        image_id=container.config.image_id or "",
    )
    info: dict[str, str] = {}
    if req.verbose:
        info["info"] = json.dumps(_verbose(svc, container))
    return api_pb2.ContainerStatusResponse(status=status, info=info)


def _verbose(svc: CRIService, container: Container) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sandboxID": container.config.cri.get("sandbox_id", ""),
        "pid": container.state.pid,
        "name": container.name,
        "runtime": container.config.runtime,
        "image": container.config.image_name,
        "imageID": container.config.image_id,
        "logPath": container.config.log_path,
        "privileged": bool(container.config.spec.get("security", {}).get("privileged")),
        "status": str(container.state.status),
        "command": container.config.command,
    }
    spec_path = svc.rt.paths(container.id).config_json
    with contextlib.suppress(OSError, ValueError):
        out["runtimeSpec"] = json.loads(spec_path.read_bytes())
    return out


# --- update, logs --------------------------------------------------------------------------------


def update_container_resources(svc: CRIService, req: Any) -> Any:
    from skiff.runtime.update import UpdateOptions, update_container

    container = svc.get_container(req.container_id)
    if not req.HasField("linux"):
        return api_pb2.UpdateContainerResourcesResponse()
    res = req.linux
    opts = UpdateOptions(
        memory=res.memory_limit_in_bytes or None,
        memory_swap=res.memory_swap_limit_in_bytes or None,
        cpu_period=res.cpu_period or None,
        cpu_quota=res.cpu_quota or None,
        cpu_shares=max(2, res.cpu_shares) if res.cpu_shares else None,
        cpuset_cpus=res.cpuset_cpus or None,
        cpuset_mems=res.cpuset_mems or None,
    )
    if not opts.empty():
        update_container(svc.rt, container, opts)
    return api_pb2.UpdateContainerResourcesResponse()


def reopen_container_log(svc: CRIService, req: Any) -> Any:
    from skiff.runtime.attach import reopen_logs
    from skiff.runtime.conmon import attach_dir

    container = synced(svc, svc.get_container(req.container_id))
    if container.state.status != Status.RUNNING:
        raise FailedPrecondition(
            f"container {container.id[:12]} is not running: its log cannot be reopened"
        )
    log_path = Path(container.config.log_path)
    reopen_logs(attach_dir(svc.rt.paths(container.id).socket_dir, container.id))
    deadline = time.monotonic() + REOPEN_WAIT
    while not log_path.exists():
        if time.monotonic() > deadline:
            raise ContainerError(
                f"conmon did not reopen the log {log_path} of container {container.id[:12]}",
                "check that its conmon still runs",
            )
        time.sleep(0.01)
    return api_pb2.ReopenContainerLogResponse()


# --- exec ---------------------------------------------------------------------------------------


class _Capped:
    """A stream that keeps the first ``limit`` bytes written and drops the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += data[:room]
        return len(data)

    def flush(self) -> None:
        pass


class _Deadline:
    """Kills the exec process once ``timeout`` seconds passed since it started."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False
        self._timer: threading.Timer | None = None

    def started(self, pid: int) -> None:
        if self.timeout > 0:
            self._timer = threading.Timer(self.timeout, self._kill, (pid,))
            self._timer.daemon = True
            self._timer.start()

    def _kill(self, pid: int) -> None:
        self.expired = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def exec_sync(svc: CRIService, req: Any) -> Any:
    from skiff.runtime.exec import ExecOptions, ExecStreams, exec_in

    if not req.cmd:
        raise InvalidArgument("ExecSyncRequest.cmd should not be empty")
    container = _running(svc, req.container_id)
    stdout, stderr = _Capped(EXEC_SYNC_OUTPUT_LIMIT), _Capped(EXEC_SYNC_OUTPUT_LIMIT)
    deadline = _Deadline(float(req.timeout))
    try:
        result = exec_in(
            svc.rt,
            container,
            ExecOptions(command=list(req.cmd), detach_keys=b""),
            ExecStreams(stdout=stdout, stderr=stderr),  # type: ignore[arg-type]
            on_start=deadline.started,
        )
    except (CommandNotFound, CommandNotInvokable) as exc:
        return api_pb2.ExecSyncResponse(
            stdout=b"", stderr=(exc.message + "\n").encode(), exit_code=exc.exit_code
        )
    finally:
        deadline.cancel()
    if deadline.expired:
        raise DeadlineExceeded(
            f"command {list(req.cmd)!r} in container {container.id[:12]} timed out "
            f"after {req.timeout}s (it was killed)"
        )
    return api_pb2.ExecSyncResponse(
        stdout=bytes(stdout.data),
        stderr=bytes(stderr.data),
        exit_code=result.exit_code if result.exit_code is not None else -1,
    )


def _running(svc: CRIService, ref: str) -> Container:
    container = synced(svc, svc.get_container(ref))
    if container.state.status != Status.RUNNING:
        raise FailedPrecondition(
            f"container {container.id[:12]} is not running (it is {container.state.status.value})",
            "start it first",
        )
    return container


def _streaming(svc: CRIService) -> Any:
    if svc.streaming is None:
        raise FailedPrecondition("the streaming server is not running")
    return svc.streaming


def exec_(svc: CRIService, req: Any) -> Any:
    if not req.cmd:
        raise InvalidArgument("ExecRequest.cmd should not be empty")
    container = _running(svc, req.container_id)
    url = _streaming(svc).register_exec(
        container.id, list(req.cmd), tty=req.tty, stdin=req.stdin, stdout=req.stdout,
        stderr=req.stderr,
    )  # fmt: skip
    return api_pb2.ExecResponse(url=url)


def attach(svc: CRIService, req: Any) -> Any:
    container = _running(svc, req.container_id)
    url = _streaming(svc).register_attach(
        container.id, tty=req.tty, stdin=req.stdin, stdout=req.stdout, stderr=req.stderr
    )
    return api_pb2.AttachResponse(url=url)


def port_forward(svc: CRIService, req: Any) -> Any:
    sandbox = svc.get_sandbox(req.pod_sandbox_id)
    if not is_ready(svc, sandbox):
        raise FailedPrecondition(f"pod sandbox {sandbox.id[:12]} is not ready")
    url = _streaming(svc).register_portforward(sandbox.id, list(req.port))
    return api_pb2.PortForwardResponse(url=url)
