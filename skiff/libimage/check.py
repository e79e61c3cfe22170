"""``skiff system check [--repair] [--force] [--quick] [--max DURATION]``.

``skiff.storage.check.scan`` finds the inconsistencies; this module decides
what a repair may do about each, as podman's ``system check`` does:

- always safe, done by ``repair``: removing leftovers of dead processes,
  content directories and tar-split records no layer owns, overlay links
  pointing nowhere, name/digest/data rows of images that do not exist;
  restoring a layer's short link from its row; resetting mount counts of
  layers that are not mounted; unmounting overlay mounts nobody counted;
- damage: a layer without its content, with content that no longer
  matches its diff ID, or whose parent is gone, is damaged, and so is
  every layer above it and every image or container built on one. A
  repair removes damaged images and layers, but never a container — and
  so never what a container stands on — unless ``force`` is given; then
  the containers go first (through ``remove_container``, the runtime's
  removal, when provided);
- with ``max_age``: layers nothing uses that are older than that are
  treated as the remains of a cancelled pull and removed.

The report lists every problem with what was done about it; problems that
remain are the caller's to report (the CLI exits with an error then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import LayerUnknown, SkiffError
from skiff.storage import check as scan_mod

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.storage.store import Store

_DAMAGE = (scan_mod.KIND_NO_CONTENT, scan_mod.KIND_DAMAGED, scan_mod.KIND_NO_PARENT)


@dataclass(frozen=True)
class CheckOptions:
    repair: bool = False
    force: bool = False
    """With ``repair``: also remove containers that stand on damaged layers."""
    quick: bool = False
    """Skip verifying layer contents against their diff IDs."""
    max_age: float | None = None
    """Seconds: unused layers older than this count as leftovers."""
    remove_container: Callable[[str], None] | None = None
    """The runtime's removal of a container (its records too); default: its storage only."""


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str
    detail: str
    repaired: bool = False
    action: str = ""
    """What the repair did, or why it left the problem alone."""


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    removed_images: list[str] = field(default_factory=list)
    removed_containers: list[str] = field(default_factory=list)
    removed_layers: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]


def check_store(ctx: SystemContext, options: CheckOptions) -> CheckReport:
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        findings = scan_mod.scan(store, scan_mod.ScanOptions(options.quick, options.max_age))
        report = CheckReport()
        if not options.repair:
            report.problems = [Problem(f.kind, f.subject, f.detail) for f in findings]
            return report
        simple = [f for f in findings if f.kind not in (*_DAMAGE, scan_mod.KIND_UNUSED_LAYER)]
        simple = [
            f
            for f in simple
            if f.kind not in (scan_mod.KIND_IMAGE_LAYERS, scan_mod.KIND_CONTAINER_LAYER)
        ]
        for finding in simple:
            report.problems.append(_fix_simple(store, finding))
        _repair_damage(store, findings, options, report)
        for finding in findings:
            if finding.kind == scan_mod.KIND_UNUSED_LAYER:
                report.problems.append(_remove_unused(store, finding, report))
        return report
    finally:
        store.close()


def _fix_simple(store: Store, finding: scan_mod.Finding) -> Problem:
    kind, subject = finding.kind, finding.subject
    try:
        if kind == scan_mod.KIND_STAGING:
            scan_mod.forget_staging(store, subject)
            action = "removed"
        elif kind in (scan_mod.KIND_TEMP, scan_mod.KIND_TAR_SPLIT, scan_mod.KIND_LINK_DANGLING):
            scan_mod.remove_path(subject)
            action = "removed"
        elif kind == scan_mod.KIND_INCOMPLETE:
            scan_mod.remove_incomplete_layer(store, subject)
            action = "removed"
        elif kind == scan_mod.KIND_ORPHAN_CONTENT:
            scan_mod.remove_orphan_content(store, subject)
            action = "removed"
        elif kind == scan_mod.KIND_LINK_MISSING:
            scan_mod.restore_link(store, store.layers.get(subject))
            action = "restored"
        elif kind == scan_mod.KIND_STALE_MOUNT:
            scan_mod.reset_mount_count(store, subject)
            action = "mount count reset"
        elif kind == scan_mod.KIND_UNCOUNTED_MOUNT:
            scan_mod.unmount_uncounted(subject)
            action = "unmounted"
        elif kind == scan_mod.KIND_NAME:
            scan_mod.remove_dangling_name(store, subject, finding.owner)
            action = "removed"
        elif kind == scan_mod.KIND_IMAGE_DATA:
            scan_mod.remove_image_rows(store, subject)
            action = "removed"
        else:
            return Problem(kind, subject, finding.detail, False, "no repair known")
    except (SkiffError, OSError) as exc:
        return Problem(kind, subject, finding.detail, False, f"repair failed: {exc}")
    return Problem(kind, subject, finding.detail, True, action)


