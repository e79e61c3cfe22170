"""Errors of the CRI streaming server.

They are ``SkiffError``s like every other failure skiff reports, kept in
this package (not in ``skiff/errors.py``) because nothing outside the
streaming server raises or catches them:

    StreamingError        base: a streaming session failed
    ├── ProtocolViolation the client broke SPDY, WebSocket or the Kubernetes
    │                     stream protocol (bad frame, missing stream, bad JSON)
    └── StreamClosed      the other end of a stream or connection went away
"""

from __future__ import annotations

from skiff.errors import SkiffError


class StreamingError(SkiffError):
    """A streaming (exec, attach, port-forward) session failed."""


class ProtocolViolation(StreamingError):
    """The client sent something the protocol does not allow."""


class StreamClosed(StreamingError):
    """The stream (or its whole connection) is closed or was reset."""
