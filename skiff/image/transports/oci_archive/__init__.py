"""The ``oci-archive:`` transport: images in tar archives of OCI layouts."""

from skiff.image.transports.oci_archive.transport import (
    TRANSPORT,
    OCIArchiveReference,
    OCIArchiveTransport,
)

__all__ = ["TRANSPORT", "OCIArchiveReference", "OCIArchiveTransport"]
