"""``kube generate``: a pod (or a lone container) as Kubernetes Pod YAML.

What ``kube play`` reads back, and valid Kubernetes (``v1.Pod``; the tests
check it against the ``kubernetes`` client's models): a pod's members in
creation order (the infra container is the pod itself, init containers
are gone once they ran), each with its image, command/args as asked for
at create (``command`` = an explicit entrypoint, ``args`` = the command
arguments; without an entrypoint and with an image that has none, the
arguments are the ``command``, as podman writes them), the environment
given at create, working directory, ports (the pod's published ports go
on the container whose image exposes them, else on the first), CPU and
memory limits as quantities, the security context and the volume mounts:

- bind mounts → ``hostPath`` (type Directory or File, from the host);
- volumes ``kube play`` made for the pod → ``emptyDir`` or ``configMap``
  again (their labels say which);
- other named volumes → ``persistentVolumeClaim`` with the volume's name;
- tmpfs mounts → ``emptyDir`` with ``medium: Memory``.

The mounts a pod adds to its members (/etc/hosts, /etc/resolv.conf,
/etc/hostname, /dev/shm) are not the user's and are left out. Names are
made valid Kubernetes names (lower case, ``-`` for other characters), and
a member's ``POD-`` prefix (what ``kube play`` named it) is dropped, so
play → generate → play gives the same pod. A container outside any pod
becomes the pod ``NAME-pod``, as podman does.
"""

from __future__ import annotations

import os
import re
import stat
import time
from typing import Any

from skiff import __version__
from skiff.errors import ContainerUnknown
from skiff.oci.config import ImageConfig
from skiff.runtime.create import spec_of
from skiff.runtime.engine import Runtime
from skiff.runtime.kube.play import LABEL_KUBE_SOURCE, LABEL_KUBE_VOLUME
from skiff.runtime.kube.quantity import format_cpu, format_memory
from skiff.runtime.pods.model import Pod
from skiff.runtime.records import Container
from skiff.runtime.specgen.generator import NamespaceMode, SpecGenerator
from skiff.runtime.specgen.mounts import BindMount, VolumeMount

HEADER = (
    "# Save the output of this file and use kubectl create -f to import\n"
    "# it into Kubernetes.\n"
    "#\n"
    f"# Created with skiff-{__version__}\n"
)
RESTART = {"always": "Always", "unless-stopped": "Always", "on-failure": "OnFailure", "no": "Never"}
POD_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/shm")


def dns_label(name: str, fallback: str = "ctr") -> str:
    """A valid DNS-1123 label (container, volume and port names)."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return text or fallback


def dns_subdomain(name: str) -> str:
    """A valid DNS-1123 subdomain (object names)."""
    text = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")[:253].strip("-.")
    return text or "pod"


class _Volumes:
    """The pod's ``spec.volumes``, one entry per distinct source."""

    def __init__(self, rt: Runtime) -> None:
        from skiff.runtime.volumes import VolumeStore

        self.store = VolumeStore.of(rt.store)
        self.entries: dict[str, dict[str, Any]] = {}
        self.by_source: dict[str, str] = {}

    def _add(self, key: str, wanted: str, entry: dict[str, Any]) -> str:
        if key in self.by_source:
            return self.by_source[key]
        name, n = wanted, 0
        while name in self.entries:
            n += 1
            name = f"{wanted[:60]}-{n}"
        entry["name"] = name
        self.entries[name] = entry
        self.by_source[key] = name
        return name

    def host_path(self, source: str) -> str:
        entry: dict[str, Any] = {"hostPath": {"path": source}}
        try:
            mode = os.stat(source).st_mode
            entry["hostPath"]["type"] = "Directory" if stat.S_ISDIR(mode) else "File"
        except OSError:
            pass
        return self._add(f"host:{source}", dns_label(f"{source}-host", "host"), entry)

    def volume(self, name: str) -> str:
        volume = self.store.find(name)
        labels = volume.labels if volume is not None else {}
        source = labels.get(LABEL_KUBE_SOURCE, "")
        original = labels.get(LABEL_KUBE_VOLUME) or name
        if source == "emptyDir":
            return self._add(f"vol:{name}", dns_label(original), {"emptyDir": {}})
        if source.startswith("configMap:"):
            entry = {"configMap": {"name": source.split(":", 1)[1]}}
            return self._add(f"vol:{name}", dns_label(original), entry)
        if volume is not None and volume.anonymous:
            return self._add(f"vol:{name}", f"anonymous-{name[:12]}", {"emptyDir": {}})
        entry = {"persistentVolumeClaim": {"claimName": name}}
        return self._add(f"vol:{name}", dns_label(f"{name}-pvc"), entry)

    def tmpfs(self, destination: str) -> str:
        entry = {"emptyDir": {"medium": "Memory"}}
        return self._add(f"tmpfs:{destination}", dns_label(f"tmpfs{destination}"), entry)


