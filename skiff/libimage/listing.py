"""``skiff images``: the local images, filtered as podman filters them.

Returns one ``ImageSummary`` per image (podman's libimage summary, in the
store's order); expanding an image into one row per tag, sorting and
printing are the CLI's. Filters (``--filter KEY=VALUE``, all must match):

    dangling=true|false       no names and no child images
    intermediate=true|false   no names but child images (hidden without -a)
    reference=PATTERN         a name matches a path.Match pattern (see below)
    label=KEY | label=KEY=VALUE
    before=IMAGE | since=IMAGE   created before / after that image
    until=TIMESTAMP|DURATION  created before a time (RFC 3339, Unix seconds, or "10m")
    id=ID                     the ID starts with ID
    containers=true|false     used by containers or not
    readonly=true|false       skiff has no read-only image stores: false for all

A reference pattern matches a name if it matches the name with or without
its tag, with or without leading path components (``busybox`` matches
``docker.io/library/busybox:latest``, ``*/busybox`` matches
``library/busybox``); ``*`` does not cross ``/``, as in Go's path.Match.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from skiff.errors import UsageError
from skiff.libimage.layertree import LayerTree, created_of, names_history

if TYPE_CHECKING:
    from collections.abc import Callable

    from skiff.config import SystemContext
    from skiff.storage.images import Image
    from skiff.storage.store import Store

FILTER_KEYS = (
    "before",
    "containers",
    "dangling",
    "id",
    "intermediate",
    "label",
    "readonly",
    "reference",
    "since",
    "until",
)


@dataclass(frozen=True)
class ImageSummary:
    """One image as podman's ``images --format json`` describes it."""

    id: str
    parent_id: str
    names: tuple[str, ...]
    repo_digests: tuple[str, ...]
    digest: str
    size: int
    shared_size: int
    virtual_size: int
    labels: dict[str, str]
    containers: int
    dangling: bool
    read_only: bool
    names_history: tuple[str, ...]
    created: datetime


@dataclass(frozen=True)
class ListOptions:
    all: bool = False
    """Include intermediate images (no names, but other images built on them)."""
    filters: tuple[str, ...] = ()
    """``KEY=VALUE`` strings as typed after ``--filter``."""


@dataclass
class ListReport:
    images: list[ImageSummary] = field(default_factory=list)


def list_images(ctx: SystemContext, options: ListOptions) -> ListReport:
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        return list_images_in(ctx, store, options)
    finally:
        store.close()


def list_images_in(ctx: SystemContext, store: Store, options: ListOptions) -> ListReport:
    """``list_images`` over an open store (for callers that hold one)."""
    tree = LayerTree(store)
    checks = compile_filters(ctx, store, tree, options.filters)
    report = ListReport()
    for image in tree.images:
        if not options.all and tree.is_intermediate(image):
            continue
        if all(check(image) for check in checks):
            report.images.append(summarize(store, tree, image))
    return report


def summarize(store: Store, tree: LayerTree, image: Image) -> ImageSummary:
    parent = tree.parent(image)
    config = tree.config(image)
    size = tree.size(image)
    return ImageSummary(
        id=image.id,
        parent_id=parent.id if parent is not None else "",
        names=image.names,
        repo_digests=tuple(repo_digests(image)),
        digest=str(image.digest) if image.digest else "",
        size=size,
        shared_size=0,
        virtual_size=size,
        labels=config.labels if config is not None else {},
        containers=len(store.containers.by_image(image.id)),
        dangling=tree.is_dangling(image),
        read_only=False,
        names_history=tuple(names_history(store, image)),
        created=created_of(tree, image),
    )


def repo_digests(image: Image) -> list[str]:
    """``repository@digest`` for every repository the image is named in, sorted."""
    from skiff.storage.images import repository_of

    repositories = dict.fromkeys(repository_of(name) for name in image.names)
    digests = list(image.digests) or ([image.digest] if image.digest else [])
    return sorted({f"{repo}@{digest}" for repo in repositories for digest in digests})


# --- filters -----------------------------------------------------------------------


