"""A SpecGenerator as JSON, for the container record.

The create step stores what the user asked for, not the generated spec:
the spec is regenerated at every start (the rootfs mount point, the netns
path and the pids of joined containers change between starts). The JSON
is the dataclasses' fields; mounts carry a ``kind`` tag (bind, volume,
tmpfs); unknown keys are refused so that a record written by a newer skiff
is not silently half-read.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from skiff.errors import StoreCorrupt
from skiff.runtime.specgen.devices import DeviceRequest
from skiff.runtime.specgen.etcfiles import HostEntry
from skiff.runtime.specgen.generator import (
    BasicOptions,
    Namespace,
    NamespaceMode,
    NetworkOptions,
    ResourceOptions,
    SecurityOptions,
    SpecGenerator,
    StorageOptions,
)
from skiff.runtime.specgen.limits import Ulimit
from skiff.runtime.specgen.mounts import BindMount, Mount, TmpfsMount, VolumeMount

_MOUNT_KINDS: dict[str, type[BindMount] | type[VolumeMount] | type[TmpfsMount]] = {
    "bind": BindMount,
    "volume": VolumeMount,
    "tmpfs": TmpfsMount,
}
_KIND_OF = {cls: kind for kind, cls in _MOUNT_KINDS.items()}

T = TypeVar("T")


def _mount_to_json(m: Mount) -> dict[str, Any]:
    return {"kind": _KIND_OF[type(m)], **dataclasses.asdict(m)}


def to_json(sg: SpecGenerator) -> dict[str, Any]:
    data = dataclasses.asdict(sg)
    data["storage"]["mounts"] = [_mount_to_json(m) for m in sg.storage.mounts]
    return data


def _fields(cls: type[T], data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise StoreCorrupt(f"container record: {where} is not an object")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise StoreCorrupt(
            f"container record: unknown field {sorted(unknown)[0]!r} in {where}",
            "the record was written by a newer skiff",
        )
    return dict(data)


def _tuple_fields(cls: type[T], data: dict[str, Any]) -> dict[str, Any]:
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data and isinstance(data[f.name], list) and "tuple" in str(f.type):
            data[f.name] = tuple(data[f.name])
    return data


def _namespace(data: Any, where: str) -> Namespace:
    fields = _fields(Namespace, data, where)
    try:
        mode = NamespaceMode(fields.get("mode", "private"))
    except ValueError:
        raise StoreCorrupt(f"container record: bad namespace mode in {where}") from None
    return Namespace(mode, str(fields.get("value", "")))


def _mount(data: Any) -> Mount:
    if not isinstance(data, dict) or data.get("kind") not in _MOUNT_KINDS:
        raise StoreCorrupt("container record: a mount has no valid kind")
    cls = _MOUNT_KINDS[data["kind"]]
    fields = _fields(cls, {k: v for k, v in data.items() if k != "kind"}, "a mount")
    return cls(**_tuple_fields(cls, fields))


def from_json(data: Any) -> SpecGenerator:
    top = _fields(SpecGenerator, data, "the spec generator")
    basic = BasicOptions(**_fields(BasicOptions, top.get("basic", {}), "basic"))
    storage_fields = _fields(StorageOptions, top.get("storage", {}), "storage")
    storage_fields["mounts"] = [_mount(m) for m in storage_fields.get("mounts", [])]
    storage_fields["devices"] = [
        DeviceRequest(**_fields(DeviceRequest, d, "a device"))
        for d in storage_fields.get("devices", [])
    ]
    storage = StorageOptions(**storage_fields)
    security = SecurityOptions(**_fields(SecurityOptions, top.get("security", {}), "security"))
    net_fields = _fields(NetworkOptions, top.get("network", {}), "network")
    for kind in ("pid", "ipc", "uts", "network", "user"):
        if kind in net_fields:
            net_fields[kind] = _namespace(net_fields[kind], f"network.{kind}")
    if net_fields.get("cgroup") is not None:
        net_fields["cgroup"] = _namespace(net_fields["cgroup"], "network.cgroup")
    net_fields["add_hosts"] = [
        HostEntry(tuple(h.get("names", ())), str(h.get("address", "")))
        for h in net_fields.get("add_hosts", [])
        if isinstance(h, dict)
    ]
    network = NetworkOptions(**net_fields)
    res_fields = _fields(ResourceOptions, top.get("resources", {}), "resources")
    res_fields["ulimits"] = [
        Ulimit(**_fields(Ulimit, u, "a ulimit")) for u in res_fields.get("ulimits", [])
    ]
    resources = ResourceOptions(**res_fields)
    return SpecGenerator(basic, storage, security, network, resources)
