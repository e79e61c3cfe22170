"""Reading an image from a ``dir:`` directory.

The manifest is returned as stored; the layout does not record its media
type, so it is guessed from the content. Signatures are read as
``signature-1``, ``signature-2``, … until the first missing number.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import BlobUnknown, ImageError, ImageNotFound, ManifestError
from skiff.image.transports.dir.layout import blob_name, label, manifest_name, signature_name
from skiff.image.transports.localfs import os_error
from skiff.oci.manifest import MAX_MANIFEST_SIZE, guess_media_type

if TYPE_CHECKING:
    from skiff.image.transports.dir.transport import DirReference
    from skiff.image.types import BlobInfo, ClosableReader, ImageReference
    from skiff.oci.digest import Digest

MAX_SIGNATURE_SIZE = 4 * 1024 * 1024


class DirSource:
    def __init__(self, reference: DirReference) -> None:
        self._reference = reference
        self._root = Path(reference.path)
        self._label = label(self._root)
        if not self._root.is_dir():
            what = "does not exist" if not self._root.exists() else "is not a directory"
            raise ImageNotFound(
                f"no image at {self._label}: the path {what}",
                "check the path; it is relative to the current directory",
            )

    @property
    def reference(self) -> ImageReference:
        return self._reference

    def _read_small(self, name: str, limit: int, what: str) -> bytes | None:
        try:
            with open(self._root / name, "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, f"cannot read {what} {self._root / name}") from exc
        if len(data) > limit:
            raise ManifestError(f"{what} {self._root / name} is above the {limit}-byte limit")
        return data

    def get_manifest(self, instance_digest: Digest | None = None) -> tuple[bytes, str]:
        raw = self._read_small(manifest_name(instance_digest), MAX_MANIFEST_SIZE, "manifest")
        if raw is None:
            if instance_digest is None:
                raise ImageNotFound(
                    f"no image at {self._label}: manifest.json is missing",
                    "give a directory written by `skopeo copy … dir:` or `skiff copy … dir:`",
                )
            raise ImageNotFound(f"instance {instance_digest} is missing from {self._label}")
        return raw, guess_media_type(raw)

    def get_blob(self, info: BlobInfo) -> tuple[ClosableReader, int]:
        if info.digest is None:
            raise ImageError(f"cannot read a blob without a digest from {self._label}")
        path = self._root / blob_name(info.digest)
        try:
            f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except FileNotFoundError as exc:
            raise BlobUnknown(
                f"blob {info.digest} is missing from {self._label}",
                "the directory is incomplete; copy the image into it again",
            ) from exc
        except OSError as exc:
            raise os_error(exc, f"cannot open blob {path}") from exc
        return f, os.fstat(f.fileno()).st_size

    @property
    def has_thread_safe_get_blob(self) -> bool:
        return True

    def get_signatures(self, instance_digest: Digest | None = None) -> list[bytes]:
        signatures: list[bytes] = []
        while True:
            name = signature_name(len(signatures), instance_digest)
            data = self._read_small(name, MAX_SIGNATURE_SIZE, "signature")
            if data is None:
                return signatures
            signatures.append(data)

    def layer_infos_for_copy(self, instance_digest: Digest | None = None) -> list[BlobInfo] | None:
        return None

    def close(self) -> None:
        pass
