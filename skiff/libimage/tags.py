"""``skiff tag`` and ``skiff untag``: names of local images.

New names are normalized as podman normalizes them (``foo`` →
``localhost/foo:latest``: a name typed without a registry never pretends
to come from docker.io); a name belongs to one image at a time, so tagging
takes it away from the image that had it. Every name an image gains or
loses is recorded in its names history (``NamesHistory`` in inspect).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import ImageUnknown, InvalidReference
from skiff.libimage.layertree import record_names_history

if TYPE_CHECKING:
    from skiff.config import SystemContext


@dataclass(frozen=True)
class TagOptions:
    pass


@dataclass
class TagReport:
    image_id: str
    added: list[str] = field(default_factory=list)
    taken_from: dict[str, str] = field(default_factory=dict)
    """name → the image that had it before."""


@dataclass(frozen=True)
class UntagOptions:
    pass


@dataclass
class UntagReport:
    image_id: str
    removed: list[str] = field(default_factory=list)


def normalize_tag(text: str) -> str:
    """What podman stores for a name given to ``tag``: ``localhost/foo:latest``."""
    from skiff.libimage.names import local_name

    named = local_name(text)
    if named.digest is not None:
        raise InvalidReference(
            f"{text}: tag by digest not supported", "give NAME[:TAG]; digests name content"
        )
    return str(named)


def tag_image(
    ctx: SystemContext, image: str, names: list[str], options: TagOptions | None = None
) -> TagReport:
    """Add ``names`` to the local image ``image`` (ID, name or short name)."""
    from skiff.libimage.names import find_local_image
    from skiff.storage.store import Store

    wanted = list(dict.fromkeys(normalize_tag(n) for n in names))
    store = Store.open(ctx)
    try:
        target, _ = find_local_image(ctx, store, image)
        report = TagReport(target.id)
        for name in wanted:
            owner = store.images.by_name(name)
            if owner is not None and owner.id != target.id:
                record_names_history(store, owner.id, [name])
                report.taken_from[name] = owner.id
            if owner is None or owner.id != target.id:
                report.added.append(name)
        for name in report.added:
            # one call per name: names keep the order they were given in (by time added)
            store.images.add_names(target.id, [name])
        record_names_history(store, target.id, reversed(wanted))
        return report
    finally:
        store.close()


def untag_image(
    ctx: SystemContext, image: str, names: list[str], options: UntagOptions | None = None
) -> UntagReport:
    """Remove ``names`` from the image (all its names when ``names`` is empty).

    Names are normalized as for ``tag``; a name the image does not have is
    an error (podman's "tag not known"), and nothing is removed then.
    """
    from skiff.libimage.names import find_local_image
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        target, _ = find_local_image(ctx, store, image)
        if names:
            removing = list(dict.fromkeys(normalize_tag(n) for n in names))
            for name in removing:
                if name not in target.names:
                    raise ImageUnknown(
                        f"{name}: tag not known",
                        f"image {target.id[:12]} has: {', '.join(target.names) or 'no names'}",
                    )
        else:
            removing = list(target.names)
        report = UntagReport(target.id)
        for name in removing:
            if store.images.remove_name(target.id, name):
                report.removed.append(name)
        if report.removed:
            record_names_history(store, target.id, reversed(report.removed))
        return report
    finally:
        store.close()