def _command(sg: SpecGenerator, image: ImageConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sg.basic.entrypoint is not None:
        out["command"] = list(sg.basic.entrypoint)
        if sg.basic.command:
            out["args"] = list(sg.basic.command)
    elif sg.basic.command is not None:
        out["args" if image.entrypoint else "command"] = list(sg.basic.command)
    return out


def _security(sg: SpecGenerator) -> dict[str, Any]:
    sec = sg.security
    out: dict[str, Any] = {}
    user = sec.user or ""
    uid, _, gid = user.partition(":")
    if uid.isdigit():
        out["runAsUser"] = int(uid)
    if gid.isdigit():
        out["runAsGroup"] = int(gid)
    if sec.privileged:
        out["privileged"] = True
    if sg.storage.read_only:
        out["readOnlyRootFilesystem"] = True
    if sec.no_new_privileges:
        out["allowPrivilegeEscalation"] = False
    caps: dict[str, list[str]] = {}
    if sec.cap_add:
        caps["add"] = list(sec.cap_add)
    if sec.cap_drop:
        caps["drop"] = list(sec.cap_drop)
    if caps:
        out["capabilities"] = caps
    return out


def _resources(sg: SpecGenerator) -> dict[str, Any]:
    r = sg.resources
    limits: dict[str, str] = {}
    if r.cpus is not None:
        limits["cpu"] = format_cpu(r.cpus)
    if r.memory is not None:
        limits["memory"] = format_memory(r.memory)
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if r.memory_reservation is not None:
        out["requests"] = {"memory": format_memory(r.memory_reservation)}
    return out


def _ports(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in ports:
        for i in range(int(p.get("range") or 1)):
            entry: dict[str, Any] = {"containerPort": int(p["container_port"]) + i}
            host_port = int(p.get("host_port") or 0)
            if host_port:
                entry["hostPort"] = host_port + i
            if p.get("host_ip"):
                entry["hostIP"] = str(p["host_ip"])
            protocol = str(p.get("protocol") or "tcp").upper()
            if protocol != "TCP":
                entry["protocol"] = protocol
            out.append(entry)
    return out


def _mounts(
    sg: SpecGenerator, volumes: _Volumes, skip_sources: tuple[str, ...]
) -> list[dict[str, Any]]:
    out = []
    for m in sg.storage.mounts:
        if isinstance(m, BindMount):
            if m.destination in POD_FILES and m.source in skip_sources:
                continue
            name = volumes.host_path(m.source)
        elif isinstance(m, VolumeMount):
            if not m.name:
                continue
            name = volumes.volume(m.name)
        else:
            name = volumes.tmpfs(m.destination)
        entry: dict[str, Any] = {"mountPath": m.destination, "name": name}
        if getattr(m, "read_only", False):
            entry["readOnly"] = True
        out.append(entry)
    return out


def _container(
    rt: Runtime,
    c: Container,
    *,
    name: str,
    ports: list[dict[str, Any]],
    volumes: _Volumes,
    skip_sources: tuple[str, ...],
) -> dict[str, Any]:
    sg = spec_of(c)
    image = _image_config(rt, c)
    out: dict[str, Any] = {"name": name, "image": c.config.image_name}
    out.update(_command(sg, image))
    if sg.basic.env:
        out["env"] = [{"name": k, "value": v} for k, v in sg.basic.env.items()]
    if sg.basic.workdir:
        out["workingDir"] = sg.basic.workdir
    if ports:
        out["ports"] = _ports(ports)
    out["resources"] = _resources(sg)
    security = _security(sg)
    if security:
        out["securityContext"] = security
    mounts = _mounts(sg, volumes, skip_sources)
    if mounts:
        out["volumeMounts"] = mounts
    if sg.basic.stdin:
        out["stdin"] = True
    if sg.basic.terminal:
        out["tty"] = True
    return out


def _image_config(rt: Runtime, c: Container) -> ImageConfig:
    if c.config.image_id is None:
        return ImageConfig({})
    image = rt.store.images.find(c.config.image_id)
    return ImageConfig.from_bytes(image.config) if image is not None else ImageConfig({})


def _exposes(rt: Runtime, c: Container, port: dict[str, Any]) -> bool:
    wanted = f"{port['container_port']}/{port.get('protocol') or 'tcp'}"
    return wanted in _image_config(rt, c).exposed_ports


def _short_name(pod_name: str, name: str) -> str:
    prefix = f"{pod_name}-"
    return name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else name


def _document(
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    spec: dict[str, Any],
    created: float,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "labels": {"app": name, **labels},
        "name": name,
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": {}}


def _pod_spec(containers: list[dict[str, Any]], restart: str, volumes: _Volumes) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "containers": containers,
        "enableServiceLinks": False,
        "restartPolicy": restart,
    }
    if volumes.entries:
        spec["volumes"] = list(volumes.entries.values())
    return spec


def pod_document(rt: Runtime, pod: Pod) -> dict[str, Any]:
    """The v1 Pod object for a skiff pod."""
    from skiff.runtime.pods.create import pod_mount_sources

    members = [c for c in rt.records.by_pod(pod.id) if not c.config.infra]
    if not members:
        raise ContainerUnknown(
            f"pod {pod.name} has no containers to generate", "add containers to the pod first"
        )
    skip = pod_mount_sources(rt, pod)
    volumes = _Volumes(rt)
    placed: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(members))}
    for port in pod.config.ports:
        owner = next((i for i, c in enumerate(members) if _exposes(rt, c, port)), 0)
        placed[owner].append(port)
    names: set[str] = set()
    containers = []
    for i, c in enumerate(members):
        name = dns_label(_short_name(pod.name, c.name))
        while name in names:
            name = dns_label(f"{name[:58]}-{len(names)}")
        names.add(name)
        containers.append(
            _container(rt, c, name=name, ports=placed[i], volumes=volumes, skip_sources=skip)
        )
    spec = _pod_spec(containers, RESTART.get(members[0].config.restart.name, "Never"), volumes)
    cfg = pod.config
    if cfg.network_mode == "host":
        spec["hostNetwork"] = True
    if cfg.uts_mode == "private":
        spec["hostname"] = cfg.hostname or dns_subdomain(pod.name)
    if "pid" in cfg.share:
        spec["shareProcessNamespace"] = True
    dns: dict[str, Any] = {}
    if cfg.dns_servers:
        dns["nameservers"] = list(cfg.dns_servers)
    if cfg.dns_search:
        dns["searches"] = list(cfg.dns_search)
    if cfg.dns_options:
        dns["options"] = [_dns_option(o) for o in cfg.dns_options]
    if dns:
        spec["dnsConfig"] = dns
    if cfg.add_hosts:
        spec["hostAliases"] = [_host_alias(h) for h in cfg.add_hosts]
    if cfg.sysctls:
        spec["securityContext"] = {
            "sysctls": [{"name": k, "value": v} for k, v in cfg.sysctls.items()]
        }
    return _document(dns_subdomain(pod.name), cfg.labels, cfg.annotations, spec, pod.created)


