"""``kube play``: Kubernetes Pods and Deployments as skiff pods (podman kube play).

Two phases, so that bad input creates nothing:

1. *plan* — everything that can be checked without changing the host is:
   ConfigMaps (the file's own and ``--configmap`` files) resolved into
   environment values and volume files, images found (or pulled, by the
   caller's resolver), hostPath types checked, host ports checked for
   clashes, names checked against existing pods and containers, and every
   container's SpecGenerator built and validated. A problem is a
   ``KubeError`` at the YAML path it came from.
2. *apply* — pods replaced (``--replace``), PersistentVolumeClaims made
   into named volumes, then per pod: ``create_pod`` (infra container with
   the pod's ports, hostname, DNS, host aliases; exit policy ``stop``), the
   pod's emptyDir/configMap volumes (named ``POD-VOLUME``, labelled with
   the pod so ``pod rm`` removes them), the containers (``POD-CONTAINER``,
   joined to the pod), then init containers run one after the other to
   completion (a non-zero exit fails the play; they are removed after
   running, podman's ``once``), then the containers start. If any step
   fails, everything this play made is removed again.

A Deployment is played as one pod, ``NAME-pod`` (replicas above one are
reported and ignored: podman's later behaviour). ``restartPolicy`` maps to
each container's restart policy (Always → always, OnFailure → on-failure,
Never → no).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skiff.errors import SkiffError
from skiff.runtime import lifecycle
from skiff.runtime.create import CreateOptions, create_container
from skiff.runtime.engine import Runtime
from skiff.runtime.kube.model import (
    RESTART_POLICIES,
    ConfigMap,
    Container,
    KubeError,
    KubeFile,
    PodSpec,
    Volume,
    Where,
)
from skiff.runtime.pods.model import LABEL_POD_VOLUME, PodCreateOptions
from skiff.runtime.records import RestartPolicy
from skiff.runtime.specgen.generator import SpecGenerator
from skiff.runtime.specgen.mounts import BindMount, Mount, VolumeMount
from skiff.storage.images import Image

log = logging.getLogger(__name__)

LABEL_KUBE_VOLUME = "io.skiff.kube.volume"
"""The pod volume's name in the YAML (for ``kube generate``)."""
LABEL_KUBE_SOURCE = "io.skiff.kube.source"
"""emptyDir, or configMap:NAME (for ``kube generate``)."""
KUBE_CREATED_BY = "kube"

ImageResolver = Callable[[str, str], Image]
"""(image reference, imagePullPolicy) → the image in the store (pulled if the policy says so)."""


def store_images(rt: Runtime) -> ImageResolver:
    """A resolver that only looks in the store (the library's default)."""
    from skiff.errors import ImageUnknown

    def resolve(reference: str, _policy: str) -> Image:
        image = rt.store.images.find(reference)
        if image is None:
            raise ImageUnknown(f"{reference}: image not known", "pull it first")
        return image

    return resolve


@dataclass
class PlayOptions:
    config_maps: list[ConfigMap] = field(default_factory=list)
    """From ``--configmap`` files; the YAML's own ConfigMaps win on a name clash."""
    replace: bool = False
    start: bool = True
    networks: list[str] = field(default_factory=list)
    """``--network``: the networks of every pod (none given: the default network;
    ``none`` or ``host`` alone: that network mode)."""
    resolve_image: ImageResolver | None = None
    create_command: list[str] = field(default_factory=list)


@dataclass
class PlayedPod:
    id: str
    name: str
    containers: list[str] = field(default_factory=list)


@dataclass
class PlayReport:
    pods: list[PlayedPod] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    """Volumes made for PersistentVolumeClaim documents."""
    warnings: list[str] = field(default_factory=list)


# --- planning --------------------------------------------------------------------------------


@dataclass
class _Volume:
    spec: Volume
    files: dict[str, str] = field(default_factory=dict)
    """configMap: relative path → content."""


@dataclass
class _Container:
    spec: Container
    image: Image
    sg: SpecGenerator
    volume_mounts: list[tuple[Volume, str, bool]]
    """(pod volume, mount path, read only)."""
    init: bool = False


@dataclass
class _Pod:
    spec: PodSpec
    volumes: dict[str, _Volume]
    containers: list[_Container]
    replaces: str | None = None
    """The ID of an existing pod of that name, removed first (``--replace``)."""


