"""Signing and the trust policy through the copy engine, against a real registry.

Keys live in a throw-away GNUPGHOME (``GNUPGHOME`` is set for the test);
every test writes its own policy.json and registries.d and points its
SystemContext at them, so the host's policy and keyring never matter.

The copy engine enforces the policy by itself (no ``policy_check`` is
passed anywhere here), the docker transport reads and writes signatures
where registries.d says. Each refusal must name the image, the policy
scope and the reason, and leave nothing in the destination store.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import ConfigError, PolicyRejected, SignatureError
from skiff.image.copy import CopyOptions, CopyReport, copy_image
from skiff.image.transports import parse_image_name
from skiff.oci.digest import Digest
from skiff.signature import sigstore
from skiff.signature.errors import (
    ImageRejected,
    InvalidSignature,
    SignedDigestMismatch,
    SignedIdentityMismatch,
    UntrustedSigner,
)
from skiff.signature.mechanism import GPGMechanism
from skiff.signature.signing import (
    gpg_signer,
    sign_image,
    sigstore_signer,
    standalone_sign,
    standalone_verify,
)
from skiff.storage.store import Store, StoreOptions
from skiff.testing.busybox import BusyboxImage, build_busybox_layout
from skiff.testing.registry import RunningRegistry
from skiff.testing.tlsutil import LoopbackServer

ACCEPT = [{"type": "insecureAcceptAnything"}]


@dataclass(frozen=True)
class Keys:
    home: Path
    alice: str
    bob: str
    alice_pub: Path
    bob_pub: Path


def _gen(home: Path, uid: str) -> str:
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    [fingerprint] = GPGMechanism(home).fingerprints_of(uid)
    return fingerprint


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    base = tmp_path_factory.mktemp("signing-keys")
    home = base / "gnupg"
    home.mkdir(mode=0o700)
    alice = _gen(home, "Alice <alice@example.com>")
    bob = _gen(home, "Bob <bob@example.com>")
    pubs = []
    for name, fpr in (("alice", alice), ("bob", bob)):
        path = base / f"{name}.pub"
        path.write_bytes(
            subprocess.run(
                ["gpg", "--homedir", str(home), "--armor", "--export", fpr],
                check=True,
                capture_output=True,
            ).stdout
        )
        pubs.append(path)
    yield Keys(home, alice, bob, pubs[0], pubs[1])
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


@pytest.fixture
def gnupghome(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Keys:
    monkeypatch.setenv("GNUPGHOME", str(keys.home))
    return keys


class World:
    """One test's policy, registries.d, lookaside and store, and its registry."""

    def __init__(self, base: Path, registry: RunningRegistry, repo: str) -> None:
        self.base = base
        self.registry = registry
        self.repo = repo
        self.policy = base / "policy.json"
        self.registries_d = base / "registries.d"
        self.registries_d.mkdir()
        self.lookaside = base / "lookaside"
        (base / "tmp").mkdir()
        self.write_registries_d({"lookaside": self.lookaside.as_uri()})
        self.set_policy(ACCEPT)
        self.ctx = replace(
            registry.context,
            policy_path=self.policy,
            registries_d=self.registries_d,
            storage_root=base / "root",
            run_root=base / "run",
            storage_driver="vfs",
            tmp_dir=base / "tmp",
            lookaside_timeout=1.0,
        )

    def write_registries_d(self, section: dict[str, Any]) -> None:
        import yaml

        text = yaml.safe_dump({"docker": {self.registry.host: section}})
        (self.registries_d / "test.yaml").write_text(text)

    def set_policy(self, registry_requirements: list[dict[str, Any]], default: Any = None) -> None:
        self.policy.write_text(
            json.dumps(
                {
                    "default": default or ACCEPT,
                    "transports": {"docker": {self.registry.host: registry_requirements}},
                }
            )
        )

    def signed_by(self, *pubs: Path, identity: dict[str, Any] | None = None) -> dict[str, Any]:
        requirement: dict[str, Any] = {"type": "signedBy", "keyType": "GPGKeys"}
        if len(pubs) == 1:
            requirement["keyPath"] = str(pubs[0])
        else:
            requirement["keyPaths"] = [str(p) for p in pubs]
        if identity is not None:
            requirement["signedIdentity"] = identity
        return requirement

    def image(self, tag: str, repo: str | None = None) -> str:
        return f"docker://{self.registry.host}/{repo or self.repo}:{tag}"

    def push(
        self, image: BusyboxImage, tag: str, signers: list[Any] | None = None, **kw: Any
    ) -> CopyReport:
        options = CopyOptions(signers=list(signers or []))
        return copy_image(
            parse_image_name(image.reference),
            parse_image_name(self.image(tag, kw.get("repo"))),
            options,
            self.ctx,
            self.ctx,
        )

    def pull(self, tag: str, name: str = "pulled", repo: str | None = None) -> CopyReport:
        dest = f"containers-storage:[vfs@{self.base / 'root'}+{self.base / 'run'}]localhost/{name}"
        return copy_image(
            parse_image_name(self.image(tag, repo)), parse_image_name(dest), None, self.ctx
        )

    def signature_dir(self, digest: Digest, repo: str | None = None) -> Path:
        return self.lookaside / f"{repo or self.repo}@{digest.algorithm}={digest.hex}"

    def store_images(self) -> list[str]:
        root = self.base / "root"
        if not root.exists():
            return []
        store = Store(StoreOptions(root=root, run_root=self.base / "run", driver="vfs"))
        try:
            return [image.id for image in store.images.all()]
        finally:
            store.close()

    def refused(self, tag: str, *fragments: str, error: type[Exception] = ImageRejected) -> Any:
        before = self.store_images()
        with pytest.raises(error) as info:
            self.pull(tag, name="refused")
        message = str(info.value)
        assert f"{self.registry.host}/{self.repo}:{tag}" in message, message
        for fragment in fragments:
            assert fragment in message, message
        assert self.store_images() == before, "a refused image must leave nothing in the store"
        return info.value


