"""The image configuration (OCI image config / Docker container image JSON).

Kept as the decoded JSON object so that fields skiff does not know survive
a round trip; typed accessors cover what skiff reads and writes. The OCI and
Docker config formats share these fields (Docker adds a few, e.g.
``container_config`` and ``Healthcheck``, which pass through untouched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skiff.errors import ManifestError
from skiff.oci.digest import Digest
from skiff.oci.jsondoc import MAX_CONFIG_SIZE, dumps_json, loads_json

if TYPE_CHECKING:
    # imported where used; and the JSON helpers come from jsondoc, not
    # skiff.oci.manifest: ``skiff run`` reads image configs and should not
    # build the manifest classes to do so
    from skiff.oci.platform import Platform


@dataclass
class ImageConfig:
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ImageConfig:
        if len(raw) > MAX_CONFIG_SIZE:
            raise ManifestError(
                f"image config is {len(raw)} bytes, above the {MAX_CONFIG_SIZE}-byte limit"
            )
        data = loads_json(raw, "image config")
        if not isinstance(data, dict):
            raise ManifestError("invalid image config: not a JSON object")
        cfg = cls(data)
        cfg.diff_ids  # noqa: B018 - validate early
        return cfg

    def to_bytes(self) -> bytes:
        return dumps_json(self.data)

    # --- platform ---------------------------------------------------------
    @property
    def architecture(self) -> str:
        return str(self.data.get("architecture") or "")

    @property
    def os(self) -> str:
        return str(self.data.get("os") or "")

    @property
    def variant(self) -> str:
        return str(self.data.get("variant") or "")

    @property
    def platform(self) -> Platform:
        from skiff.oci.platform import Platform

        return Platform(self.architecture, self.os, self.variant)

    @property
    def created(self) -> str:
        return str(self.data.get("created") or "")

    @property
    def author(self) -> str:
        return str(self.data.get("author") or "")

    # --- the container config -------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The ``config`` object (Env, Cmd, Entrypoint, ...), created if absent."""
        value = self.data.get("config")
        if not isinstance(value, dict):
            value = {}
            self.data["config"] = value
        return value

    def _list(self, key: str) -> list[str]:
        value = (self.data.get("config") or {}).get(key)
        if not isinstance(value, list):
            return []
        return [str(v) for v in value]

    @property
    def env(self) -> list[str]:
        return self._list("Env")

    @property
    def cmd(self) -> list[str]:
        return self._list("Cmd")

    @property
    def entrypoint(self) -> list[str]:
        return self._list("Entrypoint")

    @property
    def working_dir(self) -> str:
        return str((self.data.get("config") or {}).get("WorkingDir") or "")

    @property
    def user(self) -> str:
        return str((self.data.get("config") or {}).get("User") or "")

    @property
    def labels(self) -> dict[str, str]:
        value = (self.data.get("config") or {}).get("Labels")
        if not isinstance(value, dict):
            return {}
        return {str(k): str(v) for k, v in value.items()}

    @property
    def exposed_ports(self) -> list[str]:
        value = (self.data.get("config") or {}).get("ExposedPorts")
        return sorted(value) if isinstance(value, dict) else []

    @property
    def volumes(self) -> list[str]:
        value = (self.data.get("config") or {}).get("Volumes")
        return sorted(value) if isinstance(value, dict) else []

    @property
    def stop_signal(self) -> str:
        return str((self.data.get("config") or {}).get("StopSignal") or "")

    # --- layers and history ----------------------------------------------
    @property
    def diff_ids(self) -> list[Digest]:
        rootfs = self.data.get("rootfs")
        if rootfs is None:
            return []
        if not isinstance(rootfs, dict):
            raise ManifestError("invalid image config: 'rootfs' is not an object")
        ids = rootfs.get("diff_ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ManifestError("invalid image config: 'rootfs.diff_ids' is not a list of digests")
        return [Digest.parse(i) for i in ids]

    def set_diff_ids(self, ids: list[Digest]) -> None:
        self.data["rootfs"] = {"type": "layers", "diff_ids": [str(i) for i in ids]}

    @property
    def history(self) -> list[dict[str, Any]]:
        value = self.data.get("history")
        if not isinstance(value, list):
            return []
        return [h for h in value if isinstance(h, dict)]
