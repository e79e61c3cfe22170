"""The test fixtures themselves, checked against real peers.

skopeo (Debian's) must be able to push the busybox layout into every
registry variant and see the digests the builder reported; each auth
variant must refuse what it should; the token service's JWTs must be what
Distribution accepts; the fault proxy must do exactly what it is told; and
umoci must unpack the busybox layout into a rootfs with a working
``bin/busybox``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from skiff.oci import mediatypes as mt
from skiff.oci.config import ImageConfig
from skiff.oci.digest import Digest
from skiff.oci.manifest import ImageManifest, parse_manifest
from skiff.testing.busybox import (
    REF_NAME_ANNOTATION,
    BusyboxImage,
    build_busybox_layout,
    build_layered_layout,
)
from skiff.testing.faultproxy import FaultProxy
from skiff.testing.registry import RunningRegistry, Variant
from skiff.testing.tlsutil import CertificateAuthority
from skiff.testing.tokenserver import decode_jwt

# --- helpers -----------------------------------------------------------------


@pytest.fixture
def skopeo(tmp_shm: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run skopeo hermetically: our policy, our registries.conf, no host auth."""
    policy = tmp_shm / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    home = tmp_shm / "home"
    home.mkdir()

    def run(
        *args: str, registry: RunningRegistry, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "CONTAINERS_REGISTRIES_CONF": str(registry.registries_conf),
            "REGISTRY_AUTH_FILE": str(registry.auth_file),
            "TMPDIR": str(tmp_shm),
        }
        argv = ["skopeo", "--policy", str(policy), *args]
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


def _inspect(
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
    registry: RunningRegistry,
    ref: str,
    *flags: str,
) -> dict[str, object]:
    out = skopeo("inspect", *flags, f"docker://{ref}", registry=registry).stdout
    result: dict[str, object] = json.loads(out)
    return result


def _http(
    registry: RunningRegistry | None = None, ca: CertificateAuthority | None = None
) -> urllib3.PoolManager:
    context = None
    if registry is not None:
        context = registry.client_ssl_context()
    elif ca is not None:
        context = ca.client_context()
    return urllib3.PoolManager(ssl_context=context, retries=False, timeout=30)


def _blob_bytes(image: BusyboxImage, digest: Digest) -> bytes:
    return image.blob_path(digest).read_bytes()


# --- registries ---------------------------------------------------------------


def test_all_four_variants_start_fast_and_stop_clean(
    registry_factory: Callable[..., RunningRegistry],
) -> None:
    started = time.monotonic()
    registries = [registry_factory(v) for v in Variant]
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"starting four registries took {elapsed:.2f}s"

    for reg in registries:
        http = _http(reg)
        status = http.request("GET", f"{reg.url}/v2/").status
        assert status == (401 if reg.variant in (Variant.BASIC, Variant.TOKEN) else 200)
        assert reg.host == f"127.0.0.1:{reg.port}"
        assert (reg.certs_dir is not None) == reg.variant.uses_tls

    victim = registries[-1]
    token_server = victim.token_server
    assert token_server is not None
    http = _http(victim)
    assert http.request("GET", token_server.realm).status == 200
    victim.stop()
    assert victim.process.poll() is not None
    assert not victim.root_dir.exists()
    with pytest.raises(urllib3.exceptions.HTTPError):
        _http(victim).request("GET", token_server.realm)


def test_registry_context_is_hermetic(
    registry: RunningRegistry, tls_registry: RunningRegistry
) -> None:
    assert registry.context.tls_verify is False
    assert registry.context.certs_dirs == ()
    assert "insecure = true" in registry.registries_conf.read_text()
    assert registry.host in registry.registries_conf.read_text()
    assert tls_registry.certs_dir is not None and tls_registry.cert_dir is not None
    assert tls_registry.context.certs_dirs == (tls_registry.certs_dir,)
    assert (tls_registry.cert_dir / "ca.crt").is_file()
    assert (tls_registry.certs_dir / f"localhost:{tls_registry.port}" / "ca.crt").is_file()
    assert "insecure = false" in tls_registry.registries_conf.read_text()
    for reg in (registry, tls_registry):
        assert not reg.auth_file.exists()
        assert reg.context.auth_file == reg.auth_file
        assert reg.context.credentials is None


