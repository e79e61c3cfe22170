"""RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox.

A sandbox is a skiff pod made by ``create_pod`` with an infra container
(skiff's catatonit pause image, or ``pause_image``), started at once. Its
network (unless it uses the node's) is a namespace the server makes at
RUNROOT/netns/cri-ID and attaches through CNI *before* the pod exists, as
CRI-O does; the pod's infra container then joins it (``ns:PATH``), and so
do the members through the infra.

Order and undo: the sandbox's CRI record is written first (intent), then
the namespace, CNI ADD, the pod and its infra; a failure at any step
removes what the steps before it made, so a failed RunPodSandbox leaves
nothing behind. ``recover`` (at server start) finishes what a killed
server left: records without a pod lose their network and their record.

State: READY while StopPodSandbox was not called and the infra container
runs; NOTREADY otherwise (kubelet then makes a new sandbox, attempt + 1).
Stop forcibly ends every container of the pod (SIGKILL, as the CRI asks),
then CNI DEL and the namespace go; Remove removes the pod and everything in
it. Both are idempotent: an unknown ID is not an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2

from skiff.cri import names, translate
from skiff.cri.cni import PodIdentity
from skiff.cri.errors import AlreadyExists, InvalidArgument
from skiff.cri.records import Sandbox, SandboxConfig, SandboxState
from skiff.cri.service import CRIService
from skiff.errors import SkiffError
from skiff.runtime import lifecycle
from skiff.runtime.locks import pod_lock
from skiff.runtime.pods.model import Pod
from skiff.runtime.records import Status
from skiff.storage.layers import random_id

log = logging.getLogger(__name__)


# --- run ------------------------------------------------------------------------------


def run_pod_sandbox(svc: CRIService, req: Any) -> Any:
    if not req.HasField("config"):
        raise InvalidArgument("RunPodSandboxRequest.config is required")
    config = req.config
    names.check_sandbox_metadata(config.metadata)
    svc.runtime_name(req.runtime_handler)
    name = names.sandbox_name(config.metadata)
    from skiff.runtime.pods.create import pods_of

    if pods_of(svc.rt).find(name) is not None:
        raise AlreadyExists(
            f'pod sandbox with name "{name}" already exists',
            "remove it first, or use the next attempt",
        )
    network, pid, ipc, target = translate.sandbox_namespaces(config)
    ports = translate.port_mappings(config)
    linux = config.linux if config.HasField("linux") else None
    privileged = bool(
        linux is not None
        and linux.HasField("security_context")
        and linux.security_context.privileged
    )
    sandbox_config = SandboxConfig(
        name=config.metadata.name,
        uid=config.metadata.uid,
        namespace=config.metadata.namespace,
        attempt=config.metadata.attempt,
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        log_directory=config.log_directory,
        runtime_handler=req.runtime_handler,
        hostname=config.hostname,
        network_mode=network,
        pid_mode=pid,
        ipc_mode=ipc,
        target_id=target,
        port_mappings=ports,
        cgroup_parent=linux.cgroup_parent if linux is not None else "",
        privileged=privileged,
    )
    sandbox_id = random_id()
    with pod_lock(svc.rt.run_root, sandbox_id):
        sandbox = svc.sandboxes.add(sandbox_id, sandbox_config, SandboxState())
        try:
            _make(svc, sandbox, config, name)
        except BaseException:
            _undo(svc, sandbox)
            raise
    if config.log_directory:
        _make_log_directory(Path(config.log_directory))
    return api_pb2.RunPodSandboxResponse(pod_sandbox_id=sandbox_id)


def _make(svc: CRIService, sandbox: Sandbox, config: Any, name: str) -> None:
    from skiff.runtime.network.netns import create_netns
    from skiff.runtime.pods.create import create_pod
    from skiff.runtime.pods.lifecycle import start_pod

    netns: Path | None = None
    if sandbox.config.network_mode != translate.NS_NODE:
        netns = create_netns(svc.rt.run_root, f"cri-{sandbox.id[:24]}")
        sandbox.state.netns = str(netns)
        svc.sandboxes.save_state(sandbox)
        identity = PodIdentity(sandbox.config.name, sandbox.config.namespace, sandbox.config.uid)
        result = svc.cni.add(
            sandbox.id, netns, identity, port_mappings=sandbox.config.port_mappings
        )
        sandbox.state.ip = result.primary_ip
        sandbox.state.additional_ips = result.additional_ips
        svc.sandboxes.save_state(sandbox)
    opts = translate.pod_options(
        config,
        sandbox_id=sandbox.id,
        name=name,
        netns=netns,
        pause_image=svc.config.pause_image,
    )
    try:
        pod = create_pod(svc.rt, opts)
    except SkiffError as exc:
        from skiff.errors import NameInUse

        if isinstance(exc, NameInUse):
            raise AlreadyExists(f'pod sandbox with name "{name}" already exists') from exc
        raise
    report = start_pod(svc.rt, pod)
    report.raise_errors("starting")


def _make_log_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as exc:
        log.warning("cannot create the pod log directory %s: %s", path, exc.strerror)


def _undo(svc: CRIService, sandbox: Sandbox) -> None:
    """Remove whatever a failed RunPodSandbox made (best effort, logged)."""
    from skiff.runtime.pods.lifecycle import remove_pod

    pod = svc.pod_of(sandbox)
    if pod is not None:
        try:
            remove_pod(svc.rt, pod, force=True, timeout=0)
        except SkiffError as exc:
            log.warning("removing the pod of a failed sandbox %s: %s", sandbox.id[:12], exc)
    _release_network(svc, sandbox, quiet=True)
    svc.sandboxes.delete(sandbox.id)


def _release_network(svc: CRIService, sandbox: Sandbox, *, quiet: bool) -> None:
    """CNI DEL and the namespace: what a stopped sandbox no longer holds."""
    from skiff.runtime.network.netns import remove_netns

    try:
        svc.cni.delete(sandbox.id)
    except SkiffError as exc:
        if not quiet:
            raise
        log.warning("tearing down the network of sandbox %s: %s", sandbox.id[:12], exc)
    if sandbox.state.netns:
        try:
            remove_netns(Path(sandbox.state.netns))
        except SkiffError as exc:
            if not quiet:
                raise
            log.warning("removing the namespace of sandbox %s: %s", sandbox.id[:12], exc)
    sandbox.state.netns = ""
    sandbox.state.ip = ""
    sandbox.state.additional_ips = []


# --- stop and remove -------------------------------------------------------------------------


def stop_pod_sandbox(svc: CRIService, req: Any) -> Any:
    sandbox = svc.find_sandbox(req.pod_sandbox_id)
    if sandbox is not None:
        stop(svc, sandbox)
    return api_pb2.StopPodSandboxResponse()


def stop(svc: CRIService, sandbox: Sandbox) -> None:
    from skiff.runtime.pods.lifecycle import stop_pod

    with pod_lock(svc.rt.run_root, sandbox.id):
        current = svc.sandboxes.find(sandbox.id)
        if current is None:
            return
        pod = svc.pod_of(current)
        if pod is not None:
            stop_pod(svc.rt, pod, timeout=0).raise_errors("stopping")
        _release_network(svc, current, quiet=False)
        current.state.stopped = True
        svc.sandboxes.save_state(current)


def remove_pod_sandbox(svc: CRIService, req: Any) -> Any:
    from skiff.runtime.pods.lifecycle import remove_pod

    sandbox = svc.find_sandbox(req.pod_sandbox_id)
    if sandbox is None:
        return api_pb2.RemovePodSandboxResponse()
    with pod_lock(svc.rt.run_root, sandbox.id):
        current = svc.sandboxes.find(sandbox.id)
        if current is None:
            return api_pb2.RemovePodSandboxResponse()
        pod = svc.pod_of(current)
        if pod is not None:
            remove_pod(svc.rt, pod, force=True, timeout=0)
        _release_network(svc, current, quiet=False)
        svc.sandboxes.delete(current.id)
    with svc.samples_lock:
        svc.cpu_samples.pop(sandbox.id, None)
    return api_pb2.RemovePodSandboxResponse()


def recover(svc: CRIService) -> list[str]:
    """At start: finish what a killed server left half-made or half-removed.

    A sandbox record without its pod (RunPodSandbox killed before the pod
    was made, or RemovePodSandbox killed after it was removed) loses its
    network and its record; a CNI attachment without a sandbox record gets
    its DEL. Returns the IDs cleaned up.
    """
    cleaned = []
    for sandbox in svc.sandboxes.all():
        if svc.pod_of(sandbox) is None:
            with pod_lock(svc.rt.run_root, sandbox.id):
                _release_network(svc, sandbox, quiet=True)
                svc.sandboxes.delete(sandbox.id)
            cleaned.append(sandbox.id)
    for attached in svc.cni.attached():
        if svc.sandboxes.find(attached) is None:
            try:
                svc.cni.delete(attached)
            except SkiffError as exc:
                log.warning("CNI DEL of a sandbox without a record %s: %s", attached[:12], exc)
                continue
            cleaned.append(attached)
    for item in cleaned:
        log.warning("cleaned up sandbox %s left by an interrupted server", item[:12])
    return cleaned


# --- status ---------------------------------------------------------------------------------


def infra_of(svc: CRIService, pod: Pod | None) -> Any:
    """The pod's infra container, synced with reality (None: none)."""
    if pod is None or not pod.infra_id:
        return None
    infra = svc.rt.records.find(pod.infra_id)
    if infra is None:
        return None
    with svc.rt.lock(infra.id), contextlib.suppress(SkiffError):
        infra = lifecycle.sync(svc.rt, infra)
    return infra


