"""Building an image config from a Docker schema 1 manifest.

Schema 1 has no config blob: each layer carries a ``v1Compatibility`` JSON
document and the newest one holds the container configuration. Converting
to schema 2 / OCI needs a config with ``rootfs.diff_ids`` (digests of the
uncompressed layers, computed while the layers are copied) and a history
entry per v1 layer, empty layers marked ``empty_layer``.
"""

from __future__ import annotations

from typing import Any

from skiff.oci.digest import Digest
from skiff.oci.manifest import Schema1Manifest, dumps_json

# v1Compatibility fields that describe the v1 layer, not the image
_V1_ONLY_FIELDS = ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")


def schema1_to_config(manifest: Schema1Manifest, diff_ids: list[Digest]) -> bytes:
    newest = dict(manifest.v1_compat[0])
    config: dict[str, Any] = {k: v for k, v in newest.items() if k not in _V1_ONLY_FIELDS}
    history = []
    for compat in reversed(manifest.v1_compat):
        entry: dict[str, Any] = {}
        if compat.get("created"):
            entry["created"] = compat["created"]
        if compat.get("author"):
            entry["author"] = compat["author"]
        container_config = compat.get("container_config") or {}
        cmd = container_config.get("Cmd") if isinstance(container_config, dict) else None
        if isinstance(cmd, list) and cmd:
            entry["created_by"] = " ".join(str(c) for c in cmd)
        if compat.get("comment"):
            entry["comment"] = compat["comment"]
        if compat.get("throwaway"):
            entry["empty_layer"] = True
        history.append(entry)
    config["history"] = history
    config["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    if manifest.architecture and not config.get("architecture"):
        config["architecture"] = manifest.architecture
    config.setdefault("os", "linux")
    return dumps_json(config)
