"""The distribution API v2 endpoints, one function each, over a RegistryClient.

Paths and expected statuses follow the OCI distribution spec (and Docker's
registry API, which it codified):

    GET/HEAD  /v2/<name>/manifests/<reference>       200
    PUT       /v2/<name>/manifests/<reference>       201
    DELETE    /v2/<name>/manifests/<digest>          202
    GET/HEAD  /v2/<name>/blobs/<digest>              200 (206 with Range), may redirect
    POST      /v2/<name>/blobs/uploads/              202 + Location
    POST      /v2/<name>/blobs/uploads/?mount=D&from=R   201 mounted, 202 not
    PATCH     <location>                             202 + Location
    PUT       <location>?digest=D                    201
    DELETE    <location>                             204 (cancel)
    GET       /v2/<name>/tags/list?n=N               200 + Link: <...>; rel="next"

Nothing here decides policy (mirrors, retries, auth): that is the caller's
(source/destination) and the client's job.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import urllib3

from skiff.errors import DigestMismatch, RegistryError
from skiff.image.transports.docker.client import ERROR_BODY_LIMIT, RegistryClient, read_limited
from skiff.image.transports.docker.errors import Target
from skiff.image.transports.docker.stream import ResumableBody
from skiff.image.types import BlobStream
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, InvalidDigest
from skiff.oci.manifest import MAX_MANIFEST_SIZE, guess_media_type, manifest_digest

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
MAX_TAG_PAGES = 10_000
_LINK_NEXT_RE = re.compile(r'<([^>]*)>\s*;[^,]*rel="?next"?', re.IGNORECASE)


def _repo_name(client: RegistryClient, repository: str | None = None) -> str:
    return f"{client.registry}/{repository or client.repository}"


def _digest_header(resp_headers: urllib3.HTTPHeaderDict) -> Digest | None:
    value = resp_headers.get("Docker-Content-Digest")
    if not value:
        return None
    try:
        return Digest.parse(value.strip())
    except InvalidDigest:
        return None


def normalize_media_type(content_type: str | None, raw: bytes) -> str:
    """A manifest's media type from Content-Type; guessed when the registry is vague."""
    value = (content_type or "").split(";", 1)[0].strip()
    if mt.is_manifest_type(value):
        return value
    return guess_media_type(raw)


def verify_manifest_digest(raw: bytes, expected: Digest, what: str) -> None:
    """Raise DigestMismatch unless ``raw`` is the manifest ``expected`` names."""
    actual = (
        manifest_digest(raw)
        if expected.algorithm == "sha256"
        else Digest.from_bytes(raw, expected.algorithm)
    )
    if actual != expected:
        raise DigestMismatch(
            f"{what}: manifest digest mismatch: asked for {expected}, got {actual}",
            "the registry (or a proxy) served different content than requested",
        )


# --- manifests ------------------------------------------------------------


def get_manifest(client: RegistryClient, reference: str) -> tuple[bytes, str]:
    """Raw manifest bytes and media type for a tag or digest.

    Fetched by digest, the bytes are verified against it before they are
    returned, so nothing parses an unverified manifest. At most
    MAX_MANIFEST_SIZE bytes are read.
    """
    expected = Digest.parse(reference) if ":" in reference else None
    context = f"reading manifest {reference} in {_repo_name(client)}"
    reply = client.call(
        "GET",
        f"/v2/{client.repository}/manifests/{reference}",
        context=context,
        target=Target.MANIFEST,
        headers={"Accept": mt.ACCEPT_MANIFEST},
        limit=MAX_MANIFEST_SIZE,
    )
    if expected is not None:
        verify_manifest_digest(reply.body, expected, context)
    return reply.body, normalize_media_type(reply.headers.get("Content-Type"), reply.body)


@dataclass(frozen=True)
class ManifestHead:
    digest: Digest | None
    media_type: str
    size: int


def head_manifest(client: RegistryClient, reference: str) -> ManifestHead | None:
    """What the registry says about a manifest without fetching it; None if absent."""
    reply = client.call(
        "HEAD",
        f"/v2/{client.repository}/manifests/{reference}",
        context=f"checking manifest {reference} in {_repo_name(client)}",
        target=Target.MANIFEST,
        headers={"Accept": mt.ACCEPT_MANIFEST},
        ok=(200, 404),
    )
    if reply.status == 404:
        return None
    length = reply.headers.get("Content-Length", "-1")
    return ManifestHead(
        _digest_header(reply.headers),
        (reply.headers.get("Content-Type") or "").split(";", 1)[0].strip(),
        int(length) if length.isdigit() else -1,
    )