def _config_maps(kube: KubeFile, options: PlayOptions) -> dict[str, ConfigMap]:
    found = {cm.name: cm for cm in options.config_maps}
    found.update({cm.name: cm for cm in kube.config_maps})
    return found


def _env(c: Container, maps: dict[str, ConfigMap]) -> dict[str, str]:
    out: dict[str, str] = {}
    for source in c.env_from:
        cm = maps.get(source.config_map)
        if cm is None:
            if source.optional:
                continue
            raise source.where.child("configMapRef.name").error(
                f"no ConfigMap named {source.config_map!r}",
                "define it in the file or give it with --configmap",
            )
        for key, value in cm.data.items():
            out[source.prefix + key] = value
    for var in c.env:
        if var.config_map is None:
            out[var.name] = var.value or ""
            continue
        ref = var.config_map
        cm = maps.get(ref.name)
        if cm is None or ref.key not in cm.data:
            if ref.optional:
                continue
            if cm is None:
                raise ref.where.child("name").error(
                    f"no ConfigMap named {ref.name!r}",
                    "define it in the file or give it with --configmap",
                )
            raise ref.where.child("key").error(f"ConfigMap {ref.name!r} has no key {ref.key!r}")
        out[var.name] = cm.data[ref.key]
    return out


def _check_host_path(volume: Volume) -> None:
    path, kind = volume.host_path, volume.host_path_type
    where = volume.where.child("hostPath")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if kind in ("", "DirectoryOrCreate", "FileOrCreate"):
            return  # made when the pod is created
        raise where.child("path").error(
            f"{path} does not exist", f"the type {kind} needs it"
        ) from None
    except OSError as exc:
        raise where.child("path").error(f"cannot use {path}: {exc.strerror}") from None
    wanted = {
        "Directory": stat.S_ISDIR,
        "DirectoryOrCreate": stat.S_ISDIR,
        "File": stat.S_ISREG,
        "FileOrCreate": stat.S_ISREG,
        "Socket": stat.S_ISSOCK,
        "CharDevice": stat.S_ISCHR,
        "BlockDevice": stat.S_ISBLK,
    }.get(kind)
    if wanted is not None and not wanted(st.st_mode):
        raise where.child("type").error(f"{path} is not a {kind}")


def _plan_volume(volume: Volume, maps: dict[str, ConfigMap]) -> _Volume:
    planned = _Volume(volume)
    if volume.kind == "hostPath":
        _check_host_path(volume)
    elif volume.kind == "configMap":
        cm = maps.get(volume.config_map)
        if cm is None:
            if not volume.optional:
                raise volume.where.child("configMap.name").error(
                    f"no ConfigMap named {volume.config_map!r}",
                    "define it in the file or give it with --configmap",
                )
            return planned
        if volume.items:
            for index, (key, path) in enumerate(volume.items):
                if key not in cm.data:
                    if volume.optional:
                        continue
                    raise volume.where.child(f"configMap.items[{index}].key").error(
                        f"ConfigMap {cm.name!r} has no key {key!r}"
                    )
                planned.files[path] = cm.data[key]
        else:
            planned.files = dict(cm.data)
    return planned


def _user(c: Container, pod: PodSpec, image: Image) -> str | None:
    uid = c.security.run_as_user if c.security.run_as_user is not None else pod.run_as_user
    gid = c.security.run_as_group if c.security.run_as_group is not None else pod.run_as_group
    if uid is None and gid is None:
        return None
    if uid is None:
        from skiff.oci.config import ImageConfig

        uid_text = (ImageConfig.from_bytes(image.config).user or "0").split(":", 1)[0]
        return f"{uid_text}:{gid}"
    return f"{uid}:{gid}" if gid is not None else str(uid)


