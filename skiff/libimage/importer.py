"""``import``: a filesystem tarball becomes a one-layer image (podman import).

The tarball (a file, an http(s) URL, or what the CLI spooled from stdin)
is the image's only layer, as it is: plain, gzip or zstd. Its config is
built from the ``--change`` instructions, ``--message`` and the platform
flags, as podman builds it (``created`` now, one history entry ``ADD
file:<diff ID> in /``). The image is then written through the copy engine
like any other: the layer, config and an OCI manifest are laid out as a
private OCI layout in ``ctx.tmp_dir`` (the tarball hard-linked in when the
file system allows, else copied) and copied into ``containers-storage:``,
so the store verifies and records it exactly as it does a pull.

``--change`` takes podman's Dockerfile-like instructions: CMD, ENTRYPOINT
(a JSON array, or a shell string run with ``/bin/sh -c``), ENV (key=value),
EXPOSE (PORT[/tcp|udp]), LABEL (key=value), USER, VOLUME (JSON array or
space separated), WORKDIR (relative ones are joined to the previous),
STOPSIGNAL (a name or number, stored as its number) and ONBUILD. The
instruction and its value are separated by a space or by ``=``
(``CMD=/bin/sh``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from skiff.errors import ImageError, InvalidArchive, UsageError
from skiff.image.copy import CopyOptions, copy_image
from skiff.libimage.names import local_name, storage_reference
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest

if TYPE_CHECKING:
    from skiff.config import SystemContext

CHUNK = 1 << 20

# the order of Go's ImageConfig fields, so configs read like podman's
_CONFIG_ORDER = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "OnBuild",
)


@dataclass
class ImportOptions:
    changes: list[str] = field(default_factory=list)
    message: str = ""
    os: str | None = None
    arch: str | None = None
    variant: str | None = None
    copy: CopyOptions = field(default_factory=CopyOptions)


@dataclass(frozen=True)
class ImportReport:
    image_id: str
    name: str | None


def import_image(
    ctx: SystemContext, source: str, name: str | None = None, options: ImportOptions | None = None
) -> ImportReport:
    """Import the tarball at ``source`` (a path or an http(s) URL) as image ``name``."""
    options = options or ImportOptions()
    container_config = config_from_changes(options.changes)
    named = local_name(name) if name else None
    if named is not None and named.digest is not None:
        raise UsageError(f"cannot import as {name}: give NAME[:TAG], not a digest")
    with tempfile.TemporaryDirectory(prefix="skiff-import-", dir=ctx.tmp_dir) as tmp:
        layout = Path(tmp) / "layout"
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layer_path = blobs / "layer.tmp"
        if source.startswith(("http://", "https://")):
            _download(source, layer_path)
        else:
            _place(Path(source), layer_path)
        layer = _describe_layer(layer_path, source)
        layer_path.rename(blobs / layer.digest.hex)
        config = _config(layer.diff_id, container_config, options)
        config_digest = _write_blob(blobs, config)
        manifest = _manifest(config_digest, len(config), layer)
        manifest_digest = _write_blob(blobs, manifest)
        (layout / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": str(manifest_digest),
                    "size": len(manifest),
                }
            ],
        }
        (layout / "index.json").write_bytes(_go_json(index))
        from skiff.image import transports

        src = transports.get("oci").parse_reference(str(layout))
        copy_image(src, storage_reference(named), options.copy, ctx, ctx)
    return ImportReport(config_digest.hex, str(named) if named is not None else None)


# --- the tarball ----------------------------------------------------------------


def _place(path: Path, target: Path) -> None:
    """Hard-link the user's file into the layout (same file system), else copy it."""
    try:
        if not path.exists():
            raise ImageError(f"cannot import {path}: no such file", "check the path")
        if not path.is_file():
            raise ImageError(
                f"cannot import {path}: not a file",
                "give a tarball, an http(s) URL, or - for stdin",
            )
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
    except FileNotFoundError as exc:
        raise ImageError(f"cannot import {path}: no such file", "check the path") from exc
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from exc


def _download(url: str, target: Path) -> None:
    import urllib3

    http = urllib3.PoolManager()
    try:
        response = http.request("GET", url, preload_content=False, timeout=60.0, retries=3)
    except urllib3.exceptions.HTTPError as exc:
        raise ImageError(f"cannot download {url}: {exc}", "check the URL") from exc
    try:
        if response.status != 200:
            raise ImageError(
                f"cannot download {url}: the server answered {response.status}",
                "check the URL",
            )
        with target.open("wb") as out:
            for chunk in response.stream(CHUNK):
                out.write(chunk)
    except urllib3.exceptions.HTTPError as exc:
        raise ImageError(f"downloading {url} failed: {exc}", "retry") from exc
    finally:
        response.release_conn()
        http.clear()