def put_manifest(client: RegistryClient, reference: str, raw: bytes, media_type: str) -> Digest:
    """Upload a manifest under a tag or digest; the digest the registry computed."""
    context = f"writing manifest {reference} to {_repo_name(client)}"
    reply = client.call(
        "PUT",
        f"/v2/{client.repository}/manifests/{reference}",
        context=context,
        target=Target.MANIFEST,
        headers={"Content-Type": media_type or guess_media_type(raw) or mt.OCI_MANIFEST},
        body=raw,
        ok=(200, 201, 202),
    )
    computed = manifest_digest(raw)
    announced = _digest_header(reply.headers)
    if announced is not None and announced.algorithm == "sha256" and announced != computed:
        raise DigestMismatch(
            f"{context}: the registry stored the manifest as {announced}, expected {computed}"
        )
    return computed


def delete_manifest(client: RegistryClient, digest: Digest) -> None:
    client.call(
        "DELETE",
        f"/v2/{client.repository}/manifests/{digest}",
        context=f"deleting manifest {digest} in {_repo_name(client)}",
        target=Target.MANIFEST,
        ok=(200, 202, 204),
    )


# --- blobs ----------------------------------------------------------------------


def blob_size(client: RegistryClient, digest: Digest, repository: str | None = None) -> int | None:
    """Size of a blob the repository has (HEAD), or None if it does not."""
    repo = repository or client.repository
    reply = client.call(
        "HEAD",
        f"/v2/{repo}/blobs/{digest}",
        context=f"checking blob {digest} in {_repo_name(client, repo)}",
        target=Target.BLOB,
        scopes=None if repo == client.repository else [client.scope(repo, "pull")],
        ok=(200, 404),
    )
    if reply.status == 404:
        return None
    length = reply.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else -1


def open_blob(client: RegistryClient, digest: Digest, expected_size: int = -1) -> ResumableBody:
    """A stream of a blob, following redirects, that resumes after breaks."""
    what = f"blob {digest} from {_repo_name(client)}"

    def opener(offset: int) -> urllib3.BaseHTTPResponse:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp, _ = client.perform(
            "GET",
            f"/v2/{client.repository}/blobs/{digest}",
            context=f"reading {what}",
            target=Target.BLOB,
            headers=headers,
            ok=(200, 206) if offset else (200,),
        )
        return resp

    first = opener(0)
    length = first.headers.get("Content-Length", "")
    size = int(length) if length.isdigit() else expected_size
    return ResumableBody(
        first,
        opener,
        size=size,
        what=what,
        max_reconnects=client.ctx.retry_times,
        wait=client.wait,
    )


