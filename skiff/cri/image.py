"""The ImageService: ListImages, ImageStatus, PullImage, RemoveImage, ImageFsInfo.

The CRI's images are the store's images — ``skiff images`` lists what
kubelet pulled and kubelet sees what ``skiff pull`` fetched. An image's CRI
ID is skiff's image ID (the config digest's hex), and that is also what
PullImage answers as ``image_ref`` and what containers report as their
``image_id``: one identifier for one image across every API, as the CRI
asks. Names resolve as for every skiff command: full names as they are,
short names through registries.conf (``$CONTAINERS_REGISTRIES_CONF``
honoured), mirrors and all.

PullImage goes through ``libimage.pull_image`` and so the copy engine,
which applies the trust policy (policy.json) by itself. The request's
AuthConfig becomes the pull's credentials (user and password, or ``auth``
as base64 ``user:password``, or a registry bearer token); identity tokens
(OAuth2 refresh tokens) are not supported and are refused by name.

RemoveImage by a name the image has with other names only removes that
name (as ``skiff rmi`` untags); by ID, or by its last name, it removes the
image unless a container uses it (FailedPrecondition). A missing image is
not an error (the CRI makes RemoveImage idempotent); ImageStatus of a
missing image is an empty response, not an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import replace
from typing import Any

from cri_api.v1 import api_pb2

from skiff.cri.errors import InvalidArgument
from skiff.cri.service import CRIService
from skiff.errors import ImageInUse, ImageUnknown
from skiff.oci.config import ImageConfig
from skiff.storage.images import Image

PAUSE_PREFIX = "localhost/skiff-pause:"


def _find(svc: CRIService, text: str) -> Image | None:
    from skiff.libimage.names import find_local_image

    try:
        image, _ = find_local_image(svc.ctx, svc.rt.store, text)
    except ImageUnknown:
        return None
    return image


def _user(config: ImageConfig) -> tuple[int | None, str]:
    """(uid, username) of the image's User: a number is a uid, a name a username,
    nothing is root."""
    user = (config.user or "").split(":", 1)[0]
    if not user:
        return 0, ""
    if user.isdigit():
        return int(user), ""
    return None, user


def to_cri(svc: CRIService, image: Image) -> Any:
    from skiff.libimage.listing import repo_digests

    config = ImageConfig.from_bytes(image.config)
    uid, username = _user(config)
    out = api_pb2.Image(
        id=image.id,
        repo_tags=list(image.names),
        repo_digests=repo_digests(image),
        size=svc.rt.store.image_size(image),
        username=username,
        spec=api_pb2.ImageSpec(image=image.id),
        pinned=any(name.startswith(PAUSE_PREFIX) for name in image.names),
    )
    if uid is not None:
        out.uid.CopyFrom(api_pb2.Int64Value(value=uid))
    return out


def list_images(svc: CRIService, req: Any) -> Any:
    wanted = (
        req.filter.image.image if req.HasField("filter") and req.filter.HasField("image") else ""
    )
    if wanted:
        image = _find(svc, wanted)
        images = [image] if image is not None else []
    else:
        images = svc.rt.store.images.all()
    return api_pb2.ListImagesResponse(images=[to_cri(svc, image) for image in images])


def image_status(svc: CRIService, req: Any) -> Any:
    text = req.image.image if req.HasField("image") else ""
    if not text:
        raise InvalidArgument("ImageSpec.image should not be empty")
    image = _find(svc, text)
    if image is None:
        return api_pb2.ImageStatusResponse()
    info: dict[str, str] = {}
    if req.verbose:
        info["info"] = json.dumps(
            {
                "id": image.id,
                "names": list(image.names),
                "digest": str(image.digest) if image.digest else "",
                "manifestType": image.manifest_type,
                "imageSpec": json.loads(image.config),
            }
        )
    return api_pb2.ImageStatusResponse(image=to_cri(svc, image), info=info)


def _credentials(auth: Any) -> dict[str, Any]:
    """SystemContext fields for a PullImageRequest's AuthConfig."""
    if auth.identity_token:
        raise InvalidArgument(
            "identity tokens are not supported", "give a username and password, or a registry token"
        )
    if auth.registry_token:
        return {"registry_token": auth.registry_token}
    if auth.username or auth.password:
        return {"credentials": (auth.username, auth.password)}
    if auth.auth:
        try:
            decoded = base64.b64decode(auth.auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidArgument("AuthConfig.auth is not base64 of user:password") from exc
        user, sep, password = decoded.partition(":")
        if not sep:
            raise InvalidArgument("AuthConfig.auth is not base64 of user:password")
        return {"credentials": (user, password)}
    return {}


def pull_image(svc: CRIService, req: Any) -> Any:
    from skiff.libimage.pull import PullOptions
    from skiff.libimage.pull import pull_image as pull

    text = req.image.image if req.HasField("image") else ""
    if not text:
        raise InvalidArgument("PullImageRequest.image.image should not be empty")
    ctx = svc.ctx
    if req.HasField("auth"):
        ctx = replace(ctx, **_credentials(req.auth))
    report = pull(ctx, text, PullOptions())
    return api_pb2.PullImageResponse(image_ref=report.images[-1].image_id)


def remove_image(svc: CRIService, req: Any) -> Any:
    from skiff.libimage.names import find_local_image

    text = req.image.image if req.HasField("image") else ""
    if not text:
        raise InvalidArgument("ImageSpec.image should not be empty")
    store = svc.rt.store
    try:
        image, matched = find_local_image(svc.ctx, store, text)
    except ImageUnknown:
        return api_pb2.RemoveImageResponse()
    if matched is not None and len(image.names) > 1:
        store.images.remove_name(image.id, str(matched))
        return api_pb2.RemoveImageResponse()
    users = svc.rt.records.by_image(image.id)
    if users:
        raise ImageInUse(
            f"image {image.id[:12]} is in use by container(s): " + ", ".join(c.name for c in users),
            "remove those containers first",
        )
    store.delete_image(image.id)
    return api_pb2.RemoveImageResponse()


def image_fs_info(svc: CRIService, req: Any) -> Any:
    store = svc.rt.store
    used = sum(layer.uncompressed_size for layer in store.layers.all())
    usage = api_pb2.FilesystemUsage(
        timestamp=time.time_ns(),
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=str(store.root)),
        used_bytes=api_pb2.UInt64Value(value=used),
    )
    return api_pb2.ImageFsInfoResponse(image_filesystems=[usage], container_filesystems=[usage])
