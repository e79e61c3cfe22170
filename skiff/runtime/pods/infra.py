"""The infra container: the process that holds a pod's namespaces open.

Decision: skiff builds its own pause image, as podman does, rather than
bind-mounting catatonit into an empty rootfs. The image is one layer
holding Debian's statically linked ``/usr/bin/catatonit`` at
``/catatonit``, with ``Entrypoint ["/catatonit", "-P"]`` (pause mode: it
forks nothing, reaps what the pod's shared pid namespace orphans, and
exits on SIGTERM/SIGINT). An image keeps the infra container an ordinary
container of the store — it has storage, a record, a spec generated like
every other's, and it shows in ``ps -a`` and ``images`` like podman's
``localhost/podman-pause`` — so nothing in the runtime treats it
specially except the pod code.

The image is built the first time a pod needs it, into the store, under a
lock so that concurrent ``pod create`` calls build it once. Its tar entry
and config carry the binary's mtime as their time, so the same catatonit
always gives the same image ID; the tag carries a digest prefix of the binary
(``localhost/skiff-pause:0.1.0-1a2b3c4d``), so an upgraded catatonit
gives a new image instead of reusing a stale one. It is written through
the copy engine (an OCI layout in a temporary directory copied to
``containers-storage:``), the one way images enter the store; the trust
policy is not consulted because the image never came from anywhere.

The infra container never gets an oom_score_adj (the runtime design forbids
lowering it), rlimits are the container defaults (capped at what skiff
holds), and its hostname, DNS, /etc/hosts entries, sysctls, published ports
and networks are the pod's.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from skiff import __version__
from skiff.errors import ContainerError
from skiff.oci import mediatypes as mt
from skiff.runtime.engine import Runtime
from skiff.runtime.ocilayout import write_blob, write_image
from skiff.storage.images import Image

CATATONIT = Path("/usr/bin/catatonit")
PAUSE_REPOSITORY = "localhost/skiff-pause"
PAUSE_COMMAND = ("/catatonit", "-P")
_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _catatonit(path: Path = CATATONIT) -> tuple[bytes, int]:
    """The binary and its mtime (the image's time: the same binary, the same image)."""
    try:
        return path.read_bytes(), int(path.stat().st_mtime)
    except OSError as exc:
        raise ContainerError(
            f"cannot read {path} for the pod's infra image: {exc.strerror}",
            "install the catatonit package, or give --infra-image",
        ) from exc


def pause_image_name(binary: bytes) -> str:
    return f"{PAUSE_REPOSITORY}:{__version__}-{hashlib.sha256(binary).hexdigest()[:8]}"


def _rfc3339(seconds: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _layer(binary: bytes, mtime: int) -> bytes:
    """An uncompressed tar with /catatonit (root-owned, 0755, fixed mtime)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("catatonit")
        info.size = len(binary)
        info.mode = 0o755
        info.mtime = mtime
        info.uid = info.gid = 0
        tar.addfile(info, io.BytesIO(binary))
    return out.getvalue()


def _write_layout(layout: Path, binary: bytes, mtime: int) -> None:
    from skiff.oci.platform import host_platform

    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer = _layer(binary, mtime)
    created = _rfc3339(mtime)
    layer_digest = write_blob(blobs, layer)
    platform = host_platform()
    config = {
        "created": created,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": [_PATH_ENV], "Entrypoint": list(PAUSE_COMMAND)},
        "rootfs": {"type": "layers", "diff_ids": [str(layer_digest)]},
        "history": [{"created": created, "created_by": "skiff: pod infra (catatonit -P)"}],
    }
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    layers = [{"mediaType": mt.OCI_LAYER, "digest": str(layer_digest), "size": len(layer)}]
    write_image(layout, config_bytes, layers)


def _no_policy(source: object, manifest: bytes, manifest_type: str) -> None:
    """Built here from a local binary: there is no origin for a policy to judge."""


def pause_image(rt: Runtime, binary_path: Path = CATATONIT) -> Image:
    """skiff's pause image in the store, built on first use."""
    binary, mtime = _catatonit(binary_path)
    name = pause_image_name(binary)
    found = rt.store.images.find(name)
    if found is not None:
        return found
    from skiff.image.copy import CopyOptions, copy_image
    from skiff.image.transports import get as get_transport
    from skiff.libimage.names import local_name, storage_reference
    from skiff.runtime.locks import file_lock

    with file_lock(rt.run_root / "locks" / "pause-image.lock"):
        found = rt.store.images.find(name)
        if found is not None:
            return found
        os.makedirs(rt.ctx.tmp_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="skiff-pause-", dir=rt.ctx.tmp_dir) as tmp:
            layout = Path(tmp) / "layout"
            _write_layout(layout, binary, mtime)
            source = get_transport("oci").parse_reference(str(layout))
            copy_image(
                source,
                storage_reference(local_name(name)),
                CopyOptions(policy_check=_no_policy),
                rt.ctx,
                rt.ctx,
            )
        built = rt.store.images.find(name)
        if built is None:
            raise ContainerError(f"the pod infra image {name} was not stored", "retry")
        return built