def open_external_blob(client: RegistryClient, url: str, what: str) -> ResumableBody:
    """A foreign layer from one of its ``urls`` (no registry credentials)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise RegistryError(f"{what}: unsupported URL scheme in {url!r}")

    def opener(offset: int) -> urllib3.BaseHTTPResponse:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp, _ = client.perform(
            "GET",
            url,
            context=f"reading {what} from {url}",
            target=Target.BLOB,
            headers=headers,
            ok=(200, 206) if offset else (200,),
            registry_auth=False,
            ping=False,
        )
        return resp

    first = opener(0)
    length = first.headers.get("Content-Length", "")
    return ResumableBody(
        first,
        opener,
        size=int(length) if length.isdigit() else -1,
        what=f"{what} from {url}",
        max_reconnects=client.ctx.retry_times,
        wait=client.wait,
    )


# --- uploads --------------------------------------------------------------------


def _upload_url(base: str, location: str | None, context: str) -> str:
    if not location:
        raise RegistryError(f"{context}: the registry gave no upload Location")
    return urllib.parse.urljoin(base, location)


def _with_digest(url: str, digest: Digest) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "digest"]
    query.append(("digest", str(digest)))
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(query), "")
    )


def start_upload(client: RegistryClient) -> str:
    """Open an upload session; its absolute URL."""
    context = f"starting a blob upload to {_repo_name(client)}"
    reply = client.call(
        "POST",
        f"/v2/{client.repository}/blobs/uploads/",
        context=context,
        target=Target.UPLOAD,
        ok=(202,),
    )
    return _upload_url(reply.url, reply.headers.get("Location"), context)


def mount_blob(client: RegistryClient, digest: Digest, from_repository: str) -> bool:
    """Cross-repository mount: True if the registry linked the blob.

    A registry that cannot mount (no access to ``from``, blob absent there)
    opens an ordinary upload session instead (202); that session is
    cancelled here and False returned.
    """
    context = f"mounting blob {digest} from {from_repository} into {_repo_name(client)}"
    query = urllib.parse.urlencode({"mount": str(digest), "from": from_repository})
    reply = client.call(
        "POST",
        f"/v2/{client.repository}/blobs/uploads/?{query}",
        context=context,
        target=Target.UPLOAD,
        scopes=[client.scope(), client.scope(from_repository, "pull")],
        ok=(201, 202),
    )
    if reply.status == 201:
        return True
    location = reply.headers.get("Location")
    if location:
        cancel_upload(client, urllib.parse.urljoin(reply.url, location))
    return False


def cancel_upload(client: RegistryClient, url: str) -> None:
    """Abandon an upload session so the registry can drop its data.

    Called on failure paths; a failure to cancel is logged (the registry
    purges stale uploads itself) and must not hide the original error.
    """
    try:
        client.call(
            "DELETE",
            url,
            context=f"cancelling upload to {_repo_name(client)}",
            target=Target.UPLOAD,
            ok=(200, 202, 204, 404),
        )
    except RegistryError as exc:
        log.warning("could not cancel upload %s: %s", url, exc)


def put_blob_monolithic(client: RegistryClient, url: str, data: bytes, digest: Digest) -> None:
    """Finish an upload session with the whole blob in one PUT (retryable)."""
    _finish(client, url, digest, data)


def put_blob_streaming(
    client: RegistryClient, url: str, stream: BlobStream, first: bytes
) -> Digest:
    """Upload ``first`` then the rest of ``stream`` in one chunked PATCH, then PUT.

    The digest for the closing PUT is the stream's own (``stream.digest``,
    valid only after it reached its end), so the caller's hashing is the
    one the registry is told to check. Not retryable: the stream cannot be
    replayed.
    """
    context = f"uploading a blob to {_repo_name(client)}"

    def chunks() -> Iterator[bytes]:
        if first:
            yield first
        while True:
            data = stream.read(1 << 20)
            if not data:
                return
            yield data

    resp, answered = client.perform(
        "PATCH",
        url,
        context=context,
        target=Target.UPLOAD,
        headers={"Content-Type": OCTET_STREAM},
        body=chunks(),
        ok=(202, 204),
    )
    location = resp.headers.get("Location")
    read_limited(resp, ERROR_BODY_LIMIT)
    digest = stream.digest
    _finish(client, _upload_url(answered, location, context), digest, b"")
    return digest


def _finish(client: RegistryClient, url: str, digest: Digest, data: bytes) -> None:
    context = f"finishing upload of blob {digest} to {_repo_name(client)}"
    reply = client.call(
        "PUT",
        _with_digest(url, digest),
        context=context,
        target=Target.UPLOAD,
        headers={"Content-Type": OCTET_STREAM},
        body=data,
        ok=(201, 204),
    )
    stored = _digest_header(reply.headers)
    if stored is not None and stored != digest:
        raise DigestMismatch(f"{context}: the registry stored it as {stored}")


# --- tags ----------------------------------------------------------------------------


def list_tags(client: RegistryClient, page_size: int | None = None) -> list[str]:
    """All tags of the repository, following ``Link: <...>; rel="next"`` pages."""
    context = f"listing tags of {_repo_name(client)}"
    path = f"/v2/{client.repository}/tags/list"
    if page_size:
        path += f"?n={page_size}"
    tags: list[str] = []
    seen: set[str] = set()
    for _ in range(MAX_TAG_PAGES):
        reply = client.call("GET", path, context=context, target=Target.REPOSITORY)
        try:
            obj = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{context}: the registry answered with invalid JSON") from exc
        page = obj.get("tags") if isinstance(obj, dict) else None
        if page is not None and (
            not isinstance(page, list) or not all(isinstance(t, str) for t in page)
        ):
            raise RegistryError(f"{context}: 'tags' is not a list of strings")
        tags.extend(page or [])
        link = reply.headers.get("Link")
        match = _LINK_NEXT_RE.search(link) if link else None
        if match is None:
            return tags
        next_url = urllib.parse.urljoin(reply.url, match.group(1))
        if next_url in seen:
            raise RegistryError(f"{context}: the registry's pagination loops at {next_url}")
        seen.add(next_url)
        path = next_url
    raise RegistryError(f"{context}: more than {MAX_TAG_PAGES} pages")
