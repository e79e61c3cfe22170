"""Platforms (os/architecture/variant) and the host's own platform."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from skiff.errors import ManifestError

# uname -m → GOARCH, as the Go tools name architectures
_ARCH_FROM_UNAME = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    @classmethod
    def from_json(cls, value: Any) -> Platform:
        if not isinstance(value, dict):
            raise ManifestError("invalid platform: not a JSON object")
        arch = value.get("architecture")
        os_name = value.get("os")
        if not isinstance(arch, str) or not isinstance(os_name, str):
            raise ManifestError("invalid platform: architecture and os must be strings")
        variant = value.get("variant") or ""
        os_version = value.get("os.version") or ""
        features = value.get("os.features") or []
        if not isinstance(variant, str) or not isinstance(os_version, str):
            raise ManifestError("invalid platform: variant and os.version must be strings")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ManifestError("invalid platform: os.features must be a list of strings")
        return cls(arch, os_name, variant, os_version, tuple(features))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def variant_preference(self) -> list[str]:
        """Variants acceptable for this platform, best first.

        An explicitly requested variant is preferred, then lower compatible
        variants for arm (v8 runs v7 and v6 code), then no variant.
        """
        if self.architecture == "arm64":
            order = [self.variant or "v8", "v8", ""]
        elif self.architecture == "arm":
            start = self.variant or "v7"
            ladder = ["v8", "v7", "v6", "v5"]
            order = ladder[ladder.index(start) :] if start in ladder else [start]
            order.append("")
        else:
            order = [self.variant, ""]
        seen: list[str] = []
        for v in order:
            if v not in seen:
                seen.append(v)
        return seen

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` as given to ``--platform``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ManifestError(
                f"invalid platform {text!r}", "expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            )
        return cls(architecture=parts[1], os=parts[0], variant=parts[2] if len(parts) == 3 else "")


def host_platform() -> Platform:
    # os.uname(), not platform.machine(): the same value without importing
    # the platform module (a few ms of every command's start)
    machine = os.uname().machine
    arch = _ARCH_FROM_UNAME.get(machine, machine)
    variant = ""
    if machine.startswith("armv7"):
        variant = "v7"
    elif machine.startswith("armv6"):
        variant = "v6"
    elif arch == "arm64":
        variant = ""
    return Platform(architecture=arch, os="linux", variant=variant)


def wanted_platform(
    override_os: str | None = None,
    override_arch: str | None = None,
    override_variant: str | None = None,
) -> Platform:
    """The host platform with the --override-* flags applied."""
    host = host_platform()
    arch = override_arch or host.architecture
    variant = (
        override_variant
        if override_variant is not None
        else (host.variant if arch == host.architecture else "")
    )
    return Platform(architecture=arch, os=override_os or host.os, variant=variant)