def compile_filters(
    ctx: SystemContext, store: Store, tree: LayerTree, filters: tuple[str, ...]
) -> list[Callable[[Image], bool]]:
    """One predicate per ``KEY=VALUE`` filter; a bad filter is a UsageError."""
    checks: list[Callable[[Image], bool]] = []
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep:
            raise UsageError(
                f'invalid image filter "{text}": must be in the format "filter=value"',
                f"filters: {', '.join(FILTER_KEYS)}",
            )
        checks.append(_compile_one(ctx, store, tree, key, value))
    return checks


def _bool_value(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise UsageError(f'invalid image filter "{key}={value}": {value!r} is not a boolean')


def _compile_one(
    ctx: SystemContext, store: Store, tree: LayerTree, key: str, value: str
) -> Callable[[Image], bool]:
    if key == "dangling":
        wanted = _bool_value(key, value)
        return lambda image: tree.is_dangling(image) == wanted
    if key == "intermediate":
        wanted = _bool_value(key, value)
        return lambda image: tree.is_intermediate(image) == wanted
    if key == "readonly":
        wanted = _bool_value(key, value)
        return lambda image: not wanted
    if key == "containers":
        if value == "external":
            return lambda image: False
        wanted = _bool_value(key, value)
        return lambda image: bool(store.containers.by_image(image.id)) == wanted
    if key == "id":
        prefix = value.removeprefix("sha256:")
        return lambda image: image.id.startswith(prefix)
    if key == "label":
        label, has_value, expected = value.partition("=")
        return lambda image: _has_label(tree, image, label, expected if has_value else None)
    if key == "reference":
        return lambda image: any(reference_matches(value, name) for name in image.names)
    if key in ("before", "since"):
        from skiff.libimage.names import find_local_image

        other, _ = find_local_image(ctx, store, value)
        when = created_of(tree, other)
        if key == "before":
            return lambda image: created_of(tree, image) < when
        return lambda image: created_of(tree, image) > when
    if key == "until":
        limit = parse_until(value)
        return lambda image: created_of(tree, image).timestamp() < limit
    raise UsageError(f'unsupported image filter "{key}"', f"filters: {', '.join(FILTER_KEYS)}")


def _has_label(tree: LayerTree, image: Image, key: str, expected: str | None) -> bool:
    config = tree.config(image)
    labels = config.labels if config is not None else {}
    if key not in labels:
        return False
    return expected is None or labels[key] == expected


_DURATION_RE = re.compile(r"\A(?:(\d+(?:\.\d+)?)(h|m|s|ms))+\Z")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_until(value: str, now: float | None = None) -> float:
    """``until=``: Unix seconds, an RFC 3339 time, or a Go duration before now."""
    from skiff.libimage.layertree import parse_time

    current = time.time() if now is None else now
    try:
        return float(value)
    except ValueError:
        pass
    if _DURATION_RE.match(value):
        total = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART_RE.findall(value)
        )
        return current - total
    parsed = parse_time(value)
    if parsed is None:
        raise UsageError(
            f"invalid until filter {value!r}",
            "use Unix seconds, an RFC 3339 time, or a duration such as 24h",
        )
    return parsed.timestamp()


def reference_matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` (Go path.Match syntax) matches ``name`` as podman's reference filter does."""
    if not _valid_pattern(pattern):
        return False
    regex = re.compile(_translate(pattern))
    return any(regex.fullmatch(candidate) for candidate in _reference_candidates(name))


def _reference_candidates(name: str) -> list[str]:
    """``a/b/c:t`` → the name with and without tag, each with leading components dropped."""
    base = name.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    repo, tag = (base[:colon], base[colon + 1 :]) if colon > slash else (base, "")
    parts = repo.split("/")
    out: list[str] = []
    for i in range(len(parts)):
        suffix = "/".join(parts[i:])
        if tag:
            out.append(f"{suffix}:{tag}")
        out.append(suffix)
    return out


def _valid_pattern(pattern: str) -> bool:
    depth = 0
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    return depth == 0


def _translate(pattern: str) -> str:
    """Go's path.Match as a regular expression: ``*`` and ``?`` stay within one component."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append(f"[{'^' if negate else ''}{body}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def image_exists(ctx: SystemContext, name: str) -> bool:
    """Whether ``name`` (ID, ID prefix, name or short name) finds a local image."""
    from skiff.errors import ImageUnknown
    from skiff.libimage.names import find_local_image
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        find_local_image(ctx, store, name)
    except ImageUnknown:
        return False
    finally:
        store.close()
    return True