@pytest.fixture
def world(tmp_shm: Path, registry: RunningRegistry, unique_repo: str) -> World:
    return World(tmp_shm, registry, unique_repo)


@pytest.fixture(scope="module")
def second_image(tmp_path_factory: pytest.TempPathFactory) -> BusyboxImage:
    """Another image (another manifest digest) to swap in."""
    base = tmp_path_factory.mktemp("second")
    return build_busybox_layout(
        base / "layout", config_overrides={"config": {"Env": ["SWAPPED=1"]}}
    )


SCOPE = 'scope docker "{host}"'


# --- signing on push, verifying on pull ---------------------------------------------------


def test_signed_push_then_verified_pull(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage
) -> None:
    report = world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
    assert report.signatures_written == 1
    stored = world.signature_dir(report.manifest_digest)
    assert [p.name for p in stored.iterdir()] == ["signature-1"]  # containers/image's layout

    world.set_policy([world.signed_by(gnupghome.alice_pub)], default=[{"type": "reject"}])
    pulled = world.pull("v1")
    assert pulled.source_manifest_digest == report.manifest_digest
    assert pulled.signatures_written == 1  # the store keeps the signature with the image
    src = parse_image_name(
        f"containers-storage:[vfs@{world.base / 'root'}+{world.base / 'run'}]localhost/pulled"
    ).new_image_source(world.ctx)
    try:
        assert src.get_signatures() == [stored.joinpath("signature-1").read_bytes()]
    finally:
        src.close()


def test_policy_is_enforced_without_being_asked(world: World, busybox_layout: BusyboxImage) -> None:
    world.push(busybox_layout, "v1")
    world.set_policy([{"type": "reject"}])
    # copy_image gets no policy_check: the engine reads world.policy itself
    world.refused("v1", SCOPE.format(host=world.registry.host), "'reject'", str(world.policy))
    # --insecure-policy skips it
    insecure = replace(world.ctx, insecure_policy=True)
    dest = f"oci:{world.base / 'out'}:x"
    copy_image(parse_image_name(world.image("v1")), parse_image_name(dest), None, insecure)


def test_several_signers_side_by_side(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage
) -> None:
    report = world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
    signed = sign_image(world.ctx, world.image("v1"), gnupghome.bob)
    assert [s.digest for s in signed] == [report.manifest_digest]
    stored = world.signature_dir(report.manifest_digest)
    assert sorted(p.name for p in stored.iterdir()) == ["signature-1", "signature-2"]
    # a policy trusting only bob accepts: one signature satisfying signedBy is enough
    world.set_policy([world.signed_by(gnupghome.bob_pub)])
    world.pull("v1", name="bob")
    # two requirements: both must hold
    world.set_policy([world.signed_by(gnupghome.alice_pub), world.signed_by(gnupghome.bob_pub)])
    world.pull("v1", name="both")
    # keyPaths: either key
    world.set_policy([world.signed_by(gnupghome.alice_pub, gnupghome.bob_pub)])
    world.pull("v1", name="either")


