"""From skiff's errors to the gRPC status codes kubelet and crictl act on.

The CRI says little about codes, but its clients depend on a few: NotFound
for a sandbox, container or image that does not exist (kubelet then stops
asking about it), InvalidArgument for a request that can never succeed,
AlreadyExists for a name taken (kubelet's name/attempt rules rely on it),
FailedPrecondition for an object in the wrong state, DeadlineExceeded for
an ExecSync that timed out. Everything else is Unknown with skiff's
message, which names the object and says what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiff.errors import (
    AuthenticationError,
    ContainerStateError,
    ContainerUnknown,
    ImageInUse,
    ImageNotFound,
    ImageUnknown,
    InvalidReference,
    NameInUse,
    PolicyRejected,
    SkiffError,
    UsageError,
    VolumeUnknown,
)

if TYPE_CHECKING:
    import grpc


class CRIError(SkiffError):
    """A failure the CRI server names itself, with the code it maps to."""

    code_name = "UNKNOWN"


class NotFound(CRIError):
    """No sandbox, container or image by that ID or name."""

    code_name = "NOT_FOUND"


class InvalidArgument(CRIError, UsageError):
    """The request can never succeed as it is (missing metadata, bad mount)."""

    code_name = "INVALID_ARGUMENT"


class AlreadyExists(CRIError):
    """A sandbox or container with that name (name, namespace, uid, attempt) exists."""

    code_name = "ALREADY_EXISTS"


class FailedPrecondition(CRIError):
    """The object is in the wrong state for the request (a stopped sandbox)."""

    code_name = "FAILED_PRECONDITION"


class DeadlineExceeded(CRIError):
    """An ExecSync command ran past its timeout (it was killed)."""

    code_name = "DEADLINE_EXCEEDED"


class Unimplemented(CRIError):
    """An RPC skiff does not implement (CheckpointContainer, metrics)."""

    code_name = "UNIMPLEMENTED"


def code_name(exc: SkiffError) -> str:
    """The name of the ``grpc.StatusCode`` for ``exc``."""
    if isinstance(exc, CRIError):
        return exc.code_name
    from skiff.runtime.pods.model import PodUnknown

    if isinstance(
        exc, ContainerUnknown | ImageUnknown | ImageNotFound | PodUnknown | VolumeUnknown
    ):
        return "NOT_FOUND"
    if isinstance(exc, NameInUse):
        return "ALREADY_EXISTS"
    if isinstance(exc, UsageError | InvalidReference):
        return "INVALID_ARGUMENT"
    if isinstance(exc, ContainerStateError | ImageInUse):
        return "FAILED_PRECONDITION"
    if isinstance(exc, AuthenticationError):
        return "UNAUTHENTICATED"
    if isinstance(exc, PolicyRejected):
        return "PERMISSION_DENIED"
    return "UNKNOWN"


def status_code(exc: SkiffError) -> grpc.StatusCode:
    import grpc

    return getattr(grpc.StatusCode, code_name(exc))  # type: ignore[no-any-return]