def test_plain_registry_takes_busybox(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
    unique_repo: str,
) -> None:
    ref = f"{registry.host}/{unique_repo}:latest"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        busybox_layout.reference,
        f"docker://{ref}",
        registry=registry,
    )
    info = _inspect(skopeo, registry, ref, "--tls-verify=false")
    assert info["Digest"] == str(busybox_layout.manifest_digest)
    assert info["Layers"] == [str(d) for d in busybox_layout.layer_digests]

    # the storage directory really is where the blobs live
    layer = busybox_layout.layer_digests[0]
    on_disk = registry.blob_path(layer).read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == layer.hex


def test_tls_registry_is_trusted_only_through_certs_d(
    tls_registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
    unique_repo: str,
) -> None:
    ref = f"docker://{tls_registry.host}/{unique_repo}:latest"
    refused = skopeo("copy", busybox_layout.reference, ref, registry=tls_registry, check=False)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr

    assert tls_registry.cert_dir is not None
    skopeo(
        "copy",
        "--dest-cert-dir",
        str(tls_registry.cert_dir),
        busybox_layout.reference,
        ref,
        registry=tls_registry,
    )
    info = _inspect(
        skopeo,
        tls_registry,
        ref.removeprefix("docker://"),
        "--cert-dir",
        str(tls_registry.cert_dir),
    )
    assert info["Digest"] == str(busybox_layout.manifest_digest)


def test_basic_auth_registry(
    auth_registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
    unique_repo: str,
) -> None:
    assert auth_registry.credentials is not None and auth_registry.cert_dir is not None
    cert_dir = str(auth_registry.cert_dir)
    ref = f"docker://{auth_registry.host}/{unique_repo}:latest"

    anonymous = skopeo(
        "copy",
        "--dest-cert-dir",
        cert_dir,
        busybox_layout.reference,
        ref,
        registry=auth_registry,
        check=False,
    )
    assert anonymous.returncode != 0
    assert "authentication required" in anonymous.stderr or "unauthorized" in anonymous.stderr
    wrong = skopeo(
        "copy",
        "--dest-cert-dir",
        cert_dir,
        "--dest-creds",
        f"{auth_registry.credentials.username}:wrong",
        busybox_layout.reference,
        ref,
        registry=auth_registry,
        check=False,
    )
    assert wrong.returncode != 0

    skopeo(
        "copy",
        "--dest-cert-dir",
        cert_dir,
        "--dest-creds",
        auth_registry.credentials.creds,
        busybox_layout.reference,
        ref,
        registry=auth_registry,
    )
    info = _inspect(
        skopeo,
        auth_registry,
        ref.removeprefix("docker://"),
        "--cert-dir",
        cert_dir,
        "--creds",
        auth_registry.credentials.creds,
    )
    assert info["Digest"] == str(busybox_layout.manifest_digest)
    assert auth_registry.users == {
        auth_registry.credentials.username: auth_registry.credentials.password
    }


