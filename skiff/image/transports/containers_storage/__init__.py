"""The ``containers-storage:`` transport over skiff's local store."""

from skiff.image.transports.containers_storage.transport import TRANSPORT

__all__ = ["TRANSPORT"]