def _dns_option(option: str) -> dict[str, str]:
    name, sep, value = option.partition(":")
    return {"name": name, "value": value} if sep else {"name": name}


def _host_alias(entry: str) -> dict[str, Any]:
    names, _, ip = entry.partition(":")
    return {"hostnames": [n for n in names.split(";") if n], "ip": ip}


def container_document(rt: Runtime, c: Container) -> dict[str, Any]:
    """A lone container as the pod NAME-pod, podman's way."""
    volumes = _Volumes(rt)
    sg = spec_of(c)
    container = _container(
        rt, c, name=dns_label(c.name), ports=list(c.config.ports), volumes=volumes, skip_sources=()
    )
    spec = _pod_spec([container], RESTART.get(c.config.restart.name, "Never"), volumes)
    if sg.basic.hostname and sg.network.uts.mode == NamespaceMode.PRIVATE:
        spec["hostname"] = sg.basic.hostname
    if sg.network.network.mode == NamespaceMode.HOST:
        spec["hostNetwork"] = True
    return _document(dns_subdomain(f"{c.name}-pod"), {}, {}, spec, c.created)


def generate(rt: Runtime, refs: list[str]) -> str:
    """The YAML for pods and containers named by ``refs`` (pods first looked up)."""
    import yaml

    from skiff.runtime.pods.create import pods_of

    documents = []
    for ref in refs:
        pod = pods_of(rt).find(ref)
        if pod is not None:
            documents.append(pod_document(rt, pod))
            continue
        container = rt.records.find(ref)
        if container is None:
            raise ContainerUnknown(
                f"{ref} does not refer to a container or pod: no such pod or container"
            )
        if container.config.infra:
            raise ContainerUnknown(
                f"{container.name} is the infra container of a pod", "generate the pod instead"
            )
        documents.append(container_document(rt, container))
    body = "---\n".join(
        yaml.safe_dump(d, sort_keys=True, default_flow_style=False) for d in documents
    )
    return HEADER + body