def test_token_auth_registry(
    token_registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
    unique_repo: str,
) -> None:
    pusher, reader = token_registry.credentials, token_registry.readonly_credentials
    server = token_registry.token_server
    assert pusher and reader and server and token_registry.cert_dir
    cert_dir = str(token_registry.cert_dir)
    ref = f"{token_registry.host}/{unique_repo}:latest"

    def copy(*flags: str, dest: str = ref) -> subprocess.CompletedProcess[str]:
        return skopeo(
            "copy",
            "--dest-cert-dir",
            cert_dir,
            *flags,
            busybox_layout.reference,
            f"docker://{dest}",
            registry=token_registry,
            check=False,
        )

    assert copy().returncode != 0, "anonymous push must be refused"
    assert copy("--dest-creds", f"{pusher.username}:nope").returncode != 0
    assert copy("--dest-creds", reader.creds).returncode != 0, "read-only user pushed"

    server.clear_requests()
    pushed = copy("--dest-creds", pusher.creds)
    assert pushed.returncode == 0, pushed.stderr
    push_scope = f"repository:{unique_repo}:pull,push"
    granted = [r for r in server.requests if push_scope in r.scopes and r.status == 200]
    assert granted, [r.scopes for r in server.requests]
    assert granted[0].account == pusher.username
    assert {"pull", "push"} <= set(granted[0].granted[0].actions)

    info = _inspect(skopeo, token_registry, ref, "--cert-dir", cert_dir, "--creds", reader.creds)
    assert info["Digest"] == str(busybox_layout.manifest_digest)
    anonymous_pull = skopeo(
        "inspect", "--cert-dir", cert_dir, f"docker://{ref}", registry=token_registry, check=False
    )
    assert anonymous_pull.returncode != 0

    # the public repository: anyone may pull, only the pusher may push
    public = f"{token_registry.host}/{token_registry.public_repository}:latest"
    assert copy("--dest-creds", pusher.creds, dest=public).returncode == 0
    assert copy(dest=public).returncode != 0
    info = _inspect(skopeo, token_registry, public, "--cert-dir", cert_dir)
    assert info["Digest"] == str(busybox_layout.manifest_digest)


