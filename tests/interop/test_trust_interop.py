"""Signatures between skiff, skopeo and podman, through one lookaside and one registry.

- an image signed by ``skopeo copy --sign-by`` verifies under skiff's
  signedBy policy; the same image with its manifest swapped (and the
  signature copied along) is refused by both;
- an image signed by ``skiff image copy --sign-by`` is accepted by
  ``podman pull`` with a signedBy policy and the shared lookaside; the
  tampered one is refused by podman and skiff;
- skopeo's and skiff's standalone-sign/-verify read each other's files.

Sigstore has no peer here: Debian builds skopeo and podman with it
disabled ("Debian-local change: sigstore disabled"), both for signing and
for sigstoreSigned policies; tests/integration/test_signing.py covers it.

Keys are made in a throw-away GNUPGHOME; podman reads its policy.json and
registries.d from the test's $HOME/.config/containers (CliEnv sets HOME).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skiff.oci.digest import Digest
from skiff.signature.mechanism import GPGMechanism
from skiff.testing.busybox import BusyboxImage, build_busybox_layout
from skiff.testing.cli import CliEnv
from skiff.testing.registry import RunningRegistry

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("skopeo") is None or shutil.which("podman") is None,
        reason="skopeo and podman are needed",
    ),
]


class Trust:
    """A CliEnv with a GPG key, a lookaside shared by the three tools, and policies."""

    def __init__(self, base: Path, registry: RunningRegistry, repo: str) -> None:
        self.cli = CliEnv(base / "env", registries_conf=registry.registries_conf)
        self.registry = registry
        self.repo = repo
        self.gnupg = base / "gnupg"
        self.gnupg.mkdir(mode=0o700)
        subprocess.run(
            ["gpg", "--homedir", str(self.gnupg), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", "--quick-gen-key", "Signer <signer@example.com>", "ed25519",
             "sign", "never"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        [self.fingerprint] = GPGMechanism(self.gnupg).fingerprints_of("signer@example.com")
        self.pubkey = base / "signer.pub"
        self.pubkey.write_bytes(
            subprocess.run(
                ["gpg", "--homedir", str(self.gnupg), "--armor", "--export", self.fingerprint],
                check=True,
                capture_output=True,
            ).stdout
        )
        self.lookaside = base / "lookaside"
        # podman reads $HOME/.config/containers/{policy.json,registries.d}
        config = self.cli.home / ".config" / "containers"
        self.registries_d = config / "registries.d"
        self.registries_d.mkdir(parents=True)
        self.policy = config / "policy.json"
        self.write_registries_d({"lookaside": self.lookaside.as_uri()})
        self.set_policy({"type": "insecureAcceptAnything"})
        self.env = {"GNUPGHOME": str(self.gnupg)}

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.gnupg), "--kill", "all"], check=False)

    def write_registries_d(self, section: dict[str, Any]) -> None:
        import yaml

        text = yaml.safe_dump({"docker": {self.registry.host: section}})
        (self.registries_d / "shared.yaml").write_text(text)

    def set_policy(self, requirement: dict[str, Any]) -> None:
        self.policy.write_text(
            json.dumps(
                {
                    "default": [{"type": "insecureAcceptAnything"}],
                    "transports": {"docker": {f"{self.registry.host}/{self.repo}": [requirement]}},
                }
            )
        )

    def signed_by(self) -> dict[str, Any]:
        return {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(self.pubkey)}

    def image(self, tag: str) -> str:
        return f"docker://{self.registry.host}/{self.repo}:{tag}"

    def skiff(self, *args: str | Path, expect: int | None = 0) -> Any:
        return self.cli.skiff(
            "--policy", self.policy, "--registries.d", self.registries_d, *args,
            expect=expect, env=self.env,
        )  # fmt: skip

    def skopeo(self, *args: str | Path, expect: int | None = 0, policy: bool = False) -> Any:
        argv: list[str | Path] = ["--registries.d", self.registries_d]
        if policy:  # CliEnv passes its accept-anything --policy first; the last one wins
            argv += ["--policy", self.policy]
        return self.cli.skopeo(*argv, *args, expect=expect, env=self.env)

    def signature_dir(self, digest: Digest) -> Path:
        return self.lookaside / f"{self.repo}@sha256={digest.hex}"

    def digest_of(self, tag: str) -> Digest:
        out = self.skopeo(
            "inspect", "--tls-verify=false", "--format", "{{.Digest}}", self.image(tag)
        )
        return Digest.parse(out.stdout.strip())

    def tamper(self, tag: str, other: BusyboxImage) -> None:
        """Swap the manifest under ``tag`` and copy its valid signature along."""
        signed = self.digest_of(tag)
        self.skopeo("copy", "--dest-tls-verify=false", other.reference, self.image(tag))
        swapped = self.digest_of(tag)
        assert swapped != signed
        shutil.copytree(self.signature_dir(signed), self.signature_dir(swapped))


@pytest.fixture
def trust(tmp_shm: Path, registry: RunningRegistry, unique_repo: str) -> Any:
    world = Trust(tmp_shm, registry, unique_repo)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture(scope="module")
def other_image(tmp_path_factory: pytest.TempPathFactory) -> BusyboxImage:
    base = tmp_path_factory.mktemp("other-image")
    return build_busybox_layout(base / "layout", config_overrides={"config": {"Env": ["X=1"]}})


def test_skopeo_signs_skiff_verifies(
    trust: Trust, busybox_layout: BusyboxImage, other_image: BusyboxImage
) -> None:
    trust.skopeo(
        "copy", "--dest-tls-verify=false", "--sign-by", trust.fingerprint,
        busybox_layout.reference, trust.image("v1"),
    )  # fmt: skip
    assert (trust.signature_dir(busybox_layout.manifest_digest) / "signature-1").is_file()
    trust.set_policy(trust.signed_by())
    out = trust.cli.base / "verified"
    trust.skiff("image", "copy", "--src-tls-verify=false", trust.image("v1"), f"dir:{out}")
    assert (out / "signature-1").is_file()

    trust.tamper("v1", other_image)
    line = trust.cli.fails(
        "--policy", trust.policy, "--registries.d", trust.registries_d,
        "image", "copy", "--src-tls-verify=false", trust.image("v1"),
        f"dir:{trust.cli.base / 'tampered'}",
    )  # fmt: skip
    assert "rejected by policy" in line
    assert f"signs manifest {busybox_layout.manifest_digest}" in line
    assert not (trust.cli.base / "tampered").exists()
    refused = trust.skopeo(
        "copy", "--src-tls-verify=false", trust.image("v1"), f"dir:{trust.cli.base / 'sk'}",
        expect=None, policy=True,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "rejected" in refused.stderr.lower()


def test_skiff_signs_podman_verifies(
    trust: Trust, busybox_layout: BusyboxImage, other_image: BusyboxImage
) -> None:
    trust.skiff(
        "image", "copy", "-q", "--dest-tls-verify=false", "--sign-by", trust.fingerprint,
        busybox_layout.reference, trust.image("v1"),
    )  # fmt: skip
    trust.set_policy(trust.signed_by())
    name = f"{trust.registry.host}/{trust.repo}:v1"
    trust.cli.podman("pull", "--tls-verify=false", name, env=trust.env)

    trust.tamper("v1", other_image)
    refused = trust.cli.podman("pull", "--tls-verify=false", name, expect=None, env=trust.env)
    assert refused.returncode != 0
    assert "rejected" in refused.stderr.lower()
    # skiff pull prints podman's "Trying to pull" first, then one Error: line
    result = trust.skiff("pull", "--tls-verify=false", name, expect=125)
    assert "rejected by policy" in result.stderr
    assert "Traceback" not in result.stderr


def test_standalone_files_interoperate(trust: Trust, busybox_layout: BusyboxImage) -> None:
    manifest = trust.cli.base / "manifest.json"
    manifest.write_bytes(busybox_layout.manifest_bytes())
    ref = "quay.io/team/app:1.0"
    by_skopeo, by_skiff = trust.cli.base / "by-skopeo.sig", trust.cli.base / "by-skiff.sig"
    trust.skopeo("standalone-sign", manifest, ref, trust.fingerprint, "-o", by_skopeo)
    trust.skiff("image", "standalone-sign", manifest, ref, trust.fingerprint, "-o", by_skiff)
    verified = trust.skiff(
        "image", "standalone-verify", manifest, ref, trust.fingerprint, by_skopeo
    )
    assert verified.stdout == f"Signature verified, digest {busybox_layout.manifest_digest}\n"
    peer = trust.skopeo("standalone-verify", manifest, ref, trust.fingerprint, by_skiff)
    assert peer.stdout == verified.stdout  # skopeo 1.9's words
    wrong = trust.cli.fails(
        "image", "standalone-verify", manifest, "quay.io/team/app:2.0", trust.fingerprint,
        by_skopeo, env=trust.env,
    )  # fmt: skip
    assert "not 'quay.io/team/app:2.0'" in wrong
