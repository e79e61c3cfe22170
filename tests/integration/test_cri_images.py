"""The CRI ImageService against real registries on loopback, through gRPC.

Covered: PullImage from the basic-auth TLS registry with AuthConfig
(username/password and the base64 ``auth`` form; none at all is
UNAUTHENTICATED), one image identifier across PullImage, ImageStatus,
ListImages and containers; a ``registry.k8s.io/...`` name pulled through a
registries.conf mirror on loopback (the server honours
$CONTAINERS_REGISTRIES_CONF); the trust policy refusing a pull
(PERMISSION_DENIED); ImageStatus verbose and of a missing image;
RemoveImage by one of several names (untag), by ID, of a missing image, of
an image a container uses (FAILED_PRECONDITION); ImageFsInfo.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2
from cri_fixtures import code_of, requirements

from skiff.testing import shm_tempdir
from skiff.testing.busybox import BusyboxImage
from skiff.testing.criserver import CRIEnv
from skiff.testing.registry import RunningRegistry

pytestmark = requirements


@pytest.fixture(scope="module")
def pushed(
    busybox_layout: BusyboxImage, registry: RunningRegistry, auth_registry: RunningRegistry
) -> dict[str, str]:
    """busybox in the plain registry (as the registry.k8s.io mirror) and the auth registry."""
    with shm_tempdir("skiff-cri-push-") as base:
        pusher = CRIEnv(base / "env", busybox_layout)
        try:
            plain = f"{registry.host}/pause:3.9"
            pusher.skiff(
                "image", "copy", "-q", "--dest-tls-verify=false", busybox_layout.reference,
                f"docker://{plain}",
            )  # fmt: skip
            assert auth_registry.credentials is not None and auth_registry.cert_dir is not None
            private = f"{auth_registry.host}/private/busybox"
            for tag in ("v1", "v2"):
                pusher.skiff(
                    "image", "copy", "-q", "--dest-creds", auth_registry.credentials.creds,
                    "--dest-cert-dir", auth_registry.cert_dir, busybox_layout.reference,
                    f"docker://{private}:{tag}",
                )  # fmt: skip
            rejected = f"{auth_registry.host}/rejected/busybox:v1"
            pusher.skiff(
                "image", "copy", "-q", "--dest-creds", auth_registry.credentials.creds,
                "--dest-cert-dir", auth_registry.cert_dir, busybox_layout.reference,
                f"docker://{rejected}",
            )  # fmt: skip
        finally:
            pusher.close()
    return {"mirror": registry.host, "private": private, "rejected": rejected}


@pytest.fixture(scope="module")
def images_env(
    busybox_layout: BusyboxImage,
    pushed: dict[str, str],
    auth_registry: RunningRegistry,
) -> Iterator[CRIEnv]:
    with shm_tempdir("skiff-cri-img-") as base:
        base.mkdir(exist_ok=True)
        conf = base / "registries.conf"
        conf.write_text(
            "unqualified-search-registries = []\n"
            "[[registry]]\n"
            'prefix = "registry.k8s.io"\n'
            f'location = "{pushed["mirror"]}"\n'
            "insecure = true\n"
        )
        env = CRIEnv(base / "env", busybox_layout, registries_conf=conf)
        assert auth_registry.certs_dir is not None
        env.extra_args = ["--certs-dir", str(auth_registry.certs_dir)]
        try:
            env.start()
            yield env
        finally:
            env.close()


def _pull(env: CRIEnv, image: str, auth: object | None = None) -> str:
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image))
    if auth is not None:
        request.auth.CopyFrom(auth)  # type: ignore[arg-type]
    return str(env.images.PullImage(request).image_ref)


def _status(env: CRIEnv, image: str, verbose: bool = False) -> object:
    return env.images.ImageStatus(
        api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image), verbose=verbose)
    )


def _remove(env: CRIEnv, image: str) -> None:
    env.images.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)))


def test_pull_with_auth_and_one_identifier_everywhere(
    images_env: CRIEnv, pushed: dict[str, str], auth_registry: RunningRegistry
) -> None:
    env = images_env
    creds = auth_registry.credentials
    assert creds is not None
    v1 = f"{pushed['private']}:v1"
    request = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=v1))
    assert code_of(env.images.PullImage, request) == grpc.StatusCode.UNAUTHENTICATED
    wrong = api_pb2.AuthConfig(username=creds.username, password="wrong")
    assert code_of(
        env.images.PullImage, api_pb2.PullImageRequest(image=request.image, auth=wrong)
    ) == (grpc.StatusCode.UNAUTHENTICATED)
    ref = _pull(env, v1, api_pb2.AuthConfig(username=creds.username, password=creds.password))
    status = _status(env, v1, verbose=True)
    assert status.image.id == ref  # type: ignore[attr-defined]
    assert v1 in status.image.repo_tags  # type: ignore[attr-defined]
    assert status.image.repo_digests[0].startswith(pushed["private"] + "@sha256:")  # type: ignore[attr-defined]
    assert status.image.size > 0 and status.image.uid.value == 0  # type: ignore[attr-defined]
    info = json.loads(status.info["info"])  # type: ignore[attr-defined]
    assert info["id"] == ref and info["imageSpec"]["rootfs"]["type"] == "layers"
    token = base64.b64encode(creds.creds.encode()).decode()
    assert _pull(env, f"{pushed['private']}:v2", api_pb2.AuthConfig(auth=token)) == ref
    listed = env.images.ListImages(api_pb2.ListImagesRequest()).images
    assert ref in [i.id for i in listed]
    only = env.images.ListImages(
        api_pb2.ListImagesRequest(filter=api_pb2.ImageFilter(image=api_pb2.ImageSpec(image=v1)))
    ).images
    assert [i.id for i in only] == [ref]
    sid, config = env.run_sandbox()
    cid = env.create_container(sid, config, env.container_config("c", ["true"], image=ref))
    assert env.container_status(cid).status.image_id == ref
    env.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sid))


def test_registry_k8s_io_through_a_mirror_from_registries_conf(images_env: CRIEnv) -> None:
    env = images_env
    ref = _pull(env, "registry.k8s.io/pause:3.9")
    status = _status(env, "registry.k8s.io/pause:3.9")
    assert status.image.id == ref  # type: ignore[attr-defined]
    assert "registry.k8s.io/pause:3.9" in status.image.repo_tags  # type: ignore[attr-defined]
    assert "registry.k8s.io/pause" in env.skiff("images", "--format", "{{.Repository}}").stdout


def test_the_trust_policy_refuses_a_pull(
    images_env: CRIEnv, pushed: dict[str, str], auth_registry: RunningRegistry
) -> None:
    env = images_env
    creds = auth_registry.credentials
    assert creds is not None
    saved = env.policy.read_text()
    scope = pushed["rejected"].rsplit(":", 1)[0]
    env.policy.write_text(
        json.dumps(
            {
                "default": [{"type": "insecureAcceptAnything"}],
                "transports": {"docker": {scope: [{"type": "reject"}]}},
            }
        )
    )
    try:
        request = api_pb2.PullImageRequest(
            image=api_pb2.ImageSpec(image=pushed["rejected"]),
            auth=api_pb2.AuthConfig(username=creds.username, password=creds.password),
        )
        assert code_of(env.images.PullImage, request) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        env.policy.write_text(saved)
    assert not _status(env, pushed["rejected"]).HasField("image")  # type: ignore[attr-defined]


def test_image_status_and_remove_semantics(images_env: CRIEnv) -> None:
    env = images_env
    missing = _status(env, "localhost/not-here:1")
    assert not missing.HasField("image")  # type: ignore[attr-defined]
    empty = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=""))
    assert code_of(env.images.ImageStatus, empty) == grpc.StatusCode.INVALID_ARGUMENT
    env.skiff("tag", env.image, "localhost/other:name")
    image_id = _status(env, env.image).image.id  # type: ignore[attr-defined]
    _remove(env, "localhost/other:name")  # one of two names: untagged only
    assert _status(env, env.image).image.id == image_id  # type: ignore[attr-defined]
    assert not _status(env, "localhost/other:name").HasField("image")  # type: ignore[attr-defined]
    _remove(env, "0" * 64)  # missing: not an error
    _remove(env, "0" * 64)
    sid, config = env.run_sandbox()
    env.create_container(sid, config, env.container_config("user", ["true"]))
    request = api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image_id))
    assert code_of(env.images.RemoveImage, request) == grpc.StatusCode.FAILED_PRECONDITION
    env.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sid))
    ref = _pull(env, "registry.k8s.io/pause:3.9")
    _remove(env, ref)
    assert not _status(env, "registry.k8s.io/pause:3.9").HasField("image")  # type: ignore[attr-defined]


def test_image_fs_info(images_env: CRIEnv) -> None:
    info = images_env.images.ImageFsInfo(api_pb2.ImageFsInfoRequest())
    usage = info.image_filesystems[0]
    assert usage.used_bytes.value > 0 and usage.timestamp > 0
    assert Path(usage.fs_id.mountpoint) == images_env.root