def test_sign_image_into_a_directory(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage
) -> None:
    world.push(busybox_layout, "v1")
    out = world.base / "sigs"
    [done] = sign_image(world.ctx, world.image("v1"), gnupghome.alice, directory=out)
    assert (out / f"{world.repo}@sha256={done.digest.hex}" / "signature-1").is_file()


# --- bad input: each refused with image, scope and reason, nothing stored ----------------


def test_untrusted_key(world: World, gnupghome: Keys, busybox_layout: BusyboxImage) -> None:
    world.push(busybox_layout, "v1", [gpg_signer(gnupghome.bob)])
    world.set_policy([world.signed_by(gnupghome.alice_pub)])
    exc = world.refused(
        "v1",
        SCOPE.format(host=world.registry.host),
        f"signed by key {gnupghome.bob}, which is not trusted",
    )
    assert [type(r) for r in exc.reasons] == [UntrustedSigner]
    assert gnupghome.alice in (exc.hint or "")


def test_signature_for_another_digest(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage, second_image: BusyboxImage
) -> None:
    signed = world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
    # the registry's manifest is swapped, and the attacker copies the valid
    # signature to where the new manifest's signatures are looked for
    swapped = world.push(second_image, "v1")
    assert swapped.manifest_digest != signed.manifest_digest
    shutil.copytree(
        world.signature_dir(signed.manifest_digest), world.signature_dir(swapped.manifest_digest)
    )
    world.set_policy([world.signed_by(gnupghome.alice_pub)])
    exc = world.refused(
        "v1",
        f"signs manifest {signed.manifest_digest}",
        f"the manifest fetched is {swapped.manifest_digest}",
    )
    assert [type(r) for r in exc.reasons] == [SignedDigestMismatch]


def test_signature_for_another_repository(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage
) -> None:
    other = world.repo + "-other"
    signed = world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)], repo=other)
    world.push(busybox_layout, "v1")  # same manifest, other repository, no signature
    target = world.signature_dir(signed.manifest_digest)
    shutil.copytree(world.signature_dir(signed.manifest_digest, other), target)
    world.set_policy([world.signed_by(gnupghome.alice_pub)])
    exc = world.refused(
        "v1", f"signed for '{world.registry.host}/{other}:v1'", "matchRepoDigestOrExact"
    )
    assert [type(r) for r in exc.reasons] == [SignedIdentityMismatch]
    # matchRepository would not help either; exactRepository naming the other one does
    world.set_policy(
        [
            world.signed_by(
                gnupghome.alice_pub,
                identity={
                    "type": "exactRepository",
                    "dockerRepository": f"{world.registry.host}/{other}",
                },
            )
        ]
    )
    world.pull("v1")


def test_corrupt_signature_bytes(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage
) -> None:
    report = world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
    path = world.signature_dir(report.manifest_digest) / "signature-1"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    world.set_policy([world.signed_by(gnupghome.alice_pub)])
    exc = world.refused("v1", "signature 1:")
    assert [type(r) for r in exc.reasons] == [InvalidSignature]


def test_empty_lookaside(world: World, gnupghome: Keys, busybox_layout: BusyboxImage) -> None:
    world.push(busybox_layout, "v1")
    world.set_policy([world.signed_by(gnupghome.alice_pub)])
    world.refused(
        "v1",
        "signedBy requires a simple signature, but the image has none",
        f"looked in lookaside {world.lookaside.as_uri()}/{world.repo}@sha256=",
    )


def test_reject_scope(world: World, busybox_layout: BusyboxImage) -> None:
    world.push(busybox_layout, "v1")
    world.set_policy([{"type": "reject"}])
    world.refused("v1", SCOPE.format(host=world.registry.host), "'reject'")