def test_token_service_issues_tokens_distribution_accepts(
    token_registry: RunningRegistry, test_ca: CertificateAuthority, unique_repo: str
) -> None:
    server = token_registry.token_server
    reader = token_registry.readonly_credentials
    assert server is not None and reader is not None
    http = _http(token_registry)
    basic = "Basic " + base64.b64encode(reader.creds.encode()).decode()
    scope = f"repository:{unique_repo}:pull,push"

    answer = http.request(
        "GET",
        server.realm,
        fields={"service": server.service, "scope": scope, "account": reader.username},
        headers={"Authorization": basic},
    )
    assert answer.status == 200
    body = json.loads(answer.data)
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == server.lifetime
    assert body["issued_at"].endswith("Z")

    header, claims, signature = decode_jwt(body["token"])
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    leaf.verify_directly_issued_by(test_ca.certificate)
    signed = body["token"].rsplit(".", 1)[0].encode()
    der = encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:]))
    public_key = leaf.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    assert claims["iss"] == server.issuer and claims["aud"] == server.service
    assert claims["sub"] == reader.username
    assert claims["exp"] - claims["iat"] == server.lifetime
    assert claims["nbf"] <= claims["iat"] and claims["jti"]
    assert claims["access"] == [{"type": "repository", "name": unique_repo, "actions": ["pull"]}]

    # Distribution accepts the token: an unknown repository is 404, not 401
    tags = http.request(
        "GET",
        f"{token_registry.url}/v2/{unique_repo}/tags/list",
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert tags.status == 404, tags.data
    # ...and a token without the action is refused
    anonymous = json.loads(http.request("GET", server.realm, fields={"scope": scope}).data)
    assert decode_jwt(anonymous["token"])[1]["access"][0]["actions"] == []
    refused = http.request(
        "GET",
        f"{token_registry.url}/v2/{unique_repo}/tags/list",
        headers={"Authorization": f"Bearer {anonymous['token']}"},
    )
    assert refused.status == 401
    assert "insufficient_scope" in refused.headers.get("WWW-Authenticate", "")

    wrong = http.request(
        "GET",
        server.realm,
        fields={"scope": scope},
        headers={"Authorization": "Basic " + base64.b64encode(b"reader:x").decode()},
    )
    assert wrong.status == 401

    # OAuth2 password grant, then the refresh token
    form = {
        "grant_type": "password",
        "username": reader.username,
        "password": reader.password,
        "service": server.service,
        "scope": scope,
        "client_id": "skiff-tests",
        "access_type": "offline",
    }
    posted = http.request_encode_body("POST", server.realm, fields=form, encode_multipart=False)
    assert posted.status == 200
    oauth = json.loads(posted.data)
    assert decode_jwt(oauth["access_token"])[1]["access"][0]["actions"] == ["pull"]
    refreshed = http.request_encode_body(
        "POST",
        server.realm,
        encode_multipart=False,
        fields={
            "grant_type": "refresh_token",
            "refresh_token": oauth["refresh_token"],
            "service": server.service,
            "scope": scope,
            "client_id": "skiff-tests",
        },
    )
    assert refreshed.status == 200
    assert decode_jwt(json.loads(refreshed.data)["access_token"])[1]["sub"] == reader.username
    no_client = http.request_encode_body(
        "POST", server.realm, encode_multipart=False, fields={**form, "client_id": ""}
    )
    assert no_client.status == 400

    server.inject_failures(503, times=1)
    assert http.request("GET", server.realm, fields={"scope": scope}).status == 503
    assert http.request("GET", server.realm, fields={"scope": scope}).status == 200


def test_private_registry_storage_can_be_corrupted(
    registry_factory: Callable[..., RunningRegistry],
    busybox_layout: BusyboxImage,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    private = registry_factory(Variant.PLAIN)
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        busybox_layout.reference,
        f"docker://{private.host}/corrupt/me:latest",
        registry=private,
    )
    config = busybox_layout.config_digest
    path = private.blob_path(config)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    served = _http().request("GET", f"{private.url}/v2/corrupt/me/blobs/{config}").data
    assert hashlib.sha256(served).hexdigest() != config.hex


# --- fault proxy ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The busybox image in the plain registry; returns the repository."""
    policy = tmp_path_factory.mktemp("policy") / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    repo = "fixtures/proxied"
    subprocess.run(
        [
            "skopeo",
            "--policy",
            str(policy),
            "copy",
            "--dest-tls-verify=false",
            busybox_layout.reference,
            f"docker://{registry.host}/{repo}:latest",
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env={
            **os.environ,
            "CONTAINERS_REGISTRIES_CONF": str(registry.registries_conf),
            "REGISTRY_AUTH_FILE": str(registry.auth_file),
        },
    )
    return repo


def test_proxy_forwards_untouched(fault_proxy: FaultProxy, registry: RunningRegistry) -> None:
    http = _http()
    answer = http.request("GET", f"{fault_proxy.url}/v2/")
    assert answer.status == 200
    assert answer.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert fault_proxy.requests[-1].fault is None


def test_proxy_fails_n_times(fault_proxy: FaultProxy) -> None:
    http = _http()
    fault = fault_proxy.fail(r"^/v2/$", 500, times=2)
    statuses = [http.request("GET", f"{fault_proxy.url}/v2/").status for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert fault.hits == 2
    assert [r.status for r in fault_proxy.requests] == [500, 500, 200]

    fault_proxy.fail(r"/v2/", 429, headers={"Retry-After": "2"}, method="GET")
    limited = http.request("GET", f"{fault_proxy.url}/v2/")
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "2"
    assert json.loads(limited.data)["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert http.request("HEAD", f"{fault_proxy.url}/v2/").status == 200


def test_proxy_truncates_and_corrupts_blobs(
    fault_proxy: FaultProxy, busybox_layout: BusyboxImage, pushed: str
) -> None:
    layer = busybox_layout.layer_digests[0]
    url = f"{fault_proxy.url}/v2/{pushed}/blobs/{layer}"
    original = _blob_bytes(busybox_layout, layer)
    http = _http()

    fault_proxy.truncate(r"/blobs/", after=1000)
    response = http.request("GET", url, preload_content=False, enforce_content_length=True)
    assert response.headers["Content-Length"] == str(len(original))
    received = bytearray()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for chunk in response.stream(500):
            received += chunk
    assert bytes(received) == original[:1000]
    assert fault_proxy.requests[-1].body_bytes == 1000

    fault_proxy.corrupt(r"/blobs/", offsets=(5, 70_000))
    corrupted = http.request("GET", url).data
    assert len(corrupted) == len(original)
    diffs = [i for i, (a, b) in enumerate(zip(corrupted, original, strict=True)) if a != b]
    assert diffs == [5, 70_000]

    assert http.request("GET", url).data == original  # the rules were used up


def test_proxy_passes_ranges_delays_redirects_and_drops(
    fault_proxy: FaultProxy, registry: RunningRegistry, busybox_layout: BusyboxImage, pushed: str
) -> None:
    layer = busybox_layout.layer_digests[0]
    path = f"/v2/{pushed}/blobs/{layer}"
    original = _blob_bytes(busybox_layout, layer)
    http = _http()

    ranged = http.request("GET", fault_proxy.url + path, headers={"Range": "bytes=10-99"})
    assert ranged.status == 206
    assert ranged.data == original[10:100]
    assert fault_proxy.requests[-1].headers["range"] == "bytes=10-99"

    fault_proxy.delay(r"^/v2/$", 0.3)
    started = time.monotonic()
    assert http.request("GET", f"{fault_proxy.url}/v2/").status == 200
    assert time.monotonic() - started >= 0.3

    fault_proxy.redirect(r"/blobs/", registry.url)
    moved = http.request("GET", fault_proxy.url + path, redirect=False)
    assert moved.status == 307
    assert moved.headers["Location"] == registry.url + path
    fault_proxy.redirect(r"/blobs/", registry.url)
    followed = urllib3.PoolManager(retries=urllib3.Retry(total=3, redirect=2)).request(
        "GET", fault_proxy.url + path
    )
    assert followed.status == 200 and followed.data == original

    fault_proxy.drop(r"^/v2/$")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        http.request("GET", f"{fault_proxy.url}/v2/")
    assert fault_proxy.requests[-1].status == 0


def test_proxy_carries_a_push(
    fault_proxy: FaultProxy,
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """Uploads (POST, chunked PATCH, PUT with Location through the proxy) stream through."""
    repo = f"{fault_proxy.host}/fixtures/via-proxy:latest"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        busybox_layout.reference,
        f"docker://{repo}",
        registry=registry,
    )
    methods = {r.method for r in fault_proxy.requests}
    assert {"POST", "PUT"} <= methods, methods
    info = _inspect(
        skopeo, registry, f"{registry.host}/fixtures/via-proxy:latest", "--tls-verify=false"
    )
    assert info["Digest"] == str(busybox_layout.manifest_digest)


def test_tls_proxy_in_front_of_tls_registry(
    fault_proxy_factory: Callable[..., FaultProxy],
    tls_registry: RunningRegistry,
) -> None:
    proxy = fault_proxy_factory(tls_registry, tls=True)
    assert proxy.url.startswith("https://")
    assert tls_registry.certs_dir is not None
    assert (tls_registry.certs_dir / proxy.host / "ca.crt").is_file()
    assert _http(tls_registry).request("GET", f"{proxy.url}/v2/").status == 200


# --- busybox -------------------------------------------------------------------


def test_busybox_layout_is_deterministic_and_well_formed(
    busybox_layout: BusyboxImage, tmp_shm: Path
) -> None:
    again = build_busybox_layout(tmp_shm / "again")
    assert again.manifest_digest == busybox_layout.manifest_digest
    assert again.layer_digests == busybox_layout.layer_digests

    layout = busybox_layout.layout
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"][REF_NAME_ANNOTATION] == "latest"
    assert entry["digest"] == str(busybox_layout.manifest_digest)

    raw = busybox_layout.manifest_bytes()
    busybox_layout.manifest_digest.verify_bytes(raw, "manifest")
    manifest = parse_manifest(raw, mt.OCI_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    assert [d.media_type for d in manifest.layers] == [mt.OCI_LAYER_GZIP]
    config = ImageConfig.from_bytes(busybox_layout.config_bytes())
    assert config.cmd == ["sh"]
    assert config.env[0].startswith("PATH=")
    assert config.architecture == busybox_layout.platform.architecture and config.os == "linux"
    assert tuple(config.diff_ids) == busybox_layout.diff_ids
    tar = gzip.decompress(_blob_bytes(busybox_layout, busybox_layout.layer_digests[0]))
    assert hashlib.sha256(tar).hexdigest() == busybox_layout.diff_ids[0].hex


def test_busybox_extra_files_tags_and_overrides(tmp_shm: Path) -> None:
    dest = tmp_shm / "layout"
    base = build_busybox_layout(dest)
    custom = build_busybox_layout(
        dest,
        tag="custom",
        extra_files={"/srv/run.sh": b"#!/bin/sh\necho hi\n"},
        config_overrides={"config": {"User": "www"}},
    )
    assert custom.layer_digests != base.layer_digests
    config = ImageConfig.from_bytes(custom.config_bytes())
    assert config.user == "www" and config.cmd == ["sh"]
    tags = [
        m["annotations"][REF_NAME_ANNOTATION]
        for m in json.loads((dest / "index.json").read_text())["manifests"]
    ]
    assert tags == ["latest", "custom"]
    # re-tagging replaces the entry instead of adding one
    build_busybox_layout(dest, tag="custom")
    tags = [
        m["annotations"][REF_NAME_ANNOTATION]
        for m in json.loads((dest / "index.json").read_text())["manifests"]
    ]
    assert tags == ["latest", "custom"]


def test_layered_images_share_their_common_layers(
    busybox_layout: BusyboxImage,
    tmp_shm: Path,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
    registry: RunningRegistry,
) -> None:
    three = build_layered_layout(tmp_shm / "a", 3)
    assert len(three.layer_digests) == 4 and len(three.diff_ids) == 4
    assert three.layer_digests[0] == busybox_layout.layer_digests[0]
    other = build_layered_layout(
        tmp_shm / "b", [{"layers/0.txt": b"layer 0\n"}, {"other.txt": b"different\n"}]
    )
    assert other.layer_digests[:2] == three.layer_digests[:2]
    assert other.layer_digests[2] != three.layer_digests[2]
    bare = build_layered_layout(tmp_shm / "c", 2, with_busybox=False)
    assert len(bare.layer_digests) == 2
    assert bare.layer_digests == three.layer_digests[1:3]

    out = skopeo("inspect", three.reference, registry=registry).stdout
    assert json.loads(out)["Layers"] == [str(d) for d in three.layer_digests]


def test_umoci_unpacks_a_runnable_busybox(busybox_layout: BusyboxImage, tmp_shm: Path) -> None:
    bundle = tmp_shm / "bundle"
    subprocess.run(
        [
            "umoci",
            "unpack",
            "--image",
            f"{busybox_layout.layout}:{busybox_layout.tag}",
            str(bundle),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rootfs = bundle / "rootfs"
    busybox = rootfs / "bin" / "busybox"
    assert busybox.stat().st_mode & 0o111
    echoed = subprocess.run(
        [str(busybox), "echo", "hello"], capture_output=True, text=True, check=True
    )
    assert echoed.stdout == "hello\n"
    assert os.readlink(rootfs / "bin" / "sh") == "/bin/busybox"
    assert os.readlink(rootfs / "usr" / "bin" / "wget") == "/bin/busybox"
    assert "www:x:1000:1000:" in (rootfs / "etc" / "passwd").read_text()
    assert "www:x:1000:" in (rootfs / "etc" / "group").read_text()
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((rootfs / "root").stat().st_mode) == 0o700
    assert (rootfs / "var" / "www" / "index.html").read_bytes().startswith(b"<html>")
    assert (rootfs / "etc" / "hosts").stat().st_size == 0
    assert (rootfs / "etc" / "resolv.conf").exists()


def test_proxy_streams_chunked_uploads(fault_proxy: FaultProxy, registry: RunningRegistry) -> None:
    """A chunked PATCH (what a client sends when it does not know the size) goes through."""
    payload = os.urandom(300_000)
    digest = Digest.from_bytes(payload)
    http = _http()
    started = http.request("POST", f"{fault_proxy.url}/v2/fixtures/chunked/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"]
    assert location.startswith(fault_proxy.url), "upload Location must lead back through the proxy"

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(payload), 50_000):
            yield payload[i : i + 50_000]

    patched = http.request(
        "PATCH",
        location,
        body=pieces(),
        chunked=True,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert patched.status == 202, patched.data
    assert fault_proxy.requests[-1].headers.get("transfer-encoding") == "chunked"
    sep = "&" if "?" in patched.headers["Location"] else "?"
    done = http.request("PUT", f"{patched.headers['Location']}{sep}digest={digest}")
    assert done.status == 201, done.data
    served = http.request("GET", f"{registry.url}/v2/fixtures/chunked/blobs/{digest}").data
    assert served == payload
