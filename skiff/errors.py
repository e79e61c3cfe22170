"""The one exception hierarchy of skiff.

Every failure a user can cause or meet is a ``SkiffError``: it carries a
message that says what failed and on which object, and a hint that says what
to do. The CLI (``skiff.cli.main``) is the only place that turns these into
a one-line message and an exit code; library code raises, never prints.

Third-party exceptions (OSError, urllib3, sqlite3, json) are translated at
the boundary where they occur: ``raise SomeSkiffError(...) from exc``.

    SkiffError                      exit 125 unless stated
    ├── UsageError                  bad flags or arguments
    ├── ConfigError                 a config file is malformed
    ├── ImageError
    │   ├── InvalidReference        a reference or transport name does not parse
    │   ├── ManifestError           malformed, unknown media type, too large
    │   ├── DigestMismatch          content does not match its digest or size
    │   ├── BlobUnknown             a blob is missing from a source
    │   ├── ImageNotFound           no such image/tag at a source
    │   ├── RegistryError           the registry answered with an error
    │   │   ├── AuthenticationError 401/403, bad credentials
    │   │   ├── TooManyRequests     429
    │   │   └── RegistryUnavailable 5xx or connection failures after retries
    │   ├── TLSError                certificate verification failed
    │   └── UnsupportedConversion   a destination cannot take this image
    ├── StorageError
    │   ├── LayerUnknown, ImageUnknown, ContainerUnknown, VolumeUnknown
    │   ├── ImageInUse, NameInUse
    │   ├── StoreCorrupt
    │   ├── UnsafeArchive           a tar member would escape its layer
    │   ├── InvalidArchive          a layer tar is malformed or truncated
    │   └── ArchiveWriteDenied      the host refused an entry (device node, owner, xattr)
    ├── SignatureError              signature could not be made or verified
    │   └── PolicyRejected          policy.json refuses an image
    ├── ContainerError              runtime failures
    │   ├── ContainerStateError     e.g. "is not running"
    │   └── CommandNotInvokable     exit 126 / CommandNotFound exit 127
    ├── BuildError
    └── SystemContainerError
"""

from __future__ import annotations


class SkiffError(Exception):
    """Base of every error skiff reports to a user."""

    exit_code: int = 125

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(SkiffError):
    """Flags or arguments the command cannot accept."""


class ConfigError(SkiffError):
    """A configuration file (registries.conf, policy.json, ...) is malformed."""


# --- image library ---------------------------------------------------------


class ImageError(SkiffError):
    """Failures of the image library: references, manifests, transports."""


class InvalidReference(ImageError):
    """A reference or ``transport:name`` string does not parse."""


class ManifestError(ImageError):
    """A manifest is malformed, too large, or of an unknown media type."""


class DigestMismatch(ImageError):
    """Content does not match the digest or size it was announced with."""


class BlobUnknown(ImageError):
    """A blob named by a manifest is missing from its source."""


class ImageNotFound(ImageError):
    """No image (or tag) by that reference exists at the source."""


class RegistryError(ImageError):
    """A registry answered with an error status."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class AuthenticationError(RegistryError):
    """The registry refused our credentials (401/403)."""


class TooManyRequests(RegistryError):
    """The registry rate-limited us (429) beyond the retries."""


class RegistryUnavailable(RegistryError):
    """5xx answers or connection failures persisted through all retries."""


class TLSError(ImageError):
    """A TLS handshake or certificate verification failed."""


class UnsupportedConversion(ImageError):
    """The destination cannot store this image in any form we can produce."""


# --- storage ---------------------------------------------------------------


class StorageError(SkiffError):
    """Failures of the local store."""


class LayerUnknown(StorageError):
    """No layer with that ID is in the store."""


class ImageUnknown(StorageError):
    """No image with that name or ID is in the store."""


class ContainerUnknown(StorageError):
    """No container with that name or ID is in the store."""


class VolumeUnknown(StorageError):
    """No volume with that name is in the store."""


class ImageInUse(StorageError):
    """An image is used by containers and cannot be removed without force."""


class NameInUse(StorageError):
    """A name is already taken by another object."""


class StoreCorrupt(StorageError):
    """The store's metadata and contents disagree."""


class UnsafeArchive(StorageError):
    """A tar member would land outside its layer or is otherwise unsafe."""


class InvalidArchive(StorageError):
    """A layer tar is malformed, truncated, or uses a feature skiff does not read."""


class ArchiveWriteDenied(StorageError):
    """The host refused to create an entry a layer asks for (a device node
    without CAP_MKNOD, an owner without CAP_CHOWN, an xattr the filesystem
    does not take); the caller decides whether to retry with a policy that
    skips such entries."""


# --- signatures and policy -------------------------------------------------


class SignatureError(SkiffError):
    """A signature could not be created or did not verify."""


class PolicyRejected(SignatureError):
    """The trust policy does not accept an image."""


# --- runtime ---------------------------------------------------------------


class ContainerError(SkiffError):
    """Failures running containers."""


class ContainerStateError(ContainerError):
    """A container is in the wrong state for the operation."""


class CommandNotInvokable(ContainerError):
    """The container command exists but cannot be invoked."""

    exit_code = 126


class CommandNotFound(ContainerError):
    """The container command does not exist."""

    exit_code = 127


# --- build and system containers -------------------------------------------


class BuildError(SkiffError):
    """A Containerfile build failed."""


class SystemContainerError(SkiffError):
    """Installing or managing a system container failed."""
