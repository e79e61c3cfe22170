"""``skiff image inspect IMAGE`` for local images: podman's JSON shape.

The keys and their order are podman 4's (libimage's ImageData): Id,
Digest, RepoTags, RepoDigests, Parent, Comment, Created, Config, Version,
Author, Architecture, Os, Size, VirtualSize, GraphDriver, RootFS, Labels,
Annotations, ManifestType, User, History, NamesHistory, and Healthcheck
when a Docker image has one. ``Config`` holds the OCI image config's
fields in the OCI struct's order, empty ones left out; times are printed
as Go prints them (RFC 3339, fraction without trailing zeros, the offset
the image recorded). Inspecting images from other transports is
``skiff.image.inspect``'s (skopeo's shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skiff.errors import ImageUnknown, ManifestError, SkiffError
from skiff.libimage.layertree import LayerTree, format_time, names_history, parse_time

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.oci.config import ImageConfig
    from skiff.storage.images import Image
    from skiff.storage.store import Store

CONFIG_FIELDS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
)
"""OCI ImageConfig's fields, in the order of the Go struct: podman prints them
in this order, and buildah writes an OCI image's config in it (so does
``skiff.build.commit``)."""

HISTORY_FIELDS = ("created", "created_by", "author", "comment", "empty_layer")

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class InspectOptions:
    pass


@dataclass
class InspectReport:
    images: list[dict[str, Any]] = field(default_factory=list)
    errors: list[SkiffError] = field(default_factory=list)


def inspect_images(
    ctx: SystemContext, names: list[str], options: InspectOptions | None = None
) -> InspectReport:
    """podman's inspect data for each local image named; unknown names are errors."""
    from skiff.libimage.names import find_local_image
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        tree = LayerTree(store)
        report = InspectReport()
        for text in names:
            try:
                image, _ = find_local_image(ctx, store, text)
            except ImageUnknown as exc:
                report.errors.append(exc)
                continue
            report.images.append(image_data(store, tree, image))
        return report
    finally:
        store.close()


def image_data(store: Store, tree: LayerTree, image: Image) -> dict[str, Any]:
    """One image as podman's ``image inspect`` prints it."""
    from skiff.libimage.listing import repo_digests

    config = tree.config(image)
    if config is None:
        raise ManifestError(
            f"image {image.id[:12]} has an unreadable config",
            "run 'skiff system check' and pull the image again",
        )
    raw = config.data
    parent = tree.parent(image)
    created = parse_time(config.created)
    size = tree.size(image)
    history = config.history
    comment = str(history[0].get("comment") or "") if history else ""
    annotations: dict[str, str] | None = None
    healthcheck: Any = None
    if image.manifest_type == DOCKER_V2S2:
        comment = str(raw.get("comment") or "")
        container_config = raw.get("container_config")
        if isinstance(container_config, dict):
            healthcheck = container_config.get("Healthcheck")
        if healthcheck is None and isinstance(raw.get("config"), dict):
            healthcheck = raw["config"].get("Healthcheck")
    else:
        annotations = _manifest_annotations(image)
    labels = config.labels
    rootfs_value = raw.get("rootfs")
    rootfs: dict[str, Any] = rootfs_value if isinstance(rootfs_value, dict) else {}
    data: dict[str, Any] = {
        "Id": image.id,
        "Digest": str(image.digest) if image.digest else "",
        "RepoTags": list(image.names),
        "RepoDigests": repo_digests(image),
        "Parent": parent.id if parent is not None else "",
        "Comment": comment,
        "Created": format_time(created) if created is not None else None,
        "Config": oci_config(config),
        "Version": str(raw.get("docker_version") or ""),
        "Author": config.author,
        "Architecture": config.architecture,
        "Os": config.os,
        "Size": size,
        "VirtualSize": size,
        "GraphDriver": graph_driver(store, tree, image),
        "RootFS": {
            "Type": str(rootfs.get("type") or ""),
            "Layers": [str(d) for d in config.diff_ids] or None,
        },
        "Labels": _go_map(labels) or None,
        "Annotations": annotations,
        "ManifestType": image.manifest_type,
        "User": config.user,
        "History": [history_entry(h) for h in history] or None,
        "NamesHistory": names_history(store, image) or None,
    }
    if healthcheck is not None:
        data["Healthcheck"] = healthcheck
    return data


def oci_config(config: ImageConfig) -> dict[str, Any]:
    """The ``config`` object as OCI's ImageConfig: its fields only, empty ones left out."""
    source = config.data.get("config")
    if not isinstance(source, dict):
        return {}
    return {key: _go_map(source[key]) for key in CONFIG_FIELDS if source.get(key)}


def _go_map(value: Any) -> Any:
    """Maps (Labels, ExposedPorts, Volumes) with their keys sorted, as Go prints maps."""
    if isinstance(value, dict):
        return {k: value[k] for k in sorted(value)}
    return value


def history_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One history entry with OCI's fields in their order, empty ones left out."""
    out: dict[str, Any] = {}
    for key in HISTORY_FIELDS:
        value = entry.get(key)
        if not value:
            continue
        if key == "created":
            parsed = parse_time(str(value))
            value = format_time(parsed) if parsed is not None else value
        out[key] = value
    return out


def graph_driver(store: Store, tree: LayerTree, image: Image) -> dict[str, Any]:
    """``GraphDriver``: the driver and, for overlay, the layer directories."""
    name = store.driver_name
    if name != "overlay" or image.top_layer is None:
        return {"Name": name, "Data": None}
    chain = tree.layer_chain(image.top_layer)
    top = store.driver.layer_dir(image.top_layer)
    data: dict[str, str] = {}
    lowers = [str(store.driver.layer_dir(layer.id)) for layer in chain[1:]]
    if lowers:
        data["LowerDir"] = ":".join(lowers)
    data["UpperDir"] = str(top)
    data["WorkDir"] = str(top.parent / "work")
    return {"Name": name, "Data": data}


def _manifest_annotations(image: Image) -> dict[str, str]:
    if not image.manifest:
        return {}
    from skiff.oci.manifest import loads_json

    try:
        parsed = loads_json(image.manifest, "manifest")
    except ManifestError:
        return {}
    value = parsed.get("annotations") if isinstance(parsed, dict) else None
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in sorted(value.items())}
