"""The ``oci:`` transport: images in OCI image layout directories."""

from skiff.image.transports.oci_layout.transport import (
    TRANSPORT,
    OCILayoutReference,
    OCILayoutTransport,
)

__all__ = ["TRANSPORT", "OCILayoutReference", "OCILayoutTransport"]