@pytest.mark.parametrize(
    ("policy_text", "fragment"),
    [
        ("{ this is not json", "not valid JSON"),
        ('{"default": [{"type": "acceptIfSigned"}]}', "unknown requirement type 'acceptIfSigned'"),
        (
            '{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}',
            "exactly one of keyPath, keyPaths, keyData",
        ),
    ],
)
def test_malformed_policy(
    world: World, busybox_layout: BusyboxImage, policy_text: str, fragment: str
) -> None:
    world.push(busybox_layout, "v1")
    world.policy.write_text(policy_text)
    with pytest.raises(ConfigError) as info:
        world.pull("v1")
    assert fragment in str(info.value)
    assert str(world.policy) in str(info.value)
    assert world.store_images() == []


def test_missing_key_file(world: World, busybox_layout: BusyboxImage, gnupghome: Keys) -> None:
    world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
    world.set_policy([world.signed_by(world.base / "absent.pub")])
    with pytest.raises(ConfigError, match=r"cannot read key .*absent\.pub"):
        world.pull("v1")
    assert world.store_images() == []


class _Silent(BaseHTTPRequestHandler):
    """Accepts the request and never answers (until the test releases it)."""

    def do_GET(self) -> None:
        self.server.release.wait(10)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


def test_lookaside_server_that_times_out(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage
) -> None:
    world.push(busybox_layout, "v1")
    server = LoopbackServer(_Silent)
    server.release = threading.Event()  # type: ignore[attr-defined]
    server.start()
    try:
        world.write_registries_d({"lookaside": f"{server.url}/sigs"})
        world.set_policy([world.signed_by(gnupghome.alice_pub)])
        with pytest.raises(SignatureError) as info:
            world.pull("v1")
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.stop()
    message = str(info.value)
    assert f"{world.registry.host}/{world.repo}:v1" in message
    assert SCOPE.format(host=world.registry.host) in message
    assert "no answer within 1 s" in message
    assert world.store_images() == []


class _Files(BaseHTTPRequestHandler):
    """Serves a directory (the lookaside as a web server would)."""

    def do_GET(self) -> None:
        root: Path = self.server.root  # type: ignore[attr-defined]
        path = root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_http_lookaside(world: World, gnupghome: Keys, busybox_layout: BusyboxImage) -> None:
    # write to a staging directory, read back over http from a server on loopback
    server = LoopbackServer(_Files)
    server.root = world.lookaside  # type: ignore[attr-defined]
    server.start()
    try:
        world.write_registries_d(
            {"lookaside": f"{server.url}/", "lookaside-staging": world.lookaside.as_uri()}
        )
        world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
        world.set_policy([world.signed_by(gnupghome.alice_pub)])
        assert world.pull("v1").signatures_written == 1
    finally:
        server.stop()


# --- where signatures live ----------------------------------------------------------------


def test_dir_keeps_signatures(world: World, gnupghome: Keys, busybox_layout: BusyboxImage) -> None:
    world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
    directory = world.base / "dir-copy"
    src = parse_image_name(world.image("v1"))
    report = copy_image(src, parse_image_name(f"dir:{directory}"), None, world.ctx)
    assert report.signatures_written == 1
    signature = (directory / "signature-1").read_bytes()
    # carried over unchanged when the manifest is copied byte for byte
    again = world.base / "dir-copy-2"
    copy_image(
        parse_image_name(f"dir:{directory}"), parse_image_name(f"dir:{again}"), None, world.ctx
    )
    assert (again / "signature-1").read_bytes() == signature


def test_oci_drops_signatures_with_a_warning(
    world: World, gnupghome: Keys, busybox_layout: BusyboxImage, caplog: pytest.LogCaptureFixture
) -> None:
    world.push(busybox_layout, "v1", [gpg_signer(gnupghome.alice)])
    with caplog.at_level(logging.WARNING, logger="skiff"):
        report = copy_image(
            parse_image_name(world.image("v1")),
            parse_image_name(f"oci:{world.base / 'layout'}:x"),
            None,
            world.ctx,
        )
    assert report.signatures_written == 0
    assert "cannot store signatures; dropping 1 signature(s)" in caplog.text


# --- sigstore -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sigstore_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sigstore")
    return sigstore.write_key_pair(base / "key", sigstore.generate_key_pair("pass"))