@dataclass(frozen=True)
class _Layer:
    digest: Digest
    size: int
    diff_id: Digest
    compression: str


def _describe_layer(path: Path, shown: str) -> _Layer:
    """Digest and size of the blob, and its diff ID, in one read."""
    from skiff.image.transports.tarstream import decompressing_reader, sniff_compression

    with path.open("rb") as f:
        compression = sniff_compression(f.read(8))
        f.seek(0)
        if compression not in ("", "gzip", "zstd"):
            raise InvalidArchive(
                f"cannot import {shown}: it is {compression}-compressed",
                "layers may be plain, gzip or zstd; decompress it first",
            )
        blob_hash = hashlib.sha256()
        tar_hash = blob_hash if not compression else hashlib.sha256()
        size = 0

        class _Hashing:
            def read(self, n: int = -1, /) -> bytes:
                nonlocal size
                data = f.read(n)
                blob_hash.update(data)
                size += len(data)
                return data

        reader = _Hashing()
        try:
            if compression:
                plain = decompressing_reader(reader, compression)
                try:
                    while chunk := plain.read(CHUNK):
                        tar_hash.update(chunk)
                finally:
                    plain.close()
                while reader.read(CHUNK):  # whatever follows the compressed stream
                    pass
            else:
                while reader.read(CHUNK):
                    pass
        except (OSError, EOFError, ValueError) as exc:
            raise InvalidArchive(
                f"cannot import {shown}: its {compression} data is damaged: {exc}"
            ) from exc
    if size == 0:
        raise InvalidArchive(f"cannot import {shown}: the file is empty", "give a tarball")
    return _Layer(
        Digest("sha256", blob_hash.hexdigest()),
        size,
        Digest("sha256", tar_hash.hexdigest()),
        compression,
    )


# --- config and manifest ------------------------------------------------------


def _go_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _write_blob(blobs: Path, data: bytes) -> Digest:
    digest = Digest.from_bytes(data)
    (blobs / digest.hex).write_bytes(data)
    return digest


def _timestamp() -> str:
    """Now as RFC 3339 with nanoseconds, UTC (Go's time.Time JSON form)."""
    ns = time.time_ns()
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _config(diff_id: Digest, container: dict[str, Any], options: ImportOptions) -> bytes:
    from skiff.oci.platform import host_platform

    host = host_platform()
    created = _timestamp()
    config: dict[str, Any] = {"created": created}
    config["architecture"] = options.arch or host.architecture
    config["os"] = options.os or host.os
    variant = (
        options.variant
        if options.variant is not None
        else (host.variant if not options.arch else "")
    )
    if variant:
        config["variant"] = variant
    if container:
        config["config"] = container
    config["rootfs"] = {"type": "layers", "diff_ids": [str(diff_id)]}
    history: dict[str, Any] = {
        "created": created,
        "created_by": f"/bin/sh -c #(nop) ADD file:{diff_id.hex} in /",
    }
    if options.message:
        history["comment"] = options.message
    config["history"] = [history]
    return _go_json(config)


def _manifest(config_digest: Digest, config_size: int, layer: _Layer) -> bytes:
    return _go_json(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": str(config_digest),
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": mt.layer_type(True, layer.compression),
                    "digest": str(layer.digest),
                    "size": layer.size,
                }
            ],
        }
    )


# --- --change -------------------------------------------------------------------


def config_from_changes(changes: list[str]) -> dict[str, Any]:
    """The container config (``config`` object) the ``--change`` instructions ask for."""
    config: dict[str, Any] = {}
    for change in changes:
        instruction, value = _split_change(change)
        handler = _HANDLERS.get(instruction)
        if handler is None:
            raise UsageError(
                f"invalid change {change!r} - invalid instruction {instruction}",
                f"supported: {', '.join(sorted(_HANDLERS))}",
            )
        handler(config, value, change)
    return {key: config[key] for key in _CONFIG_ORDER if key in config}


def _split_change(change: str) -> tuple[str, str]:
    key, sep, value = change.partition(" ")
    if not sep:
        key, sep, value = change.partition("=")
        if not sep:
            raise UsageError(
                f"invalid change {change!r} - must be formatted as KEY VALUE",
                'e.g. --change "CMD /bin/sh" or --change CMD=/bin/sh',
            )
    return key.strip().upper(), value.strip()


