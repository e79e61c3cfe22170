"""Busybox test images, built from Debian's static ``/bin/busybox``.

The tests need a small, real, runnable image without network access, and
they need its digests to be stable: the same busybox binary and the same
arguments give byte-identical blobs (fixed mtimes, uid/gid 0, no user or
group names, sorted entries, gzip with mtime 0), so tests can compare
digests across runs and layer-sharing tests get shared layers for free.

The image is written as an OCI image layout (``oci-layout``,
``index.json`` with an ``org.opencontainers.image.ref.name`` per tag,
``blobs/sha256/...``) with skiff's own manifest types. Several tags can
live in one layout: building into an existing layout adds (or replaces)
the tag. The layer tar is *written* with ``tarfile``; nothing here
extracts one (skiff's own extraction lives in ``skiff.storage.archive``).

Layer contents: ``/bin/busybox``, one absolute symlink per applet (as
``busybox --install -s`` makes them), ``/etc/passwd`` and ``/etc/group``
(root, nobody, and ``www`` uid/gid 1000), empty ``/etc/hosts`` and
``/etc/resolv.conf`` (bind-mount targets), ``/tmp`` (1777), ``/root``
(0700), ``/var/www/index.html`` (for httpd tests), empty ``/dev``,
``/proc``, ``/sys``, ``/home``.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.manifest import Descriptor, ImageManifest, dumps_json
from skiff.oci.platform import Platform, host_platform

BUSYBOX = Path("/bin/busybox")
FIXED_MTIME = 1_700_000_000
"""2023-11-14T22:13:20Z: every tar entry and the config's ``created``."""
FIXED_CREATED = "2023-11-14T22:13:20Z"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INDEX_HTML = b"<html><body><h1>skiff busybox</h1></body></html>\n"

PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    b"www:x:1000:1000:www:/var/www:/bin/sh\n"
)
GROUP = b"root:x:0:\nnobody:x:65534:\nwww:x:1000:\n"


@dataclass(frozen=True)
class BusyboxImage:
    """An image written into an OCI layout.

    Fields: ``layout`` (the layout directory), ``tag``, ``manifest_digest``
    and ``manifest_size`` (of the manifest blob, as a registry will report
    it after an unconverted copy), ``config_digest``, ``layer_digests``
    (compressed, as the manifest lists them), ``layer_sizes``, ``diff_ids``
    (uncompressed, as the config lists them), ``platform``.
    """

    layout: Path
    tag: str
    manifest_digest: Digest
    manifest_size: int
    config_digest: Digest
    layer_digests: tuple[Digest, ...]
    layer_sizes: tuple[int, ...]
    diff_ids: tuple[Digest, ...]
    platform: Platform

    @property
    def reference(self) -> str:
        """``oci:LAYOUT:TAG``, as skopeo and skiff take it."""
        return f"oci:{self.layout}:{self.tag}"

    def blob_path(self, digest: Digest) -> Path:
        return self.layout / "blobs" / digest.algorithm / digest.hex

    def manifest_bytes(self) -> bytes:
        return self.blob_path(self.manifest_digest).read_bytes()

    def config_bytes(self) -> bytes:
        return self.blob_path(self.config_digest).read_bytes()


# --- layer tars ---------------------------------------------------------------


@dataclass(frozen=True)
class LayerEntry:
    """One tar member to be: its type, mode, and content or link target."""

    kind: bytes  # tarfile.DIRTYPE / REGTYPE / SYMTYPE
    mode: int
    data: bytes = b""
    target: str = ""


def _norm(path: str) -> str:
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"invalid image path {path!r}")
    return "/".join(parts)


def _add_parents(entries: dict[str, LayerEntry], path: str) -> None:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        parent = "/".join(parts[:i])
        entries.setdefault(parent, LayerEntry(tarfile.DIRTYPE, 0o755))


def _file_mode(data: bytes) -> int:
    """Scripts (``#!``) are executable; everything else is 0644."""
    return 0o755 if data.startswith(b"#!") else 0o644