def test_sigstore_attachments(
    world: World, busybox_layout: BusyboxImage, sigstore_keys: tuple[Path, Path]
) -> None:
    public, private = sigstore_keys
    world.write_registries_d({"use-sigstore-attachments": True})
    report = world.push(busybox_layout, "v1", [sigstore_signer(private, "pass")])
    assert report.signatures_written == 1
    tag = f"sha256-{report.manifest_digest.hex}.sig"
    attached = world.image(tag)
    raw, _ = parse_image_name(attached).new_image_source(world.ctx).get_manifest()
    layer = json.loads(raw)["layers"][0]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert "dev.cosignproject.cosign/signature" in layer["annotations"]

    world.set_policy([{"type": "sigstoreSigned", "keyPath": str(public)}])
    world.pull("v1")
    other = world.base / "other"
    other_public, _ = sigstore.write_key_pair(other, sigstore.generate_key_pair("x"))
    world.set_policy([{"type": "sigstoreSigned", "keyPath": str(other_public)}])
    exc = world.refused("v1", "does not verify with the policy's public key")
    assert [type(r) for r in exc.reasons] == [InvalidSignature]


def test_sigstore_needs_attachments_enabled(
    world: World, busybox_layout: BusyboxImage, sigstore_keys: tuple[Path, Path]
) -> None:
    _, private = sigstore_keys
    with pytest.raises(SignatureError, match="use-sigstore-attachments"):
        world.push(busybox_layout, "v1", [sigstore_signer(private, "pass")])


# --- standalone ----------------------------------------------------------------------------


def test_standalone_sign_and_verify(gnupghome: Keys, busybox_layout: BusyboxImage) -> None:
    manifest = busybox_layout.manifest_bytes()
    signature = standalone_sign(manifest, "quay.io/a/b:1", gnupghome.alice)
    result = standalone_verify(manifest, "quay.io/a/b:1", [gnupghome.alice], signature)
    assert result.fingerprint == gnupghome.alice
    assert result.digest == busybox_layout.manifest_digest
    with pytest.raises(UntrustedSigner, match="does not match the expected fingerprint"):
        standalone_verify(manifest, "quay.io/a/b:1", [gnupghome.bob], signature)
    with pytest.raises(SignedIdentityMismatch):
        standalone_verify(manifest, "quay.io/a/b:2", [gnupghome.alice], signature)
    with pytest.raises(SignedDigestMismatch):
        standalone_verify(manifest + b"\n", "quay.io/a/b:1", [gnupghome.alice], signature)


def test_rejection_is_a_policy_error(world: World, busybox_layout: BusyboxImage) -> None:
    world.push(busybox_layout, "v1")
    world.set_policy([{"type": "reject"}])
    with pytest.raises(PolicyRejected):
        world.pull("v1")


# --- the README's walkthrough -------------------------------------------------------------


