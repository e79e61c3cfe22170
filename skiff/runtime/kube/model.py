"""The part of Kubernetes YAML that ``kube play`` understands, typed.

``parse.py`` turns YAML documents into these classes and rejects what
cannot be played, naming the YAML path of the problem
(``spec.containers[0].ports[1].containerPort``); ``play.py`` runs them;
``generate.py`` writes the same subset back out. Every object remembers
the YAML path it came from (``path``), so that problems found later —
a ConfigMap key that does not exist, an image that is not in the store —
are reported at the right place too.

Supported kinds: Pod, Deployment (its pod template, one replica),
ConfigMap, PersistentVolumeClaim (a named volume).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skiff.errors import UsageError

KINDS = ("Pod", "Deployment", "ConfigMap", "PersistentVolumeClaim")
RESTART_POLICIES = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}
HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)


class KubeError(UsageError):
    """A Kubernetes YAML file that cannot be played; the message names the YAML path."""


@dataclass(frozen=True)
class Where:
    """Where in the input an object was: file, document number (1-based), YAML path."""

    source: str
    document: int
    path: str
    documents: int = 1

    def child(self, part: str) -> Where:
        joined = (
            f"{self.path}.{part}" if self.path and not part.startswith("[") else self.path + part
        )
        return Where(self.source, self.document, joined, self.documents)

    def error(self, problem: str, hint: str | None = None) -> KubeError:
        doc = f"document {self.document}: " if self.documents > 1 else ""
        place = f"{self.path}: " if self.path else ""
        return KubeError(f"{self.source}: {doc}{place}{problem}", hint)


@dataclass
class ConfigMapRef:
    name: str
    key: str
    optional: bool
    where: Where


@dataclass
class EnvVar:
    name: str
    value: str | None
    config_map: ConfigMapRef | None
    where: Where


@dataclass
class EnvFrom:
    config_map: str
    prefix: str
    optional: bool
    where: Where


@dataclass
class Port:
    container_port: int
    host_port: int | None
    host_ip: str
    protocol: str
    """tcp, udp or sctp."""
    where: Where


@dataclass
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool
    where: Where


@dataclass
class SecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    privileged: bool = False
    read_only_root: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    allow_privilege_escalation: bool | None = None


@dataclass
class Resources:
    cpu_limit: float | None = None
    memory_limit: int | None = None
    memory_request: int | None = None


@dataclass
class Container:
    name: str
    image: str
    where: Where
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str = ""
    env: list[EnvVar] = field(default_factory=list)
    env_from: list[EnvFrom] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    volume_mounts: list[VolumeMount] = field(default_factory=list)
    security: SecurityContext = field(default_factory=SecurityContext)
    resources: Resources = field(default_factory=Resources)
    image_pull_policy: str = ""
    stdin: bool = False
    tty: bool = False


@dataclass
class Volume:
    name: str
    kind: str
    """hostPath, emptyDir, persistentVolumeClaim or configMap."""
    where: Where
    host_path: str = ""
    host_path_type: str = ""
    claim_name: str = ""
    config_map: str = ""
    items: list[tuple[str, str]] = field(default_factory=list)
    """configMap items: (key, relative path); empty: every key as a file."""
    optional: bool = False
    read_only: bool = False


@dataclass
class PodSpec:
    """A Pod (or a Deployment's pod template)."""

    name: str
    where: Where
    kind: str = "Pod"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)
    init_containers: list[Container] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    restart_policy: str = "Always"
    host_network: bool = False
    hostname: str = ""
    share_process_namespace: bool = False
    run_as_user: int | None = None
    run_as_group: int | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    host_aliases: list[str] = field(default_factory=list)
    """``NAME;NAME2:IP`` entries (hostAliases)."""
    replicas: int = 1
    name_where: Where | None = None
    """Where the pod's name came from (metadata.name)."""

    def at_name(self) -> Where:
        return self.name_where or self.where


@dataclass
class ConfigMap:
    name: str
    data: dict[str, str]
    where: Where


@dataclass
class Claim:
    """A PersistentVolumeClaim document: a named volume."""

    name: str
    labels: dict[str, str]
    where: Where


@dataclass
class KubeFile:
    """Everything the YAML input holds, in document order per kind."""

    pods: list[PodSpec] = field(default_factory=list)
    config_maps: list[ConfigMap] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