def _applets(busybox: Path) -> list[str]:
    listing = subprocess.run(
        [str(busybox), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    return sorted({_norm(line) for line in listing.splitlines() if line.strip()})


def busybox_entries(
    busybox: Path = BUSYBOX, extra_files: Mapping[str, bytes] | None = None
) -> dict[str, LayerEntry]:
    """The base layer's entries (path without leading "/" → entry)."""
    entries: dict[str, LayerEntry] = {}
    for directory, mode in (
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("sbin", 0o755),
        ("var", 0o755),
        ("var/www", 0o755),
    ):
        entries[directory] = LayerEntry(tarfile.DIRTYPE, mode)
    entries["bin/busybox"] = LayerEntry(tarfile.REGTYPE, 0o755, busybox.read_bytes())
    for applet in _applets(busybox):
        if applet == "bin/busybox":
            continue
        _add_parents(entries, applet)
        entries[applet] = LayerEntry(tarfile.SYMTYPE, 0o777, target="/bin/busybox")
    for path, data in (
        ("etc/passwd", PASSWD),
        ("etc/group", GROUP),
        ("etc/hosts", b""),
        ("etc/resolv.conf", b""),
        ("var/www/index.html", INDEX_HTML),
    ):
        entries[path] = LayerEntry(tarfile.REGTYPE, 0o644, data)
    for path, data in (extra_files or {}).items():
        name = _norm(path)
        _add_parents(entries, name)
        entries[name] = LayerEntry(tarfile.REGTYPE, _file_mode(data), data)
    return entries


def files_entries(files: Mapping[str, bytes]) -> dict[str, LayerEntry]:
    """Entries of a layer that adds ``files`` (and their parent dirs)."""
    entries: dict[str, LayerEntry] = {}
    for path, data in files.items():
        name = _norm(path)
        _add_parents(entries, name)
        entries[name] = LayerEntry(tarfile.REGTYPE, _file_mode(data), data)
    return entries


def layer_tar(entries: Mapping[str, LayerEntry]) -> bytes:
    """A deterministic uncompressed tar of ``entries``, sorted by path."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            entry = entries[name]
            info = tarfile.TarInfo(name)
            info.type = entry.kind
            info.mode = entry.mode
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.kind == tarfile.SYMTYPE:
                info.linkname = entry.target
                tar.addfile(info)
            elif entry.kind == tarfile.REGTYPE:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


# --- the layout -----------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_blob(layout: Path, data: bytes) -> Digest:
    digest = sha256_of(data)
    path = layout / "blobs" / digest.algorithm / digest.hex
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)
    return digest


def _tag_layout(layout: Path, manifest: Descriptor, tag: str) -> None:
    """Point ``tag`` at ``manifest`` in index.json (replacing an older entry)."""
    oci_layout = layout / "oci-layout"
    if not oci_layout.exists():
        _atomic_write(
            oci_layout, json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode()
        )
    index_path = layout / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    if index_path.exists():
        index = json.loads(index_path.read_bytes())
    kept = [
        m
        for m in index.get("manifests", [])
        if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) != tag
    ]
    entry = Descriptor(
        media_type=mt.OCI_MANIFEST,
        digest=manifest.digest,
        size=manifest.size,
        annotations={REF_NAME_ANNOTATION: tag},
    )
    index["manifests"] = [*kept, entry.to_json()]
    _atomic_write(index_path, dumps_json(index))


def _merge_config(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Top-level keys replace; ``config`` is merged one level deep."""
    merged = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if key == "config" and isinstance(value, Mapping):
            merged["config"].update(copy.deepcopy(dict(value)))
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_image(
    dest: Path,
    layers: Sequence[bytes],
    *,
    tag: str = "latest",
    config_overrides: Mapping[str, Any] | None = None,
    history: Sequence[str] | None = None,
) -> BusyboxImage:
    """Write an image of uncompressed layer tars ``layers`` into the layout ``dest``.

    Each layer is gzip-compressed (level 6, mtime 0); the config gets
    ``Cmd ["sh"]``, the default PATH and the host platform, then
    ``config_overrides`` (see ``_merge_config``).
    """
    dest.mkdir(parents=True, exist_ok=True)
    platform = host_platform()
    diff_ids: list[Digest] = []
    layer_descs: list[Descriptor] = []
    for tar in layers:
        diff_ids.append(Digest("sha256", hashlib.sha256(tar).hexdigest()))
        compressed = gzip.compress(tar, compresslevel=6, mtime=0)
        digest = _write_blob(dest, compressed)
        layer_descs.append(Descriptor(mt.OCI_LAYER_GZIP, digest, len(compressed)))
    base: dict[str, Any] = {
        "created": FIXED_CREATED,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        "history": [
            {"created": FIXED_CREATED, "created_by": line}
            for line in (history or [f"skiff.testing layer {i}" for i in range(len(layers))])
        ],
    }
    if platform.variant:
        base["variant"] = platform.variant
    config = dumps_json(_merge_config(base, config_overrides))
    config_digest = _write_blob(dest, config)
    manifest = ImageManifest(
        media_type=mt.OCI_MANIFEST,
        config=Descriptor(mt.OCI_CONFIG, config_digest, len(config)),
        layers=layer_descs,
    ).to_bytes()
    manifest_digest = _write_blob(dest, manifest)
    _tag_layout(dest, Descriptor(mt.OCI_MANIFEST, manifest_digest, len(manifest)), tag)
    return BusyboxImage(
        layout=dest,
        tag=tag,
        manifest_digest=manifest_digest,
        manifest_size=len(manifest),
        config_digest=config_digest,
        layer_digests=tuple(d.digest for d in layer_descs),
        layer_sizes=tuple(d.size for d in layer_descs),
        diff_ids=tuple(diff_ids),
        platform=platform,
    )


def build_busybox_layout(
    dest: Path,
    tag: str = "latest",
    extra_files: dict[str, bytes] | None = None,
    config_overrides: dict[str, Any] | None = None,
    busybox: Path = BUSYBOX,
) -> BusyboxImage:
    """A one-layer busybox image tagged ``tag`` in the OCI layout ``dest``.

    ``extra_files`` (image path → content) are added to (or replace files
    of) the layer; content starting with ``#!`` is made executable.
    ``config_overrides`` replace top-level config keys, except ``config``
    which is merged (``{"config": {"User": "www"}}`` keeps ``Cmd``).
    """
    tar = layer_tar(busybox_entries(busybox, extra_files))
    return write_image(
        dest,
        [tar],
        tag=tag,
        config_overrides=config_overrides,
        history=["COPY busybox / # skiff.testing.busybox"],
    )


def build_layered_layout(
    dest: Path,
    layers: int | Sequence[Mapping[str, bytes]],
    tag: str = "latest",
    *,
    with_busybox: bool = True,
    config_overrides: dict[str, Any] | None = None,
    busybox: Path = BUSYBOX,
) -> BusyboxImage:
    """An image of several layers, for layer-sharing tests.

    ``layers`` is a count N (layer i adds ``/layers/i.txt`` holding
    ``"layer i\\n"``) or one mapping of files per layer. With
    ``with_busybox`` the busybox layer comes first. Equal arguments give
    equal layer digests, so two images built with a common prefix share
    those layers.
    """
    if isinstance(layers, int):
        contents: list[Mapping[str, bytes]] = [
            {f"layers/{i}.txt": f"layer {i}\n".encode()} for i in range(layers)
        ]
    else:
        contents = list(layers)
    tars = [layer_tar(busybox_entries(busybox))] if with_busybox else []
    history = ["COPY busybox / # skiff.testing.busybox"] if with_busybox else []
    for files in contents:
        tars.append(layer_tar(files_entries(files)))
        history.append("COPY " + " ".join(sorted(files)) + " / # skiff.testing.busybox")
    if not tars:
        raise ValueError("an image needs at least one layer")
    return write_image(dest, tars, tag=tag, config_overrides=config_overrides, history=history)
