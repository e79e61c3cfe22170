"""The OCI image layout: ``oci-layout``, ``index.json``, ``blobs/ALG/HEX``.

Shared by ``oci:`` (a layout directory) and ``oci-archive:`` (a tar of
one): reference syntax, index.json reading and image selection, blob
access, and the reachability walk that decides which blobs an image owns.

References are ``PATH[:IMAGE]`` split at the *first* colon, so a path
cannot contain ":" (containers/image's rule on Unix). IMAGE is matched
against the ``org.opencontainers.image.ref.name`` annotation of index.json
entries; an empty IMAGE means "the only entry" when reading. ``PATH:@N``
selects entry N of index.json when reading (newer containers/image).

index.json is read as raw JSON and rewritten by editing its ``manifests``
list, so fields skiff does not know (on the index or on entries) survive.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from skiff.errors import BlobUnknown, ImageError, ImageNotFound, InvalidReference, ManifestError
from skiff.image.transports.localfs import os_error, path_namespaces, require_path, resolve_path
from skiff.image.types import ClosableReader
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest
from skiff.oci.manifest import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    guess_media_type,
    loads_json,
)

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
LAYOUT_FILE_CONTENT = b'{"imageLayoutVersion":"1.0.0"}'
MAX_INDEX_SIZE = 64 * 1024 * 1024
"""index.json lists every image of a layout; allow far more than one manifest."""

# containers/image's pattern for ref names (OCI annotations.md grammar)
_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
if TYPE_CHECKING:
    from skiff.oci.reference import NamedReference

_REF_NAME_RE = re.compile(rf"\A{_COMPONENT}(?:/{_COMPONENT})*\Z", re.ASCII)

_IMAGE_TYPES = (mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_V2S2, mt.DOCKER_LIST)


# --- references ----------------------------------------------------------------


def parse_layout_reference(text: str, transport: str) -> tuple[str, str, int | None]:
    """Split ``PATH[:IMAGE]`` or ``PATH:@N`` into (path, image, source index)."""
    path, _, image = text.partition(":")
    require_path(path, transport)
    if image.startswith("@"):
        digits = image[1:]
        if not digits.isascii() or not digits.isdigit():
            raise InvalidReference(
                f"invalid {transport}: reference {text!r}: source index {image!r} is not a "
                "non-negative integer",
                f"write {transport}:PATH:@N to pick entry N of index.json",
            )
        return path, "", int(digits)
    validate_image_name(image, text, transport)
    return path, image, None


def validate_image_name(image: str, text: str, transport: str) -> None:
    if image and not _REF_NAME_RE.match(image):
        raise InvalidReference(
            f"invalid {transport}: reference {text!r}: {image!r} is not a valid image name",
            "names are [A-Za-z0-9] components joined by '-', '.', '_', ':', '@', '+' or '/'",
        )


def format_layout_reference(path: str, image: str, source_index: int | None) -> str:
    if source_index is not None:
        return f"{path}:@{source_index}"
    return f"{path}:{image}"


@dataclass(frozen=True)
class LayoutReference:
    """What an ``oci:`` and an ``oci-archive:`` reference are alike: PATH (a
    layout directory, or a tar of one) as typed, one index.json entry by
    IMAGE name or by source index @N (never both), and the resolved path,
    which is the policy.json identity (without IMAGE: containers/image's
    reasoning, see the oci: transport). Each transport's subclass names
    itself (``NAME``), the PATH in its hints (``PATH_WORD``) and opens its
    images.
    """

    NAME: ClassVar[str]
    PATH_WORD: ClassVar[str]

    path: str
    image: str = ""
    source_index: int | None = None
    resolved: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.image and self.source_index is not None:
            raise InvalidReference(
                f"invalid {self.NAME}: reference: both an image name {self.image!r} and a source "
                f"index @{self.source_index}",
                f"use one of {self.PATH_WORD}:NAME or {self.PATH_WORD}:@N",
            )
        if not self.resolved:
            object.__setattr__(self, "resolved", resolve_path(self.path))

    def string_within_transport(self) -> str:
        return format_layout_reference(self.path, self.image, self.source_index)

    def __str__(self) -> str:
        return f"{self.NAME}:{self.string_within_transport()}"

    def docker_reference(self) -> NamedReference | None:
        return None

    def policy_configuration_identity(self) -> str:
        return self.resolved

    def policy_configuration_namespaces(self) -> list[str]:
        return path_namespaces(self.resolved)

    def require_no_source_index(self) -> None:
        """A destination writes one image by name (or the only one): never @N."""
        if self.source_index is not None:
            raise InvalidReference(
                f"{self}: a destination cannot be a source index @{self.source_index}",
                f"name the image to write with {self.PATH_WORD}:NAME, or give {self.PATH_WORD} "
                "alone",
            )


# --- reading -------------------------------------------------------------------


class LayoutReader(Protocol):
    """Read access to one layout, wherever its files are (directory or tar)."""

    @property
    def label(self) -> str:
        """How messages name the layout, e.g. "OCI layout /tmp/x"."""
        ...

    def read_index(self) -> bytes:
        """The raw index.json; ImageNotFound if there is none."""
        ...

    def open_blob(self, digest: Digest) -> tuple[ClosableReader, int]:
        """A stream of the blob and its size; BlobUnknown if missing."""
        ...

    def close(self) -> None: ...


def missing_blob(label: str, digest: Digest) -> BlobUnknown:
    return BlobUnknown(
        f"blob {digest} is missing from {label}",
        "the layout is incomplete; copy the image into it again",
    )


def read_blob_bytes(reader: LayoutReader, digest: Digest, limit: int, what: str) -> bytes:
    """A small blob (manifest, index) read whole, refusing sizes above ``limit``."""
    stream, size = reader.open_blob(digest)
    try:
        if size > limit:
            raise ManifestError(
                f"{what} {digest} in {reader.label} is {size} bytes, above the {limit}-byte limit"
            )
        data = stream.read(limit + 1)
    except OSError as exc:
        raise os_error(exc, f"cannot read {what} {digest} in {reader.label}") from exc
    finally:
        stream.close()
    if len(data) > limit:
        raise ManifestError(f"{what} {digest} in {reader.label} is above the {limit}-byte limit")
    return data


def parse_index_json(raw: bytes, label: str) -> dict[str, Any]:
    """index.json as a JSON object, checked enough to edit and read it safely."""
    where = f"index.json of {label}"
    obj = loads_json(raw, where)
    if not isinstance(obj, dict):
        raise ManifestError(f"invalid {where}: not a JSON object", "the layout is corrupt")
    if obj.get("schemaVersion") != 2:
        raise ManifestError(
            f"invalid {where}: schemaVersion is {obj.get('schemaVersion')!r}, expected 2",
            "the layout is corrupt or not an OCI layout",
        )
    entries = obj.get("manifests")
    if entries is None:
        obj["manifests"] = []
    elif not isinstance(entries, list):
        raise ManifestError(f"invalid {where}: 'manifests' is not a list", "the layout is corrupt")
    return obj


def index_descriptors(obj: dict[str, Any], label: str) -> list[Descriptor]:
    where = f"index.json of {label}"
    try:
        return [Descriptor.from_json(entry, where) for entry in obj["manifests"]]
    except ImageError as exc:
        raise ManifestError(f"invalid {where}: {exc.message}", "the layout is corrupt") from exc


def ref_name(desc: Descriptor) -> str:
    return desc.annotations.get(REF_NAME_ANNOTATION, "")


def select_descriptor(
    entries: list[Descriptor], image: str, source_index: int | None, label: str, shown: str
) -> Descriptor:
    """The index.json entry a reference names (containers/image's rules).

    ``shown`` is the reference as the user wrote it, for messages.
    """
    if source_index is not None:
        if source_index >= len(entries):
            raise ImageNotFound(
                f"no image @{source_index} in {label}: index.json has {len(entries)} entries",
                "entries are numbered from 0",
            )
        return entries[source_index]
    if not image:
        if len(entries) == 1:
            return entries[0]
        names = sorted({ref_name(e) for e in entries if ref_name(e)})
        if not entries:
            raise ImageNotFound(f"{label} holds no images (index.json is empty)")
        listed = ", ".join(names) if names else "none have names"
        raise ImageNotFound(
            f"{label} holds {len(entries)} images; choose one for {shown}",
            f"append :NAME (names: {listed}) or :@N for entry N",
        )
    unsupported: list[str] = []
    for entry in entries:
        if ref_name(entry) != image:
            continue
        kind = entry.media_type or mt.OCI_MANIFEST
        if kind in _IMAGE_TYPES:
            return entry
        unsupported.append(kind)
    if unsupported:
        raise ManifestError(
            f"{shown}: {image!r} in {label} names entries of unsupported media types "
            f"{', '.join(unsupported)}",
            "only image manifests and indexes can be read",
        )
    names = sorted({ref_name(e) for e in entries if ref_name(e)})
    raise ImageNotFound(
        f"no image named {image!r} in {label}",
        f"names in index.json: {', '.join(names)}" if names else "index.json names no images",
    )


def check_layout_version(raw: bytes, where: str) -> None:
    """Refuse an oci-layout file of another major version.

    A missing oci-layout file is tolerated by the callers: some tools (and
    hand-made layouts) omit it, and its absence does not make index.json
    unreadable; only a version skiff does not know is an error.
    """
    obj = loads_json(raw, where)
    version = obj.get("imageLayoutVersion") if isinstance(obj, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise ManifestError(
            f"{where}: unsupported imageLayoutVersion {version!r}",
            "skiff reads OCI image layouts of version 1.x",
        )


class DirectoryLayout:
    """A layout in a directory, with blobs optionally in a shared blob directory."""

    def __init__(self, root: Path, shared_blob_dir: Path | None = None) -> None:
        self.root = root
        self.shared_blob_dir = shared_blob_dir

    @property
    def label(self) -> str:
        return f"OCI layout {self.root}"

    @property
    def blobs_root(self) -> Path:
        return self.shared_blob_dir if self.shared_blob_dir is not None else self.root / BLOBS_DIR

    def blob_path(self, digest: Digest) -> Path:
        return self.blobs_root / digest.algorithm / digest.hex

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    def read_index(self) -> bytes:
        try:
            with open(self.index_path, "rb") as f:
                data = f.read(MAX_INDEX_SIZE + 1)
        except FileNotFoundError as exc:
            if not self.root.exists():
                raise ImageNotFound(
                    f"no OCI layout at {self.root}: the directory does not exist",
                    "check the path; it is relative to the current directory",
                ) from exc
            raise ImageNotFound(
                f"{self.root} is not an OCI layout: it has no index.json",
                "give the directory that holds oci-layout and index.json",
            ) from exc
        except OSError as exc:
            raise os_error(exc, f"cannot read {self.index_path}") from exc
        if len(data) > MAX_INDEX_SIZE:
            raise ManifestError(f"{self.index_path} is above the {MAX_INDEX_SIZE}-byte limit")
        self._check_layout_file()
        return data

    def _check_layout_file(self) -> None:
        try:
            with open(self.root / LAYOUT_FILE, "rb") as f:
                raw = f.read(4096)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise os_error(exc, f"cannot read {self.root / LAYOUT_FILE}") from exc
        check_layout_version(raw, str(self.root / LAYOUT_FILE))

    def open_blob(self, digest: Digest) -> tuple[ClosableReader, int]:
        path = self.blob_path(digest)
        try:
            f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except FileNotFoundError as exc:
            raise missing_blob(self.label, digest) from exc
        except OSError as exc:
            raise os_error(exc, f"cannot open blob {digest} in {self.label}") from exc
        return f, os.fstat(f.fileno()).st_size

    def has_blob(self, digest: Digest) -> int | None:
        """The blob's size if present."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, f"cannot look up blob {digest} in {self.label}") from exc

    def close(self) -> None:
        pass


# --- reachability ------------------------------------------------------------------


def children(raw: bytes, media_type: str) -> list[Descriptor]:
    """Descriptors a manifest or index refers to; [] if it is neither.

    Used to decide which blobs an image owns; a blob that does not parse
    as a manifest has no children (it is a config or layer).
    """
    kind = media_type or guess_media_type(raw)
    if kind not in (mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_V2S2, mt.DOCKER_LIST):
        return []
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(obj, dict):
        return []
    found: list[Any] = []
    if isinstance(obj.get("config"), dict):
        found.append(obj["config"])
    for key in ("layers", "manifests", "blobs"):
        items = obj.get(key)
        if isinstance(items, list):
            found.extend(items)
    if isinstance(obj.get("subject"), dict):
        found.append(obj["subject"])
    out: list[Descriptor] = []
    for item in found:
        try:
            out.append(Descriptor.from_json(item))
        except ImageError:
            continue
    return out


def reachable(
    roots: Iterable[Descriptor], read_small: Callable[[Digest], bytes | None]
) -> set[Digest]:
    """Every blob digest reachable from ``roots`` (missing blobs included).

    ``read_small`` returns a manifest-sized blob or None when it is missing
    or too large to be a manifest.
    """
    seen: set[Digest] = set()
    todo = list(roots)
    while todo:
        desc = todo.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        kind = desc.media_type
        if kind and kind not in (mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_V2S2, mt.DOCKER_LIST):
            continue
        if desc.size > MAX_MANIFEST_SIZE:
            continue
        raw = read_small(desc.digest)
        if raw is not None:
            todo.extend(children(raw, kind))
    return seen


def directory_reader(layout: DirectoryLayout) -> Callable[[Digest], bytes | None]:
    """``read_small`` for ``reachable`` over a directory layout."""

    def read_small(digest: Digest) -> bytes | None:
        try:
            with open(layout.blob_path(digest), "rb") as f:
                data = f.read(MAX_MANIFEST_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, f"cannot read blob {digest} in {layout.label}") from exc
        return data if len(data) <= MAX_MANIFEST_SIZE else None

    return read_small


def dump_index(obj: dict[str, Any]) -> bytes:
    """index.json as containers/image writes it: compact JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
