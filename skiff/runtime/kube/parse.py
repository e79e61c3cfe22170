"""Kubernetes YAML → ``skiff.runtime.kube.model``, with the YAML path of every problem.

The YAML is read with PyYAML's safe loader (no tags that build Python
objects); every document must be a mapping with ``apiVersion`` and a
``kind`` skiff plays. Values are checked for their Kubernetes types as
they are read — a string where a list belongs, a port out of range, a
quantity that does not parse, a volume with no or two sources — and the
first problem is raised as a ``KubeError`` naming the file, the document
(when there are several) and the path::

    pod.yaml: spec.containers[0].ports[1].containerPort: 70000 is not a valid port (1-65535)

Fields skiff does not play are ignored, as podman does; fields it plays
but cannot honour in a given form (a ``secret`` volume, ``env.valueFrom.
secretKeyRef``) are errors, so nothing runs differently from what the
YAML asks for without saying so.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable
from typing import Any, TypeVar

from skiff.runtime.kube.model import (
    HOST_PATH_TYPES,
    KINDS,
    RESTART_POLICIES,
    Claim,
    ConfigMap,
    ConfigMapRef,
    Container,
    EnvFrom,
    EnvVar,
    KubeError,
    KubeFile,
    PodSpec,
    Port,
    Resources,
    SecurityContext,
    Volume,
    VolumeMount,
    Where,
)
from skiff.runtime.kube.quantity import parse_cpu, parse_memory

T = TypeVar("T")
NAME_RE = re.compile(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
_VOLUME_SOURCES = ("hostPath", "emptyDir", "persistentVolumeClaim", "configMap")
_UNSUPPORTED_SOURCES = (
    "secret",
    "nfs",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
    "iscsi",
    "glusterfs",
    "rbd",
    "cephfs",
    "gitRepo",
)


# --- typed access ------------------------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Node:
    """A mapping of the YAML and where it is."""

    def __init__(self, data: dict[str, Any], where: Where) -> None:
        self.data = data
        self.where = where

    def at(self, key: str) -> Where:
        return self.where.child(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise self.at(key).error("is required")
        return value

    def text(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.at(key).error(f"must be a string, not {_type_name(value)}")
        if required and not value:
            raise self.at(key).error("must not be empty")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.at(key).error(f"must be true or false, not {_type_name(value)}")
        return value

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.at(key).error(f"must be an integer, not {_type_name(value)} ({value!r})")
        return value

    def mapping(self, key: str, *, required: bool = False) -> Node | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.at(key).error(f"must be a mapping, not {_type_name(value)}")
        return Node(value, self.at(key))

    def items(self, key: str, *, required: bool = False) -> list[tuple[Any, Where]]:
        value = self._get(key, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.at(key).error(f"must be a list, not {_type_name(value)}")
        return [(item, self.at(key).child(f"[{i}]")) for i, item in enumerate(value)]

    def nodes(self, key: str, *, required: bool = False) -> list[Node]:
        out = []
        for item, where in self.items(key, required=required):
            if not isinstance(item, dict):
                raise where.error(f"must be a mapping, not {_type_name(item)}")
            out.append(Node(item, where))
        return out

    def texts(self, key: str) -> list[str] | None:
        if self.data.get(key) is None:
            return None
        out = []
        for item, where in self.items(key):
            if not isinstance(item, str):
                raise where.error(
                    f"must be a string, not {_type_name(item)} ({item!r})",
                    'quote numbers in YAML: "80"',
                )
            out.append(item)
        return out

    def text_map(self, key: str) -> dict[str, str]:
        node = self.mapping(key)
        if node is None:
            return {}
        out = {}
        for k, raw in node.data.items():
            if not isinstance(k, str):
                raise node.where.error(f"key {k!r} must be a string")
            value = "" if raw is None else raw
            if not isinstance(value, str):
                raise node.at(k).error(f"must be a string, not {_type_name(value)} ({value!r})")
            out[k] = value
        return out


def _each(nodes: list[Node], parse: Callable[[Node], T]) -> list[T]:
    return [parse(n) for n in nodes]


# --- containers ---------------------------------------------------------------------------


def _port_number(node: Node, key: str, *, required: bool) -> int | None:
    value = node.integer(key, required=required)
    if value is None:
        return None
    if key == "hostPort" and value == 0:
        return None
    if not 1 <= value <= 65535:
        raise node.at(key).error(f"{value} is not a valid port (1-65535)")
    return value


def _port(node: Node) -> Port:
    container_port = _port_number(node, "containerPort", required=True)
    assert container_port is not None
    host_ip = node.text("hostIP")
    if host_ip:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise node.at("hostIP").error(f"{host_ip!r} is not an IP address") from None
    protocol = node.text("protocol", default="TCP")
    if protocol not in ("TCP", "UDP", "SCTP"):
        raise node.at("protocol").error(f"unknown protocol {protocol!r}", "use TCP, UDP or SCTP")
    return Port(
        container_port=container_port,
        host_port=_port_number(node, "hostPort", required=False),
        host_ip=host_ip,
        protocol=protocol.lower(),
        where=node.where,
    )


def _env(node: Node) -> EnvVar:
    name = node.text("name", required=True)
    if "=" in name:
        raise node.at("name").error(f"{name!r} must not contain '='")
    source = node.mapping("valueFrom")
    if source is None:
        return EnvVar(name, node.text("value"), None, node.where)
    ref = source.mapping("configMapKeyRef")
    if ref is None:
        other = next(iter(source.data), "")
        raise source.where.error(
            f"unsupported env source {other!r}" if other else "is empty",
            "skiff plays value and valueFrom.configMapKeyRef",
        )
    return EnvVar(
        name,
        None,
        ConfigMapRef(
            ref.text("name", required=True),
            ref.text("key", required=True),
            ref.flag("optional"),
            ref.where,
        ),
        node.where,
    )


def _env_from(node: Node) -> EnvFrom:
    ref = node.mapping("configMapRef")
    if ref is None:
        raise node.where.error("unsupported envFrom source", "skiff plays configMapRef")
    return EnvFrom(
        ref.text("name", required=True), node.text("prefix"), ref.flag("optional"), node.where
    )


def _absolute(node: Node, key: str) -> str:
    path = node.text(key, required=True)
    if not path.startswith("/"):
        raise node.at(key).error(f"{path!r} is not an absolute path")
    return posixpath.normpath(path)


def _volume_mount(node: Node) -> VolumeMount:
    if node.text("subPath") or node.text("subPathExpr"):
        raise node.at("subPath").error("subPath is not supported by skiff")
    return VolumeMount(
        node.text("name", required=True),
        _absolute(node, "mountPath"),
        node.flag("readOnly"),
        node.where,
    )


def _security(node: Node | None) -> SecurityContext:
    if node is None:
        return SecurityContext()
    sc = SecurityContext(
        run_as_user=_id(node, "runAsUser"),
        run_as_group=_id(node, "runAsGroup"),
        privileged=node.flag("privileged"),
        read_only_root=node.flag("readOnlyRootFilesystem"),
    )
    if node.has("allowPrivilegeEscalation"):
        sc.allow_privilege_escalation = node.flag("allowPrivilegeEscalation")
    caps = node.mapping("capabilities")
    if caps is not None:
        from skiff.errors import UsageError
        from skiff.runtime.specgen.capabilities import normalize

        for key, target in (("add", sc.cap_add), ("drop", sc.cap_drop)):
            for item, where in caps.items(key):
                if not isinstance(item, str):
                    raise where.error(f"must be a string, not {_type_name(item)}")
                try:
                    normalize(item)
                except UsageError as exc:
                    raise where.error(exc.message) from None
                target.append(item)
    return sc


def _id(node: Node, key: str) -> int | None:
    value = node.integer(key)
    if value is not None and not 0 <= value < 2**32 - 1:
        raise node.at(key).error(f"{value} is not a valid user or group ID")
    return value


def _resources(node: Node | None) -> Resources:
    if node is None:
        return Resources()
    out = Resources()
    limits = node.mapping("limits")
    if limits is not None:
        if limits.has("cpu"):
            out.cpu_limit = parse_cpu(limits.data["cpu"], limits.at("cpu"))
        if limits.has("memory"):
            out.memory_limit = parse_memory(limits.data["memory"], limits.at("memory"))
    requests = node.mapping("requests")
    if requests is not None:
        if requests.has("cpu"):
            parse_cpu(requests.data["cpu"], requests.at("cpu"))
        if requests.has("memory"):
            out.memory_request = parse_memory(requests.data["memory"], requests.at("memory"))
    if (
        out.memory_request is not None
        and out.memory_limit is not None
        and out.memory_request > out.memory_limit
    ):
        raise node.at("requests").child("memory").error("must not exceed limits.memory")
    return out


def _container(node: Node) -> Container:
    name = node.text("name", required=True)
    if not NAME_RE.match(name):
        raise node.at("name").error(
            f"{name!r} is not a valid container name", "use letters, digits, '_', '.', '-'"
        )
    image = node.text("image", required=True)
    working_dir = node.text("workingDir")
    if working_dir and not working_dir.startswith("/"):
        raise node.at("workingDir").error(f"{working_dir!r} is not an absolute path")
    policy = node.text("imagePullPolicy")
    if policy not in ("", "Always", "IfNotPresent", "Never"):
        raise node.at("imagePullPolicy").error(
            f"unknown pull policy {policy!r}", "use Always, IfNotPresent or Never"
        )
    return Container(
        name=name,
        image=image,
        where=node.where,
        command=node.texts("command"),
        args=node.texts("args"),
        working_dir=working_dir,
        env=_each(node.nodes("env"), _env),
        env_from=_each(node.nodes("envFrom"), _env_from),
        ports=_each(node.nodes("ports"), _port),
        volume_mounts=_each(node.nodes("volumeMounts"), _volume_mount),
        security=_security(node.mapping("securityContext")),
        resources=_resources(node.mapping("resources")),
        image_pull_policy=policy,
        stdin=node.flag("stdin"),
        tty=node.flag("tty"),
    )


# --- volumes --------------------------------------------------------------------------------


def _volume(node: Node) -> Volume:
    name = node.text("name", required=True)
    sources = [k for k in _VOLUME_SOURCES if node.data.get(k) is not None]
    unsupported = [k for k in _UNSUPPORTED_SOURCES if node.data.get(k) is not None]
    if unsupported:
        raise node.at(unsupported[0]).error(
            f"volume source {unsupported[0]} is not supported",
            "skiff plays hostPath, emptyDir, persistentVolumeClaim and configMap volumes",
        )
    if len(sources) != 1:
        raise node.where.error(
            f"volume {name!r} must have exactly one source, not {len(sources)}",
            "one of hostPath, emptyDir, persistentVolumeClaim, configMap",
        )
    kind = sources[0]
    volume = Volume(name=name, kind=kind, where=node.where)
    source = node.mapping(kind)
    assert source is not None
    if kind == "hostPath":
        volume.host_path = _absolute(source, "path")
        volume.host_path_type = source.text("type")
        if volume.host_path_type not in HOST_PATH_TYPES:
            raise source.at("type").error(
                f"unknown hostPath type {volume.host_path_type!r}",
                "use " + ", ".join(t for t in HOST_PATH_TYPES if t),
            )
    elif kind == "persistentVolumeClaim":
        volume.claim_name = source.text("claimName", required=True)
        volume.read_only = source.flag("readOnly")
    elif kind == "configMap":
        volume.config_map = source.text("name", required=True)
        volume.optional = source.flag("optional")
        for item in source.nodes("items"):
            key = item.text("key", required=True)
            path = item.text("path", required=True)
            if path.startswith("/") or ".." in path.split("/"):
                raise item.at("path").error(f"{path!r} must be a relative path inside the volume")
            volume.items.append((key, path))
    return volume


# --- documents ------------------------------------------------------------------------------


def _name(meta: Node) -> str:
    name = meta.text("name", required=True)
    if not NAME_RE.match(name):
        raise meta.at("name").error(f"{name!r} is not a valid name")
    return name


def _pod_spec(name: str, meta: Node, spec: Node, kind: str) -> PodSpec:
    pod = PodSpec(name=name, where=spec.where, kind=kind, name_where=meta.at("name"))
    pod.labels = meta.text_map("labels")
    pod.annotations = meta.text_map("annotations")
    pod.containers = _each(spec.nodes("containers", required=True), _container)
    if not pod.containers:
        raise spec.at("containers").error("must list at least one container")
    pod.init_containers = _each(spec.nodes("initContainers"), _container)
    pod.volumes = _each(spec.nodes("volumes"), _volume)
    policy = spec.text("restartPolicy", default="Always")
    if policy not in RESTART_POLICIES:
        raise spec.at("restartPolicy").error(
            f"unknown restart policy {policy!r}", "use Always, OnFailure or Never"
        )
    pod.restart_policy = policy
    pod.host_network = spec.flag("hostNetwork")
    pod.hostname = spec.text("hostname")
    pod.share_process_namespace = spec.flag("shareProcessNamespace")
    security = spec.mapping("securityContext")
    if security is not None:
        pod.run_as_user = _id(security, "runAsUser")
        pod.run_as_group = _id(security, "runAsGroup")
        for sysctl in security.nodes("sysctls"):
            pod.sysctls[sysctl.text("name", required=True)] = sysctl.text("value")
    dns = spec.mapping("dnsConfig")
    if dns is not None:
        for item, where in dns.items("nameservers"):
            try:
                ipaddress.ip_address(item if isinstance(item, str) else "")
            except ValueError:
                raise where.error(f"{item!r} is not an IP address") from None
            pod.dns_servers.append(item)
        pod.dns_search = dns.texts("searches") or []
        for option in dns.nodes("options"):
            opt = option.text("name", required=True)
            value = option.text("value")
            pod.dns_options.append(f"{opt}:{value}" if value else opt)
    for alias in spec.nodes("hostAliases"):
        ip = alias.text("ip", required=True)
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise alias.at("ip").error(f"{ip!r} is not an IP address") from None
        names = alias.texts("hostnames") or []
        if names:
            pod.host_aliases.append(f"{';'.join(names)}:{ip}")
    _check_names(pod)
    return pod


def _check_names(pod: PodSpec) -> None:
    seen: set[str] = set()
    for c in [*pod.init_containers, *pod.containers]:
        if c.name in seen:
            raise c.where.child("name").error(f"container name {c.name!r} is used twice")
        seen.add(c.name)
    volumes: set[str] = set()
    for v in pod.volumes:
        if v.name in volumes:
            raise v.where.child("name").error(f"volume name {v.name!r} is used twice")
        volumes.add(v.name)
    for c in [*pod.init_containers, *pod.containers]:
        for m in c.volume_mounts:
            if m.name not in volumes:
                raise m.where.child("name").error(f"no volume named {m.name!r} in spec.volumes")


def _deployment(meta: Node, spec: Node) -> PodSpec:
    name = _name(meta)
    replicas = spec.integer("replicas")
    if replicas is not None and replicas < 0:
        raise spec.at("replicas").error("must not be negative")
    template = spec.mapping("template", required=True)
    assert template is not None
    template_meta = template.mapping("metadata") or Node({}, template.at("metadata"))
    pod_spec = template.mapping("spec", required=True)
    assert pod_spec is not None
    pod = _pod_spec(f"{name}-pod", template_meta, pod_spec, "Deployment")
    pod.name_where = meta.at("name")
    pod.labels = {**meta.text_map("labels"), **pod.labels}
    pod.replicas = 1 if replicas is None else replicas
    return pod


def parse_documents(documents: list[Any], source: str, into: KubeFile | None = None) -> KubeFile:
    """Typed objects of already loaded YAML documents (empty documents are skipped)."""
    out = into if into is not None else KubeFile()
    count = len(documents)
    for index, doc in enumerate(documents, start=1):
        where = Where(source, index, "", count)
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise where.error(f"must be a mapping (a Kubernetes object), not {_type_name(doc)}")
        node = Node(doc, where)
        kind = node.text("kind", required=True)
        node.text("apiVersion", required=True)
        if kind not in KINDS:
            raise node.at("kind").error(
                f"unsupported kind {kind!r}", "skiff plays " + ", ".join(KINDS)
            )
        meta = node.mapping("metadata", required=True)
        assert meta is not None
        if kind == "Pod":
            spec = node.mapping("spec", required=True)
            assert spec is not None
            out.pods.append(_pod_spec(_name(meta), meta, spec, "Pod"))
        elif kind == "Deployment":
            spec = node.mapping("spec", required=True)
            assert spec is not None
            out.pods.append(_deployment(meta, spec))
        elif kind == "ConfigMap":
            out.config_maps.append(ConfigMap(_name(meta), node.text_map("data"), where))
        else:
            out.claims.append(Claim(_name(meta), meta.text_map("labels"), where))
    seen: set[str] = set()
    for pod in out.pods:
        if pod.name in seen:
            raise pod.at_name().error(f"pod {pod.name!r} is defined twice")
        seen.add(pod.name)
    return out


def load_yaml(text: str, source: str) -> list[Any]:
    """The documents of a YAML stream; a syntax error names its line and column."""
    import yaml

    try:
        return list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise KubeError(
            f"{source}: not valid YAML: {place}{exc.problem or exc}",
            "check the indentation and quoting around that place",
        ) from None
    except yaml.YAMLError as exc:
        raise KubeError(f"{source}: not valid YAML: {exc}") from None


def parse_yaml(text: str, source: str, into: KubeFile | None = None) -> KubeFile:
    return parse_documents(load_yaml(text, source), source, into)
