"""``skiff pull`` and ``skiff push`` end to end, as a user types them.

The installed ``skiff`` against the real test registries, with a private
store (``CliEnv``). Output is podman's: progress and "Trying to pull" on
stderr, the image ID alone on stdout; errors on one line, exit 125.
Short names go through registries.conf as podman resolves them. Pushes
are watched through the fault proxy: pushing an image back to the
registry it came from sends no layer, and writes the original manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from skiff.image.copy import CopyOptions, copy_image
from skiff.image.transports import parse_image_name
from skiff.oci import mediatypes as mt
from skiff.oci.digest import sha256_of
from skiff.storage.store import Store, StoreOptions
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv
from skiff.testing.faultproxy import FaultProxy
from skiff.testing.multiarch import build_multiarch_layout
from skiff.testing.registry import RunningRegistry


def registries_conf(path: Path, hosts: list[str], search: list[str] | None = None) -> Path:
    lines = [f"unqualified-search-registries = {json.dumps(search or [])}"]
    for host in hosts:
        lines += ["[[registry]]", f'location = "{host}"', "insecure = true"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def proxy(registry: RunningRegistry, fault_proxy_factory: Callable[..., FaultProxy]) -> FaultProxy:
    return fault_proxy_factory(registry)


@pytest.fixture
def cli(tmp_shm: Path, registry: RunningRegistry, proxy: FaultProxy) -> CliEnv:
    conf = registries_conf(tmp_shm / "registries.conf", [registry.host, proxy.host])
    return CliEnv(tmp_shm / "cli", registries_conf=conf)


def push_layout(image: BusyboxImage | str, registry: RunningRegistry, repo: str) -> str:
    source = image if isinstance(image, str) else image.reference
    copy_image(
        parse_image_name(source),
        parse_image_name(f"docker://{registry.host}/{repo}"),
        CopyOptions(copy_all=True),
        registry.context,
        registry.context,
    )
    return f"{registry.host}/{repo}"


def stored_images(cli: CliEnv) -> dict[str, tuple[str, ...]]:
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        return {image.id: image.names for image in store.images.all()}
    finally:
        store.close()


def registry_manifest(registry: RunningRegistry, repo: str, tag: str) -> bytes:
    from skiff.image.transports.docker import api
    from skiff.image.transports.docker.client import RegistryClient

    client = RegistryClient(registry.context, registry.host, repo)
    try:
        return api.get_manifest(client, tag)[0]
    finally:
        client.close()


def uploads(proxy: FaultProxy) -> list[str]:
    """Blob upload requests (POST/PATCH/PUT under /blobs/uploads/) that carried data."""
    return [
        f"{r.method} {r.target}"
        for r in proxy.requests
        if "/blobs/uploads/" in r.target and "mount=" not in r.target
    ]


# --- pull --------------------------------------------------------------------------


def test_pull_prints_podmans_lines_and_the_id(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    ref = push_layout(busybox_layout, registry, f"{unique_repo}:v1")
    result = cli.skiff("pull", ref)
    assert result.stdout == busybox_layout.config_digest.hex + "\n"
    lines = result.stderr.splitlines()
    assert lines[0] == f"Trying to pull {ref}..."
    assert lines[1] == "Getting image source signatures"
    assert sorted(lines[2:-2]) == sorted(
        [f"Copying blob {d}" for d in busybox_layout.layer_digests]
        + [f"Copying config {busybox_layout.config_digest}"]
    )
    assert lines[-2:] == ["Writing manifest to image destination", "Storing signatures"]
    assert stored_images(cli) == {busybox_layout.config_digest.hex: (ref,)}

    quiet = cli.skiff("pull", "-q", ref)
    assert quiet.stdout == busybox_layout.config_digest.hex + "\n" and quiet.stderr == ""


def test_pull_by_digest_and_several_images(
    cli: CliEnv, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    one = build_layered_layout(tmp_shm / "one", 1)
    two = build_layered_layout(tmp_shm / "two", 2)
    ref_one = push_layout(one, registry, f"{unique_repo}:one")
    ref_two = push_layout(two, registry, f"{unique_repo}:two")
    result = cli.skiff("pull", "-q", ref_one, ref_two)
    assert result.stdout.split() == [one.config_digest.hex, two.config_digest.hex]
    by_digest = f"{registry.host}/{unique_repo}@{one.manifest_digest}"
    assert cli.skiff("pull", "-q", by_digest).stdout.strip() == one.config_digest.hex
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        assert store.images.find(by_digest) is not None
    finally:
        store.close()


def test_short_names_resolve_as_podman(
    tmp_shm: Path, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    push_layout(busybox_layout, registry, f"{unique_repo}:v1")
    conf = registries_conf(
        tmp_shm / "search.conf", [registry.host, "127.0.0.1:1"], ["127.0.0.1:1", registry.host]
    )
    cli = CliEnv(tmp_shm / "cli", registries_conf=conf)
    result = cli.skiff("pull", "--retry", "0", f"{unique_repo}:v1")
    assert result.stdout.strip() == busybox_layout.config_digest.hex
    lines = result.stderr.splitlines()
    assert lines[0] == (f'Resolving "{unique_repo}" using unqualified-search registries ({conf})')
    assert lines[1] == f"Trying to pull 127.0.0.1:1/{unique_repo}:v1..."
    assert lines[2] == f"Trying to pull {registry.host}/{unique_repo}:v1..."
    full = f"{registry.host}/{unique_repo}:v1"
    assert stored_images(cli) == {busybox_layout.config_digest.hex: (full,)}

    # now the store has it: the short name means that image, pulled again by its name
    again = cli.skiff("pull", "--retry", "0", f"{unique_repo}:v1")
    assert again.stderr.splitlines()[0] == f"Trying to pull {full}..."

    # an alias wins over the search list
    conf.write_text(conf.read_text() + f'[aliases]\n"myalias" = "{registry.host}/{unique_repo}"\n')
    fresh = CliEnv(tmp_shm / "fresh", registries_conf=conf)
    aliased = fresh.skiff("pull", "myalias:v1")
    assert aliased.stderr.splitlines()[0] == f'Resolved "myalias" as an alias ({conf})'


def test_unresolvable_short_names_fail_in_podmans_words(
    tmp_shm: Path, registry: RunningRegistry
) -> None:
    bare = CliEnv(tmp_shm / "bare", registries_conf=registries_conf(tmp_shm / "none.conf", []))
    line = bare.fails("pull", "nosuchimage")
    assert line.startswith(
        'Error: short-name "nosuchimage" did not resolve to an alias and no '
        f'unqualified-search registries are defined in "{tmp_shm / "none.conf"}"'
    )
    conf = registries_conf(
        tmp_shm / "two.conf",
        [registry.host],
        [registry.host, registry.host.replace("127.0.0.1", "localhost")],
    )
    two = CliEnv(tmp_shm / "two", registries_conf=conf)
    line = two.fails("pull", "-q", "--retry", "0", "nosuchimage")
    assert line.startswith("Error: 2 errors occurred while pulling: ")
    assert line.count("initializing source docker://") == 2
    assert "manifest unknown" in line


def test_pull_all_tags(
    cli: CliEnv, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    images = {tag: build_layered_layout(tmp_shm / tag, n) for n, tag in enumerate(("a", "b"), 1)}
    for tag, image in images.items():
        push_layout(image, registry, f"{unique_repo}:{tag}")
    repo = f"{registry.host}/{unique_repo}"
    result = cli.skiff("pull", "-q", "--all-tags", repo)
    assert sorted(result.stdout.split()) == sorted(i.config_digest.hex for i in images.values())
    assert stored_images(cli) == {
        image.config_digest.hex: (f"{repo}:{tag}",) for tag, image in images.items()
    }
    line = cli.fails("pull", "-a", f"{repo}:a")
    assert "tag can't be used with --all-tags/-a" in line


def test_pull_chooses_the_platform(
    cli: CliEnv, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    multi = build_multiarch_layout(tmp_shm / "multi")
    ref = push_layout(multi.reference, registry, f"{unique_repo}:multi")
    arm = multi.images["linux/arm64/v8"]
    assert cli.skiff("pull", "-q", "--platform", "linux/arm64", ref).stdout.strip() == (
        arm.config_digest.hex
    )
    v6 = multi.images["linux/arm/v6"]
    result = cli.skiff("pull", "-q", "--arch", "arm", "--variant", "v6", ref)
    assert result.stdout.strip() == v6.config_digest.hex
    line = cli.fails("pull", "--platform", "linux/arm64", "--arch", "arm64", ref)
    assert "--platform option can not be specified with --arch or --os" in line
    line = cli.fails("pull", "-q", "--platform", "linux/s390x", ref)
    assert "linux/s390x" in line


def test_pull_with_credentials_and_tls(
    tmp_shm: Path, auth_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    assert auth_registry.credentials is not None and auth_registry.cert_dir is not None
    ref = push_layout_auth(busybox_layout, auth_registry, f"{unique_repo}:v1")
    cli = CliEnv(tmp_shm / "cli", registries_conf=auth_registry.registries_conf)
    tls = ["--cert-dir", str(auth_registry.cert_dir)]
    line = cli.fails("pull", "-q", *tls, ref)
    assert "authentication" in line.lower() or "unauthorized" in line.lower()
    line = cli.fails("pull", "-q", *tls, "--creds", "skiff:wrong", ref)
    assert "initializing source" in line
    good = cli.skiff("pull", "-q", *tls, "--creds", auth_registry.credentials.creds, ref)
    assert good.stdout.strip() == busybox_layout.config_digest.hex
    # the same through an auth file
    auth = tmp_shm / "auth.json"
    import base64

    token = base64.b64encode(auth_registry.credentials.creds.encode()).decode()
    auth.write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    other = CliEnv(tmp_shm / "other", registries_conf=auth_registry.registries_conf)
    result = other.skiff("pull", "-q", *tls, "--authfile", auth, ref)
    assert result.stdout.strip() == busybox_layout.config_digest.hex
    # no certificate: TLS verification fails, unless turned off
    line = other.fails("pull", "-q", "--authfile", auth, "--retry", "0", ref)
    assert "certificate" in line.lower()
    other.skiff("pull", "-q", "--tls-verify=false", "--authfile", auth, ref)


def push_layout_auth(image: BusyboxImage, registry: RunningRegistry, repo: str) -> str:
    ctx = registry.context_with(registry.credentials)
    copy_image(
        parse_image_name(image.reference),
        parse_image_name(f"docker://{registry.host}/{repo}"),
        CopyOptions(),
        ctx,
        ctx,
    )
    return f"{registry.host}/{repo}"


# --- push --------------------------------------------------------------------------


def test_push_back_to_the_registry_uploads_nothing(
    cli: CliEnv,
    registry: RunningRegistry,
    proxy: FaultProxy,
    busybox_layout: BusyboxImage,
    unique_repo: str,
) -> None:
    push_layout(busybox_layout, registry, f"{unique_repo}:v1")
    cli.skiff("pull", "-q", f"{proxy.host}/{unique_repo}:v1")
    proxy.clear()
    digestfile = cli.base / "digest"
    # to another repository of the same registry: mounted, not uploaded
    cli.skiff(
        "push", "--digestfile", digestfile,
        f"{proxy.host}/{unique_repo}:v1", f"{proxy.host}/{unique_repo}-copy:v1",
    )  # fmt: skip
    assert uploads(proxy) == []
    mounts = [r for r in proxy.requests if "mount=" in r.target]
    assert len(mounts) == len(busybox_layout.layer_digests) + 1  # and the config
    assert all(m.status == 201 for m in mounts)
    # the original manifest, byte for byte
    assert digestfile.read_text() == str(busybox_layout.manifest_digest)
    raw = registry_manifest(registry, f"{unique_repo}-copy", "v1")
    assert raw == busybox_layout.manifest_bytes()

    # to the repository itself: everything is there already
    proxy.clear()
    cli.skiff("push", f"{proxy.host}/{unique_repo}:v1")
    assert uploads(proxy) == []
    assert not [r for r in proxy.requests if "mount=" in r.target]


def test_push_compresses_what_the_registry_lacks_and_reuses_it_next_time(
    cli: CliEnv,
    tmp_shm: Path,
    registry: RunningRegistry,
    proxy: FaultProxy,
    unique_repo: str,
) -> None:
    image = build_layered_layout(tmp_shm / "local", 1)
    archive = tmp_shm / "image.tar"
    copy_image(
        parse_image_name(image.reference),
        parse_image_name(f"docker-archive:{archive}:localhost/local:v1"),
    )
    cli.skiff("load", "-q", "-i", archive)
    dest = f"{proxy.host}/{unique_repo}:v1"
    cli.skiff("push", "-q", "localhost/local:v1", dest)
    assert len([u for u in uploads(proxy) if u.startswith("POST")]) == 3  # 2 layers, config
    manifest = json.loads(registry_manifest(registry, unique_repo, "v1"))
    assert manifest["mediaType"] == mt.DOCKER_V2S2  # the archive's manifest type
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.DOCKER_LAYER_GZIP}
    assert [layer["digest"] for layer in manifest["layers"]] != [str(d) for d in image.diff_ids]
    # the compressed layers are now known: a second push sends nothing
    proxy.clear()
    cli.skiff("push", "-q", "localhost/local:v1", f"{proxy.host}/{unique_repo}:v2")
    assert uploads(proxy) == []
    assert registry_manifest(registry, unique_repo, "v2") == registry_manifest(
        registry, unique_repo, "v1"
    )


def test_push_formats_and_compression(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    ref = push_layout(busybox_layout, registry, f"{unique_repo}:v1")
    cli.skiff("pull", "-q", ref)
    repo = f"{registry.host}/{unique_repo}"
    cli.skiff("push", "-q", "--format", "v2s2", ref, f"{repo}:v2s2")
    manifest = json.loads(registry_manifest(registry, unique_repo, "v2s2"))
    assert manifest["mediaType"] == mt.DOCKER_V2S2
    assert [layer["digest"] for layer in manifest["layers"]] == [
        str(d) for d in busybox_layout.layer_digests
    ]  # the original blobs still stand in: only the manifest type changed
    cli.skiff("push", "-q", "--compression-format", "zstd", ref, f"{repo}:zstd")
    manifest = json.loads(registry_manifest(registry, unique_repo, "zstd"))
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.OCI_LAYER_ZSTD}
    line = cli.fails(
        "push", "-q", "--format", "v2s2", "--compression-format", "zstd", ref, f"{repo}:bad"
    )
    assert "zstd" in line
    cli.skiff("push", "-q", "--remove-signatures", ref, f"{repo}:nosig")
    # a transport destination
    out = cli.base / "pushed-dir"
    cli.skiff("push", "-q", ref, f"dir:{out}")
    assert json.loads((out / "manifest.json").read_text())["config"]["digest"] == str(
        busybox_layout.config_digest
    )
    cli.skiff("push", "-q", "--compress", ref, f"dir:{cli.base / 'compressed'}")
    compressed = json.loads((cli.base / "compressed" / "manifest.json").read_text())
    assert {layer["mediaType"] for layer in compressed["layers"]} == {mt.OCI_LAYER_GZIP}


def test_push_errors_are_one_line(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    line = cli.fails("push", "localhost/nosuch:v1", f"{registry.host}/{unique_repo}:x")
    assert "localhost/nosuch:v1: image not known" in line
    ref = push_layout(busybox_layout, registry, f"{unique_repo}:v1")
    image_id = cli.skiff("pull", "-q", ref).stdout.strip()
    line = cli.fails("push", image_id[:12])
    assert "destination" in line
    line = cli.fails("push", "-f", "v2s1", ref, f"{registry.host}/{unique_repo}:s1")
    assert "schema 1" in line
    # --sign-by goes to the signing code (no such key here): still one line
    line = cli.fails(
        "push", "-q", "--sign-by", "ABCD", ref, f"{registry.host}/{unique_repo}:signed"
    )
    assert "ABCD" in line or "--sign-by" in line
    # by ID with a destination works
    cli.skiff("push", "-q", image_id[:12], f"{registry.host}/{unique_repo}:byid")
    raw = registry_manifest(registry, unique_repo, "byid")
    assert sha256_of(raw) == busybox_layout.manifest_digest, raw.decode()


def test_progress_bars_on_a_terminal(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    from tests.cli.test_image_cli import _run_on_pty

    ref = push_layout(busybox_layout, registry, f"{unique_repo}:v1")
    code, output = _run_on_pty(cli.skiff_argv("pull", ref), cli.environ())
    assert code == 0, output
    assert f"Trying to pull {ref}..." in output
    assert f"Copying blob {busybox_layout.layer_digests[0].hex[:12]}" in output
    assert "\x1b[" in output
    assert "Writing manifest to image destination" in output
    assert busybox_layout.config_digest.hex in output
    code, output = _run_on_pty(cli.skiff_argv("pull", ref), cli.environ())
    assert code == 0 and "skipped: already exists" in output
