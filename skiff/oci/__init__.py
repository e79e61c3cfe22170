"""Pure data of the OCI and Docker formats: digests, media types, manifests.

Nothing in this package does I/O; the image library and storage build on it.
"""