def state_of(svc: CRIService, sandbox: Sandbox, infra: Any) -> Any:
    if sandbox.state.stopped or infra is None or infra.state.status != Status.RUNNING:
        return int(api_pb2.SANDBOX_NOTREADY)
    return int(api_pb2.SANDBOX_READY)


def _mode(value: int) -> Any:
    """An int as the stubs' NamespaceMode value type (a NewType of int)."""
    return value


def metadata(sandbox: Sandbox) -> Any:
    c = sandbox.config
    return api_pb2.PodSandboxMetadata(
        name=c.name, uid=c.uid, namespace=c.namespace, attempt=c.attempt
    )


def pod_sandbox_status(svc: CRIService, req: Any) -> Any:
    sandbox = svc.get_sandbox(req.pod_sandbox_id)
    pod = svc.pod_of(sandbox)
    infra = infra_of(svc, pod)
    c = sandbox.config
    network = api_pb2.PodSandboxNetworkStatus(
        ip=sandbox.state.ip,
        additional_ips=[api_pb2.PodIP(ip=ip) for ip in sandbox.state.additional_ips],
    )
    options = api_pb2.NamespaceOption(
        network=_mode(c.network_mode), pid=_mode(c.pid_mode), ipc=_mode(c.ipc_mode),
        target_id=c.target_id,
    )  # fmt: skip
    status = api_pb2.PodSandboxStatus(
        id=sandbox.id,
        metadata=metadata(sandbox),
        state=state_of(svc, sandbox, infra),
        created_at=sandbox.created_ns,
        network=network,
        linux=api_pb2.LinuxPodSandboxStatus(namespaces=api_pb2.Namespace(options=options)),
        labels=c.labels,
        annotations=c.annotations,
        runtime_handler=c.runtime_handler,
    )
    info: dict[str, str] = {}
    if req.verbose:
        info["info"] = json.dumps(_verbose(svc, sandbox, pod, infra))
    return api_pb2.PodSandboxStatusResponse(status=status, info=info)