def _spec(c: Container, pod: PodSpec, image: Image, env: dict[str, str]) -> SpecGenerator:
    sg = SpecGenerator()
    b, sec, res = sg.basic, sg.security, sg.resources
    b.entrypoint = list(c.command) if c.command is not None else None
    b.command = list(c.args) if c.args is not None else None
    b.env = env
    b.workdir = c.working_dir
    b.terminal = c.tty
    b.stdin = c.stdin
    sec.user = _user(c, pod, image)
    sec.privileged = c.security.privileged
    sec.cap_add = list(c.security.cap_add)
    sec.cap_drop = list(c.security.cap_drop)
    sec.no_new_privileges = c.security.allow_privilege_escalation is False
    sg.storage.read_only = c.security.read_only_root
    res.cpus = c.resources.cpu_limit
    res.memory = c.resources.memory_limit
    res.memory_reservation = c.resources.memory_request
    return sg


def _resolve_image(c: Container, options: PlayOptions, rt: Runtime) -> Image:
    resolver = options.resolve_image or store_images(rt)
    try:
        return resolver(c.image, c.image_pull_policy)
    except KubeError:
        raise
    except SkiffError as exc:
        raise c.where.child("image").error(exc.message, exc.hint) from None


def _plan_container(
    rt: Runtime,
    c: Container,
    *,
    pod: PodSpec,
    volumes: dict[str, _Volume],
    maps: dict[str, ConfigMap],
    options: PlayOptions,
    init: bool,
) -> _Container:
    from skiff.errors import UsageError

    image = _resolve_image(c, options, rt)
    sg = _spec(c, pod, image, _env(c, maps))
    mounts = [
        (volumes[m.name].spec, m.mount_path, m.read_only or volumes[m.name].spec.read_only)
        for m in c.volume_mounts
    ]
    sg.storage.mounts = [_placeholder(v, path, ro) for v, path, ro in mounts]
    try:
        sg.validate()
        from skiff.oci.config import ImageConfig
        from skiff.runtime.specgen.spec import process_args

        process_args(sg, ImageConfig.from_bytes(image.config))
    except UsageError as exc:
        raise c.where.error(exc.message, exc.hint) from None
    return _Container(c, image, sg, mounts, init)


def _placeholder(volume: Volume, destination: str, read_only: bool) -> Mount:
    """The mount as validation sees it (volume names are fixed at apply)."""
    if volume.kind == "hostPath":
        return BindMount(source=volume.host_path, destination=destination, read_only=read_only)
    return VolumeMount(name="kube-volume", destination=destination, read_only=read_only)


def _check_ports(pod: PodSpec) -> None:
    """A host port may be published once per protocol and address ("" is every address)."""
    seen: list[tuple[int, str, str]] = []
    for c in pod.containers:
        for port in c.ports:
            if port.host_port is None or pod.host_network:
                continue
            for other_port, protocol, ip in seen:
                if (other_port, protocol) == (port.host_port, port.protocol) and (
                    not ip or not port.host_ip or ip == port.host_ip
                ):
                    raise port.where.child("hostPort").error(
                        f"host port {port.host_port}/{port.protocol} is published twice"
                    )
            seen.append((port.host_port, port.protocol, port.host_ip))


def _plan(rt: Runtime, kube: KubeFile, options: PlayOptions) -> list[_Pod]:
    from skiff.runtime.pods.create import pods_of

    maps = _config_maps(kube, options)
    records = pods_of(rt)
    plans = []
    for pod in kube.pods:
        existing = records.find(pod.name)
        if existing is not None and not options.replace:
            raise pod.at_name().error(
                f"a pod named {pod.name!r} already exists",
                "remove it, or use --replace",
            )
        for c in [*pod.init_containers, *pod.containers]:
            name = f"{pod.name}-{c.name}"
            found = rt.records.find(name)
            if found is not None and (existing is None or found.config.pod_id != existing.id):
                raise c.where.child("name").error(
                    f"the container name {name!r} is already in use by another container"
                )
        _check_ports(pod)
        volumes = {v.name: _plan_volume(v, maps) for v in pod.volumes}
        containers = [
            _plan_container(rt, c, pod=pod, volumes=volumes, maps=maps, options=options, init=init)
            for c, init in [(c, True) for c in pod.init_containers]
            + [(c, False) for c in pod.containers]
        ]
        plans.append(_Pod(pod, volumes, containers, existing.id if existing else None))
    return plans


# --- applying ---------------------------------------------------------------------------------


