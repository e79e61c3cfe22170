"""The ``docker-archive:`` transport: images in ``docker save`` archives.

Besides ``TRANSPORT``, the package exports what multi-image commands need:
``DockerArchiveReader`` (``skiff load``: list every image of a file) and
``DockerArchiveWriter`` (``skiff save -m``: several images in one file).
"""

from skiff.image.transports.docker_archive.destination import (
    DockerArchiveDestination,
    DockerArchiveWriter,
)
from skiff.image.transports.docker_archive.source import DockerArchiveReader, DockerArchiveSource
from skiff.image.transports.docker_archive.transport import (
    TRANSPORT,
    DockerArchiveReference,
    DockerArchiveTransport,
)

__all__ = [
    "TRANSPORT",
    "DockerArchiveDestination",
    "DockerArchiveReader",
    "DockerArchiveReference",
    "DockerArchiveSource",
    "DockerArchiveTransport",
    "DockerArchiveWriter",
]