def _repair_damage(
    store: Store, findings: list[scan_mod.Finding], options: CheckOptions, report: CheckReport
) -> None:
    """Remove damaged images and layers, and (with force) the containers on them."""
    roots = {f.subject: f for f in findings if f.kind in _DAMAGE}
    damaged: set[str] = set(roots)
    for layer_id in list(roots):
        damaged.update(scan_mod.descendants(store, layer_id))
    image_findings = {f.subject: f for f in findings if f.kind == scan_mod.KIND_IMAGE_LAYERS}
    container_findings = {f.subject: f for f in findings if f.kind == scan_mod.KIND_CONTAINER_LAYER}
    images = [
        i
        for i in store.images.all()
        if i.id in image_findings or _stands_on(store, i.top_layer, damaged)
    ]
    containers = [
        c
        for c in store.containers.all()
        if c.id in container_findings or _stands_on(store, c.layer_id, damaged)
    ]
    kept: set[str] = set()  # layers a remaining container still needs
    for container in containers:
        detail = (
            container_findings[container.id].detail
            if container.id in container_findings
            else f"stands on a damaged layer ({container.name or container.id[:12]})"
        )
        if not options.force:
            kept.update(_chain_ids(store, container.layer_id))
            report.problems.append(
                Problem(
                    scan_mod.KIND_CONTAINER_LAYER,
                    container.id,
                    detail,
                    False,
                    "kept: use --force to remove it",
                )
            )
            continue
        try:
            _drop_container(store, container.id, options)
        except (SkiffError, OSError) as exc:
            kept.update(_chain_ids(store, container.layer_id))
            report.problems.append(
                Problem(
                    scan_mod.KIND_CONTAINER_LAYER,
                    container.id,
                    detail,
                    False,
                    f"repair failed: {exc}",
                )
            )
            continue
        report.removed_containers.append(container.id)
        report.problems.append(
            Problem(scan_mod.KIND_CONTAINER_LAYER, container.id, detail, True, "container removed")
        )
    for image in images:
        detail = (
            image_findings[image.id].detail
            if image.id in image_findings
            else "stands on a damaged layer"
        )
        if store.containers.by_image(image.id):
            kept.update(_chain_ids(store, image.top_layer))
            report.problems.append(
                Problem(
                    scan_mod.KIND_IMAGE_LAYERS,
                    image.id,
                    detail,
                    False,
                    "kept: a container uses it (use --force)",
                )
            )
            continue
        store.images.delete(image.id)
        report.removed_images.append(image.id)
        report.problems.append(
            Problem(scan_mod.KIND_IMAGE_LAYERS, image.id, detail, True, "image removed")
        )
    for layer_id, finding in roots.items():
        if layer_id in kept or any(d in kept for d in scan_mod.descendants(store, layer_id)):
            report.problems.append(
                Problem(
                    finding.kind,
                    layer_id,
                    finding.detail,
                    False,
                    "kept: a container or image still uses it",
                )
            )
            continue
        if not store.layers.exists(layer_id):
            report.problems.append(
                Problem(
                    finding.kind, layer_id, finding.detail, True, "removed with a damaged parent"
                )
            )
            continue
        try:
            below = store.layers.get(layer_id).parent
            report.removed_layers += scan_mod.remove_layer_tree(store, layer_id)
            if below is not None and store.layers.exists(below):
                report.removed_layers += store.collect_layers(below)
        except (SkiffError, OSError) as exc:
            report.problems.append(
                Problem(finding.kind, layer_id, finding.detail, False, f"repair failed: {exc}")
            )
            continue
        report.problems.append(
            Problem(finding.kind, layer_id, finding.detail, True, "layer removed")
        )
    # removed images may have left healthy layers below their damage unused
    for image in images:
        if image.id not in report.removed_images:
            continue
        for layer_id in _chain_ids(store, image.top_layer):
            if layer_id not in damaged and store.layers.exists(layer_id):
                report.removed_layers += store.collect_layers(layer_id)
                break


def _stands_on(store: Store, top: str | None, damaged: set[str]) -> bool:
    return any(layer_id in damaged for layer_id in _chain_ids(store, top))


def _chain_ids(store: Store, top: str | None) -> list[str]:
    """``top`` and its ancestors by their rows (stops where a row is missing)."""
    out: list[str] = []
    current = top
    while current is not None and current not in out:
        out.append(current)
        try:
            current = store.layers.get(current).parent
        except LayerUnknown:
            current = None
    return out


def _drop_container(store: Store, container_id: str, options: CheckOptions) -> None:
    if options.remove_container is not None:
        options.remove_container(container_id)
        if store.containers.find(container_id) is None:
            return
    try:
        store.delete_container(container_id)
    except LayerUnknown:
        store.containers.delete(container_id)


def _remove_unused(store: Store, finding: scan_mod.Finding, report: CheckReport) -> Problem:
    if store.layer_in_use(finding.subject) or not store.layers.exists(finding.subject):
        return Problem(finding.kind, finding.subject, finding.detail, True, "no longer unused")
    removed = store.collect_layers(finding.subject)
    report.removed_layers += removed
    return Problem(finding.kind, finding.subject, finding.detail, True, "layer removed")