@dataclass
class _Undo:
    pods: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def run(self, rt: Runtime) -> None:
        from skiff.runtime.pods.create import pods_of
        from skiff.runtime.pods.lifecycle import remove_pod
        from skiff.runtime.volumes import VolumeStore

        for pod_id in reversed(self.pods):
            pod = pods_of(rt).find(pod_id)
            if pod is not None:
                try:
                    remove_pod(rt, pod, force=True, timeout=0)
                except SkiffError as exc:
                    log.warning("removing pod %s after a failed play: %s", pod.name, exc)
        volumes = VolumeStore.of(rt.store)
        for name in self.volumes:
            try:
                if volumes.exists(name):
                    volumes.remove(name, force=True)
            except SkiffError as exc:
                log.warning("removing volume %s after a failed play: %s", name, exc)


def _pod_options(pod: PodSpec, options: PlayOptions) -> PodCreateOptions:
    ports = []
    if not pod.host_network:
        for c in pod.containers:
            for p in c.ports:
                if p.host_port is not None:
                    ports.append(
                        {
                            "container_port": p.container_port,
                            "host_port": p.host_port,
                            "host_ip": p.host_ip,
                            "protocol": p.protocol,
                            "range": 1,
                        }
                    )
    share = ["ipc", "net", "uts"] + (["pid"] if pod.share_process_namespace else [])
    mode, networks = "bridge", list(options.networks)
    if pod.host_network:
        mode, networks = "host", []
    elif networks in (["none"], ["host"]):
        mode, networks = networks[0], []
    return PodCreateOptions(
        name=pod.name,
        hostname=pod.hostname,
        labels=dict(pod.labels),
        annotations=dict(pod.annotations),
        share=share,
        network_mode=mode,
        networks=networks,
        ports=ports if mode == "bridge" else [],
        dns_servers=list(pod.dns_servers),
        dns_search=list(pod.dns_search),
        dns_options=list(pod.dns_options),
        add_hosts=list(pod.host_aliases),
        sysctls=dict(pod.sysctls),
        exit_policy="stop",
        created_by=KUBE_CREATED_BY,
        create_command=list(options.create_command),
    )


def _make_volumes(rt: Runtime, plan: _Pod, pod_id: str, undo: _Undo) -> dict[str, str]:
    """The pod's emptyDir/configMap volumes; returns YAML volume name → store volume name."""
    from skiff.runtime.volumes import CreateOptions as VolumeOptions
    from skiff.runtime.volumes import VolumeStore

    volumes = VolumeStore.of(rt.store)
    names: dict[str, str] = {}
    for planned in plan.volumes.values():
        v = planned.spec
        if v.kind == "persistentVolumeClaim":
            if not volumes.exists(v.claim_name):
                volumes.create(VolumeOptions(name=v.claim_name))
                undo.volumes.append(v.claim_name)
            names[v.name] = v.claim_name
            continue
        if v.kind == "hostPath":
            _make_host_path(v)
            continue
        source = "emptyDir" if v.kind == "emptyDir" else f"configMap:{v.config_map}"
        name = f"{plan.spec.name}-{v.name}"
        volumes.create(
            VolumeOptions(
                name=name,
                labels={
                    LABEL_POD_VOLUME: pod_id,
                    LABEL_KUBE_VOLUME: v.name,
                    LABEL_KUBE_SOURCE: source,
                },
            )
        )
        undo.volumes.append(name)
        if planned.files:
            _write_files(volumes.mountpoint(name), planned.files)
        names[v.name] = name
    return names


def _make_host_path(v: Volume) -> None:
    path = Path(v.host_path)
    try:
        if v.host_path_type == "DirectoryOrCreate" or (
            v.host_path_type == "" and not path.exists()
        ):
            path.mkdir(parents=True, exist_ok=True, mode=0o755)
        elif v.host_path_type == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            path.touch(mode=0o644)
    except OSError as exc:
        raise v.where.child("hostPath.path").error(
            f"cannot create {path}: {exc.strerror}"
        ) from None


