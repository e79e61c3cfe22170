"""The ``dir:`` transport: one image per directory, as skopeo writes it."""

from skiff.image.transports.dir.transport import TRANSPORT, DirReference, DirTransport

__all__ = ["TRANSPORT", "DirReference", "DirTransport"]