def test_readme_trust_section_runs_as_written(tmp_shm: Path) -> None:
    """README.md's "Trust" block, line by line in bash, as a reader pastes it.

    Only the registry port (5000 may be taken) and /tmp/skiff-trust (into the
    test's tmpfs directory) are changed. Both refusals must happen: their
    ``|| echo`` lines are the proof, since an accepting pull prints no echo.
    """
    import os
    import re
    import socket

    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.skip("needs docker-registry and skopeo")
    repo = Path(__file__).resolve().parents[2]
    section = (repo / "README.md").read_text().split("## Trust", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = block.group(1).replace("localhost:5000", f"localhost:{port}")
    script = script.replace("/tmp/skiff-trust", str(tmp_shm / "skiff-trust"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_shm),
        "XDG_RUNTIME_DIR": str(tmp_shm),
        "TMPDIR": str(tmp_shm),
        "DEMO_REGISTRY_PORT": str(port),
    }
    try:
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        subprocess.run(
            ["scripts/demo-registry", "stop"], cwd=repo, env=env, capture_output=True, check=False
        )
        gnupg = tmp_shm / "skiff-trust" / "gnupg"
        if gnupg.exists():
            subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refused: nothing signed :latest" in result.stdout
    assert "refused: tampered" in result.stdout
    assert "signature-1" in result.stdout
    assert result.stderr.count("rejected by policy") == 2, result.stderr


# --- trust show / set through the CLI -------------------------------------------------------


def test_trust_set_and_show(tmp_shm: Path, keys: Keys) -> None:
    from skiff.testing.cli import CliEnv

    cli = CliEnv(tmp_shm / "env")
    policy, registries_d = tmp_shm / "policy.json", tmp_shm / "registries.d"
    flags = ["--policy", str(policy), "--registries.d", str(registries_d)]
    cli.skiff(*flags, "image", "trust", "set", "--type", "reject", "default")
    cli.skiff(
        *flags, "image", "trust", "set", "-f", keys.alice_pub, "-f", keys.bob_pub,
        "--lookaside", "https://sigs.example.com", "quay.io/team",
    )  # fmt: skip
    cli.skiff(*flags, "image", "trust", "set", "-t", "accept", "docker.io")
    document = json.loads(policy.read_text())
    assert document == {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "quay.io/team": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPaths": [str(keys.alice_pub), str(keys.bob_pub)],
                    }
                ],
                "docker.io": [{"type": "insecureAcceptAnything"}],
            }
        },
    }
    assert "https://sigs.example.com" in (registries_d / "skiff-trust.yaml").read_text()
    shown = cli.skiff(*flags, "image", "trust", "show", "--json").json()
    assert shown == [
        {"transport": "all", "name": "default", "repo_name": "default", "type": "reject"},
        {
            "transport": "repository",
            "name": "quay.io/team",
            "repo_name": "quay.io/team",
            "type": "signed",
            "gpg_id": "alice@example.com, bob@example.com",
            "sigstore": "https://sigs.example.com",
        },
        {
            "transport": "repository",
            "name": "docker.io",
            "repo_name": "docker.io",
            "type": "accept",
        },
    ]
    table = cli.skiff(*flags, "image", "trust", "show").stdout.splitlines()
    assert table[0].split() == ["TRANSPORT", "NAME", "TYPE", "ID", "STORE"]
    assert cli.skiff(*flags, "image", "trust", "show", "--raw").stdout == policy.read_text()

    assert "at least one public key" in cli.fails(
        *flags, "image", "trust", "set", "-t", "signedBy", "quay.io/x"
    )
    assert "invalid scope" in cli.fails(*flags, "image", "trust", "set", "-t", "accept", "Bad!")
    assert "invalid trust type" in cli.fails(*flags, "image", "trust", "set", "-t", "maybe", "q.io")
    policy.write_text("{broken")
    assert "not valid JSON" in cli.fails(*flags, "image", "trust", "show")
    assert "not valid JSON" in cli.fails(*flags, "image", "trust", "set", "-t", "accept", "q.io")
    assert policy.read_text() == "{broken"  # a broken policy is not overwritten


def test_cli_signing_errors(tmp_shm: Path, busybox_layout: BusyboxImage, keys: Keys) -> None:
    from skiff.testing.cli import CliEnv

    cli = CliEnv(tmp_shm / "env")
    out = f"dir:{tmp_shm / 'out'}"
    # dir: has no Docker reference to sign as
    assert "no Docker reference" in cli.fails(
        "--insecure-policy", "image", "copy", "-q", "--sign-by", keys.alice,
        busybox_layout.reference, out, env={"GNUPGHOME": str(keys.home)},
    )  # fmt: skip
    assert not (tmp_shm / "out").exists()
    manifest = tmp_shm / "manifest.json"
    manifest.write_bytes(busybox_layout.manifest_bytes())
    assert "nobody@example.com" in cli.fails(
        "image", "standalone-sign", manifest, "quay.io/a:1", "nobody@example.com",
        "-o", tmp_shm / "sig", env={"GNUPGHOME": str(keys.home)},
    )  # fmt: skip
    assert not (tmp_shm / "sig").exists()
    assert "need --sign-by" in cli.fails(
        "image", "copy", "--sign-passphrase-file", "/dev/null", busybox_layout.reference, out
    )
    key_prefix = tmp_shm / "cosign"
    passphrase = tmp_shm / "pass"
    passphrase.write_text("pw\n")
    cli.skiff(
        "image", "generate-sigstore-key", "--output-prefix", key_prefix,
        "--passphrase-file", passphrase,
    )  # fmt: skip
    assert "already exists" in cli.fails(
        "image", "generate-sigstore-key", "--output-prefix", key_prefix,
        "--passphrase-file", passphrase,
    )  # fmt: skip
    assert "no terminal" in cli.fails("image", "generate-sigstore-key", "--output-prefix", "x")
    passphrase.write_text("wrong\n")
    assert "wrong passphrase" in cli.fails(
        "--insecure-policy", "image", "copy", "-q",
        "--sign-by-sigstore-private-key", f"{key_prefix}.private",
        "--sign-passphrase-file", passphrase, busybox_layout.reference, out,
    )  # fmt: skip
