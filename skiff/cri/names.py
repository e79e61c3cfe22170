"""CRI names: sandboxes and containers named from their metadata, as CRI-O does.

kubelet identifies a sandbox by (name, namespace, uid, attempt) and a
container by (its name, attempt) within a sandbox. It asks again with a
higher attempt after a failure, and it relies on the runtime refusing a
second object with the same identity (AlreadyExists), so the identity
becomes the object's unique name in the store:

    sandbox    k8s_POD_NAME_NAMESPACE_UID_ATTEMPT        (the skiff pod and
                                                          its infra container)
    container  k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT   (POD, NAMESPACE, UID
                                                          of its sandbox)

Kubernetes names are DNS labels and subdomains and UIDs are UUIDs, so the
names fit skiff's name rule ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``; metadata that
would not (empty, or other characters) is refused as InvalidArgument.
"""

from __future__ import annotations

import re
from typing import Any

from skiff.cri.errors import InvalidArgument

_PART = re.compile(r"\A[a-zA-Z0-9_.-]*\Z")
PREFIX = "k8s"
INFRA_NAME = "POD"


def _part(value: str, what: str) -> str:
    if not _PART.match(value):
        raise InvalidArgument(
            f"invalid {what} {value!r}: only letters, digits, '_', '.' and '-' are allowed",
            "Kubernetes names are DNS labels or subdomains",
        )
    return value


def check_sandbox_metadata(metadata: Any) -> None:
    """Refuse a PodSandboxConfig whose metadata cannot name a sandbox."""
    if metadata is None or not metadata.name:
        raise InvalidArgument(
            "PodSandboxConfig.Metadata.Name should not be empty",
            "give the sandbox metadata a name",
        )
    _part(metadata.name, "pod sandbox name")
    _part(metadata.namespace, "pod sandbox namespace")
    _part(metadata.uid, "pod sandbox uid")
    if metadata.attempt < 0:
        raise InvalidArgument(f"invalid pod sandbox attempt {metadata.attempt}")


def check_container_metadata(metadata: Any) -> None:
    if metadata is None or not metadata.name:
        raise InvalidArgument(
            "ContainerConfig.Metadata.Name should not be empty",
            "give the container metadata a name",
        )
    _part(metadata.name, "container name")


def sandbox_name(metadata: Any) -> str:
    """``k8s_POD_NAME_NAMESPACE_UID_ATTEMPT`` (call ``check_sandbox_metadata`` first)."""
    return "_".join(
        (
            PREFIX,
            INFRA_NAME,
            metadata.name,
            metadata.namespace,
            metadata.uid,
            str(metadata.attempt),
        )
    )


def container_name(sandbox_metadata: Any, metadata: Any) -> str:
    """``k8s_CONTAINER_POD_NAMESPACE_UID_ATTEMPT``."""
    return "_".join(
        (
            PREFIX,
            metadata.name,
            sandbox_metadata.name,
            sandbox_metadata.namespace,
            sandbox_metadata.uid,
            str(metadata.attempt),
        )
    )


def hostname_for(metadata: Any) -> str:
    """A sandbox's hostname when the config gives none: its name, cut to 63
    characters (a hostname's limit) without a trailing '.' or '-'."""
    return str(metadata.name)[:63].rstrip(".-_") or "pod"