def _verbose(svc: CRIService, sandbox: Sandbox, pod: Pod | None, infra: Any) -> dict[str, Any]:
    result = svc.cni.result(sandbox.id)
    out: dict[str, Any] = {
        "sandboxID": sandbox.id,
        "name": pod.name if pod is not None else "",
        "netns": sandbox.state.netns,
        "stopped": sandbox.state.stopped,
        "logDirectory": sandbox.config.log_directory,
        "portMappings": sandbox.config.port_mappings,
        "cniResult": result.raw if result is not None else None,
    }
    if pod is not None:
        out["cgroupParent"] = pod.config.cgroup_parent
        out["cgroupPath"] = pod.config.cgroup_path
        out["infraImage"] = pod.config.infra_image
        out["hostname"] = pod.config.hostname
    if infra is not None:
        out["infraContainerID"] = infra.id
        out["pid"] = infra.state.pid
        out["infraStatus"] = str(infra.state.status)
        out["runtime"] = infra.config.runtime
    return out


def list_pod_sandbox(svc: CRIService, req: Any) -> Any:
    f = req.filter if req.HasField("filter") else None
    items = []
    for sandbox in svc.sandboxes.all():
        if f is not None and f.id and not sandbox.id.startswith(f.id):
            continue
        if f is not None and not _labels_match(sandbox.config.labels, f.label_selector):
            continue
        pod = svc.pod_of(sandbox)
        if pod is None:
            continue  # half-made or half-removed: not a sandbox yet, or any more
        state = state_of(svc, sandbox, infra_of(svc, pod))
        if f is not None and f.HasField("state") and f.state.state != state:
            continue
        items.append(
            api_pb2.PodSandbox(
                id=sandbox.id,
                metadata=metadata(sandbox),
                state=state,
                created_at=sandbox.created_ns,
                labels=sandbox.config.labels,
                annotations=sandbox.config.annotations,
                runtime_handler=sandbox.config.runtime_handler,
            )
        )
    return api_pb2.ListPodSandboxResponse(items=items)


def _labels_match(labels: dict[str, str], selector: Any) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def labels_match(labels: dict[str, str], selector: Any) -> bool:
    """Every key of ``selector`` is a label with the same value (CRI's label selector)."""
    return _labels_match(labels, selector)


def is_ready(svc: CRIService, sandbox: Sandbox) -> bool:
    state = state_of(svc, sandbox, infra_of(svc, svc.pod_of(sandbox)))
    return bool(state == api_pb2.SANDBOX_READY)