def _json_list(value: str) -> list[str] | None:
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return parsed
    return None


def _unquote(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text


def _user(config: dict[str, Any], value: str, change: str) -> None:
    if not value:
        raise UsageError(f"invalid change {change!r} - must provide a value to USER")
    config["User"] = value


def _expose(config: dict[str, Any], value: str, change: str) -> None:
    number, _, proto = value.partition("/")
    if proto and "/" in proto:
        raise UsageError(
            f"invalid change {change!r} - EXPOSE port must be formatted as PORT[/PROTO]"
        )
    if not number.isdigit() or not 0 < int(number) <= 65535:
        raise UsageError(f"invalid change {change!r} - EXPOSE port must be a valid port number")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp"):
        raise UsageError(f"invalid change {change!r} - EXPOSE protocol must be TCP or UDP")
    config.setdefault("ExposedPorts", {})[f"{int(number)}/{proto}"] = {}


def _env(config: dict[str, Any], value: str, change: str) -> None:
    key, _, val = value.partition("=")
    key, val = _unquote(key), _unquote(val)
    if not key:
        raise UsageError(f"invalid change {change!r} - ENV must have at least one argument")
    config.setdefault("Env", []).append(f"{key}={val}")


def _entrypoint(config: dict[str, Any], value: str, change: str) -> None:
    parsed = _json_list(value)
    if parsed is not None:
        config["Entrypoint"] = parsed
    else:
        config["Entrypoint"] = ["/bin/sh", "-c", value] if value else []


def _cmd(config: dict[str, Any], value: str, change: str) -> None:
    parsed = _json_list(value)
    if parsed is not None:
        config["Cmd"] = parsed
    else:
        config["Cmd"] = ["/bin/sh", "-c", value] if value else ["/bin/sh", "-c"]


def _volume(config: dict[str, Any], value: str, change: str) -> None:
    paths = _json_list(value)
    if paths is None:
        paths = value.split(" ")
    if not paths:
        raise UsageError(
            f"invalid change {change!r} - must provide at least one argument to VOLUME"
        )
    for path in paths:
        if not path:
            raise UsageError(f"invalid change {change!r} - VOLUME paths must not be empty")
        config.setdefault("Volumes", {})[path] = {}


def _workdir(config: dict[str, Any], value: str, change: str) -> None:
    if not value:
        raise UsageError(f"invalid change {change!r} - must provide a non-empty WORKDIR")
    joined = PurePosixPath(config.get("WorkingDir", "")) / value
    config["WorkingDir"] = os.path.normpath(str(joined))


def _label(config: dict[str, Any], value: str, change: str) -> None:
    key, sep, val = value.partition("=")
    if not sep:
        raise UsageError(f"invalid change {change!r} - LABEL must be formatted key=value")
    key, val = _unquote(key), _unquote(val)
    if not key:
        raise UsageError(f"invalid change {change!r} - LABEL must have a non-empty key")
    config.setdefault("Labels", {})[key] = val


def parse_signal(text: str) -> int:
    """A signal name (``SIGTERM``, ``term``, ``RTMIN+3``) or number, as its number."""
    value = text.strip()
    if value.isdigit():
        number = int(value)
        if not 0 < number <= signal.SIGRTMAX:
            raise ValueError(f"invalid signal number {number}")
        return number
    name = value.upper().removeprefix("SIG")
    for base_name, base in (("RTMIN", signal.SIGRTMIN), ("RTMAX", signal.SIGRTMAX)):
        if name.startswith(base_name):
            rest = name[len(base_name) :]
            try:
                number = base + int(rest) if rest else int(base)
            except ValueError:
                raise ValueError(f"invalid signal {text!r}") from None
            if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                raise ValueError(f"invalid signal {text!r}")
            return int(number)
    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None


def _stopsignal(config: dict[str, Any], value: str, change: str) -> None:
    try:
        config["StopSignal"] = str(parse_signal(value))
    except ValueError as exc:
        raise UsageError(
            f"invalid change {change!r} - STOPSIGNAL must be given a valid signal: {exc}"
        ) from exc


def _onbuild(config: dict[str, Any], value: str, change: str) -> None:
    if not value:
        raise UsageError(f"invalid change {change!r} - ONBUILD must be given an argument")
    config.setdefault("OnBuild", []).append(value)


_HANDLERS = {
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "ENV": _env,
    "EXPOSE": _expose,
    "LABEL": _label,
    "ONBUILD": _onbuild,
    "STOPSIGNAL": _stopsignal,
    "USER": _user,
    "VOLUME": _volume,
    "WORKDIR": _workdir,
}