def _write_files(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(content)
        tmp.chmod(0o644)
        tmp.replace(target)


def _mounts(planned: _Container, names: dict[str, str]) -> list[Mount]:
    from skiff.runtime.specgen.mounts import resolve_host_sources

    out: list[Mount] = []
    for volume, destination, read_only in planned.volume_mounts:
        if volume.kind == "hostPath":
            out += resolve_host_sources(
                [BindMount(source=volume.host_path, destination=destination, read_only=read_only)]
            )
        else:
            out.append(
                VolumeMount(name=names[volume.name], destination=destination, read_only=read_only)
            )
    return out


def _run_init(rt: Runtime, container_id: str, where: Where) -> None:
    container = lifecycle.start(rt, rt.records.get(container_id))
    code = lifecycle.wait_for_exit(rt, container, None)
    lifecycle.cleanup(rt, container_id)
    if code != 0:
        raise where.error(
            f"init container {container.name} exited with code {code}",
            f"see 'skiff logs {container.name}' before it is removed by a retry",
        )
    lifecycle.remove(rt, rt.records.get(container_id), force=True)


def _apply_pod(rt: Runtime, plan: _Pod, options: PlayOptions, undo: _Undo) -> PlayedPod:
    from skiff.runtime.pods.create import create_pod, join_pod
    from skiff.runtime.pods.lifecycle import start_pod

    pod = create_pod(rt, _pod_options(plan.spec, options))
    undo.pods.append(pod.id)
    played = PlayedPod(pod.id, pod.name)
    names = _make_volumes(rt, plan, pod.id, undo)
    restart = RestartPolicy(RESTART_POLICIES[plan.spec.restart_policy])
    init_ids: list[tuple[str, Where]] = []
    for planned in plan.containers:
        sg = planned.sg
        sg.storage.mounts = _mounts(planned, names)
        opts = CreateOptions(
            image=planned.image,
            spec=sg,
            image_name=planned.spec.image,
            name=f"{pod.name}-{planned.spec.name}",
            restart=RestartPolicy() if planned.init else restart,
            created_by=KUBE_CREATED_BY,
            create_command=list(options.create_command),
        )
        join_pod(rt, pod, opts)
        container = create_container(rt, opts)
        if planned.init:
            init_ids.append((container.id, planned.spec.where))
        else:
            played.containers.append(container.id)
    if options.start:
        for container_id, where in init_ids:
            _run_init(rt, container_id, where)
        report = start_pod(rt, pod)
        report.raise_errors("starting")
    return played


def play(rt: Runtime, kube: KubeFile, options: PlayOptions | None = None) -> PlayReport:
    """Play every Pod and Deployment of ``kube``; nothing is left behind if it fails."""
    from skiff.runtime.pods.create import pods_of
    from skiff.runtime.pods.lifecycle import remove_pod
    from skiff.runtime.volumes import CreateOptions as VolumeOptions
    from skiff.runtime.volumes import VolumeStore

    options = options or PlayOptions()
    report = PlayReport()
    for pod in kube.pods:
        if pod.replicas > 1:
            report.warnings.append(
                f"{pod.name}: {pod.replicas} replicas asked for; skiff plays one pod"
            )
    plans = _plan(rt, kube, options)
    undo = _Undo()
    try:
        for plan in plans:
            if plan.replaces is not None:
                existing = pods_of(rt).find(plan.replaces)
                if existing is not None:
                    remove_pod(rt, existing, force=True, timeout=0)
        volumes = VolumeStore.of(rt.store)
        for claim in kube.claims:
            if not volumes.exists(claim.name):
                volumes.create(VolumeOptions(name=claim.name, labels=dict(claim.labels)))
                undo.volumes.append(claim.name)
                report.volumes.append(claim.name)
        for plan in plans:
            report.pods.append(_apply_pod(rt, plan, options, undo))
    except BaseException:
        undo.run(rt)
        raise
    return report


@dataclass
class DownReport:
    stopped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def down(rt: Runtime, kube: KubeFile) -> DownReport:
    """``kube play --down``: stop and remove the pods the YAML describes (volumes of
    PersistentVolumeClaims stay, as in podman)."""
    from skiff.runtime.pods.create import pods_of
    from skiff.runtime.pods.lifecycle import remove_pod, stop_pod

    report = DownReport()
    found = [p for p in (pods_of(rt).find(spec.name) for spec in kube.pods) if p is not None]
    for pod in found:
        stop_pod(rt, pod).raise_errors("stopping")
        report.stopped.append(pod.id)
    for pod in found:
        remove_pod(rt, pod, force=True)
        report.removed.append(pod.id)
    return report
