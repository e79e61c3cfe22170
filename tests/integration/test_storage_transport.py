"""The ``containers-storage:`` transport against real stores, registries and processes.

- Copies in and out with both drivers (overlay, vfs): what goes in comes
  back out with the same config and diff IDs, under the name it was given.
- Layers are shared by chain ID: a common prefix of two images is stored
  once; the same diff ID on another parent is another layer.
- A layer tar served from the store is the original tar byte for byte
  (tar-split), tricky members included, so its digest is the diff ID.
- Concurrent processes (the installed ``skiff``): two pulls of the same
  image at once; a pull while another process removes an image the pull
  builds on; ``kill -9`` of a pull at several points, then a pull that
  succeeds; a store on a 2 MiB tmpfs that fills up. After each, the store
  is checked (``assert_consistent``, and ``skiff system check`` when the
  CLI has it) — nothing half-written may remain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.image.copy import CopyOptions, copy_image
from skiff.image.transports import parse_image_name
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest
from skiff.storage.layers import chain_ids
from skiff.storage.store import Store, StoreOptions
from skiff.testing.busybox import BusyboxImage, build_layered_layout, write_image
from skiff.testing.cli import CliEnv, assert_clean_failure
from skiff.testing.layertar import Member, layer_tar
from skiff.testing.registry import RunningRegistry

DRIVERS = ["overlay", "vfs"]


def context(base: Path, driver: str | None = None) -> SystemContext:
    tmp = base / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return SystemContext(
        storage_root=base / "root", run_root=base / "run", storage_driver=driver, tmp_dir=tmp
    )


def storage_ref(ctx: SystemContext, name: str) -> str:
    driver = f"{ctx.storage_driver}@" if ctx.storage_driver else ""
    return f"containers-storage:[{driver}{ctx.storage_root}+{ctx.run_root}]{name}"


def copy(src: str, dest: str, ctx: SystemContext) -> None:
    copy_image(parse_image_name(src), parse_image_name(dest), CopyOptions(), ctx, ctx)


def open_store(root: Path, run_root: Path, driver: str | None = None) -> Store:
    return Store(StoreOptions(root=root, run_root=run_root, driver=driver))


def layer_tar_digest(store: Store, layer_id: str) -> Digest:
    reader = store.layer_tar(layer_id)
    digest = hashlib.sha256()
    try:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    finally:
        reader.close()
    return Digest("sha256", digest.hexdigest())


def assert_consistent(root: Path, run_root: Path, driver: str | None = None) -> Store:
    """What a store must look like after any sequence of finished or killed processes.

    Opening it removes what interrupted processes left (that is the
    recovery under test); then every image's layer chain exists, every
    layer's directory exists and its tar reproduces its diff ID, no layer
    is incomplete, and nothing is left in staging. Returns the open store.
    """
    store = open_store(root, run_root, driver)
    rows = store.db.read("SELECT id FROM layers WHERE incomplete=1")
    assert rows == [], f"incomplete layers after recovery: {[r['id'] for r in rows]}"
    assert store.db.read("SELECT path FROM staging") == []
    leftovers = [p.name for p in (root / "staging").iterdir()]
    assert leftovers == [], f"staging leftovers: {leftovers}"
    for layer in store.layers.all():
        assert store.driver.layer_dir(layer.id).is_dir(), f"layer {layer.id} has no directory"
        if layer.diff_id is not None and layer.read_only:
            assert layer_tar_digest(store, layer.id) == layer.diff_id
    for image in store.images.all():
        from skiff.oci.config import ImageConfig

        diff_ids = ImageConfig.from_bytes(image.config).diff_ids
        assert store.image_layers(image) == chain_ids(diff_ids)
    return store


def system_check(cli: CliEnv) -> None:
    """``skiff system check`` must find nothing wrong (when the CLI has it)."""
    probe = cli.skiff("system", "check", "--help", expect=None)
    if probe.returncode != 0:
        return  # not implemented (yet): assert_consistent stands in
    result = cli.skiff("system", "check", expect=None)
    assert result.returncode == 0, result.describe()


# --- copying in and out ---------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_copy_in_and_out_keeps_config_and_diff_ids(tmp_shm: Path, driver: str) -> None:
    image = build_layered_layout(tmp_shm / "src", 2)
    ctx = context(tmp_shm / "store", driver)
    ref = storage_ref(ctx, "localhost/layered:v1")
    copy(image.reference, ref, ctx)

    store = assert_consistent(ctx.storage_root, ctx.run_root)
    try:
        assert store.driver_name == driver
        stored = store.images.get(image.config_digest.hex)
        assert stored.names == ("localhost/layered:v1",)
        assert store.image_layers(stored) == chain_ids(image.diff_ids)
        for layer_id, blob in zip(store.image_layers(stored), image.layer_digests, strict=True):
            assert [b.digest for b in store.layers.get(layer_id).blobs] == [blob]
        mounted = store.mount_image(stored.id)
        try:
            assert (mounted / "bin" / "busybox").is_file()
            assert (mounted / "layers" / "1.txt").read_text() == "layer 1\n"
        finally:
            store.unmount_image(stored.id)
    finally:
        store.close()

    out = tmp_shm / "out"
    copy(ref, f"oci:{out}:back", ctx)
    index = json.loads((out / "index.json").read_text())
    manifest_digest = Digest.parse(index["manifests"][0]["digest"])
    manifest = json.loads((out / "blobs" / "sha256" / manifest_digest.hex).read_bytes())
    assert manifest["config"]["digest"] == str(image.config_digest)
    # the store serves layers uncompressed: their digests are the diff IDs
    assert [layer["digest"] for layer in manifest["layers"]] == [str(d) for d in image.diff_ids]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.OCI_LAYER}
    for diff_id in image.diff_ids:
        data = (out / "blobs" / "sha256" / diff_id.hex).read_bytes()
        assert hashlib.sha256(data).hexdigest() == diff_id.hex


@pytest.mark.parametrize("driver", DRIVERS)
def test_layers_are_shared_by_chain_id(tmp_shm: Path, driver: str) -> None:
    first = build_layered_layout(tmp_shm / "a", [{"a.txt": b"a\n"}, {"b.txt": b"b\n"}])
    second = build_layered_layout(tmp_shm / "b", [{"a.txt": b"a\n"}, {"c.txt": b"c\n"}])
    # "c.txt" right on busybox: the same diff ID as second's top layer, another parent
    third = build_layered_layout(tmp_shm / "c", [{"c.txt": b"c\n"}])
    assert second.diff_ids[2] == third.diff_ids[1]
    ctx = context(tmp_shm / "store", driver)
    for image, name in ((first, "first"), (second, "second"), (third, "third")):
        copy(image.reference, storage_ref(ctx, f"localhost/{name}"), ctx)

    store = assert_consistent(ctx.storage_root, ctx.run_root)
    try:
        a, b, c = (store.images.get(i.config_digest.hex) for i in (first, second, third))
        la, lb, lc = (store.image_layers(i) for i in (a, b, c))
        assert la[:2] == lb[:2]  # busybox and a.txt: stored once
        assert la[0] == lc[0]
        assert lb[2] != lc[1]  # same diff ID, other parent: another layer
        assert len({*la, *lb, *lc}) == 5
        assert len(store.layers.all()) == 5

        # removing an image keeps what the others use
        removed = store.delete_image(a.id)
        assert removed == [la[2]]
        assert set(store.image_layers(b)) <= {layer.id for layer in store.layers.all()}
    finally:
        store.close()
    assert_consistent(ctx.storage_root, ctx.run_root).close()


def _tricky_layers() -> list[bytes]:
    blob = os.urandom(70_000)
    base = layer_tar(
        [
            Member("etc/", "dir"),
            Member("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
            Member("data/", "dir", mode=0o750, uid=1000, gid=1000),
            Member("data/blob", data=blob, mode=0o600, uid=1000, gid=1000),
            Member("data/link", "hardlink", linkname="data/blob"),
            Member("data/sym", "symlink", linkname="../etc/passwd"),
            Member("data/" + "long-name-" * 12, data=b"a PAX path\n"),
            Member("data/attrs", data=b"x", xattrs={"user.skiff": b"value"}),
            Member("gone/", "dir"),
            Member("gone/file", data=b"to be whited out\n"),
            Member("opaque/", "dir"),
            Member("opaque/old", data=b"hidden by an opaque dir\n"),
            Member("setuid", data=b"#!/bin/sh\n", mode=0o4755),
        ]
    )
    upper = layer_tar(
        [
            Member("gone/", "dir"),
            Member("gone/.wh.file", data=b""),
            Member("opaque/", "dir"),
            Member("opaque/.wh..wh..opq", data=b""),
            Member("opaque/new", data=b"new\n"),
            Member("data/", "dir", mode=0o750, uid=1000, gid=1000),
            Member("data/blob", data=b"replaced\n", mode=0o600, uid=1000, gid=1000),
        ]
    )
    return [base, upper]


@pytest.mark.parametrize("driver", DRIVERS)
def test_layer_tar_from_the_store_is_the_original_tar(tmp_shm: Path, driver: str) -> None:
    layers = _tricky_layers()
    image = write_image(tmp_shm / "tricky", layers, tag="tricky")
    ctx = context(tmp_shm / "store", driver)
    copy(image.reference, storage_ref(ctx, "localhost/tricky"), ctx)
    store = assert_consistent(ctx.storage_root, ctx.run_root)
    try:
        stored = store.images.get(image.config_digest.hex)
        for layer_id, original in zip(store.image_layers(stored), layers, strict=True):
            reader = store.layer_tar(layer_id)
            try:
                rebuilt = b""
                while chunk := reader.read(1 << 16):
                    rebuilt += chunk
            finally:
                reader.close()
            assert rebuilt == original
    finally:
        store.close()


# --- concurrent processes ----------------------------------------------------------


@pytest.fixture
def cli(tmp_shm: Path, registry: RunningRegistry) -> CliEnv:
    return CliEnv(tmp_shm / "cli", registries_conf=registry.registries_conf)


def push_layout(image: BusyboxImage, registry: RunningRegistry, repo: str) -> str:
    ref = f"{registry.host}/{repo}"
    copy_image(
        parse_image_name(image.reference),
        parse_image_name(f"docker://{ref}"),
        CopyOptions(),
        registry.context,
        registry.context,
    )
    return ref


def sized_layers(count: int, size: int, seed: int) -> list[dict[str, bytes]]:
    """``count`` layers of one incompressible file each, reproducible from ``seed``."""
    out = []
    for index in range(count):
        block = hashlib.sha256(f"{seed}-{index}".encode()).digest()
        chunks = []
        for _ in range(size // 32 + 1):
            block = hashlib.sha256(block).digest()
            chunks.append(block)
        out.append({f"data/{seed}-{index}.bin": b"".join(chunks)[:size]})
    return out


def test_two_concurrent_pulls_of_the_same_image(
    cli: CliEnv, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    image = build_layered_layout(tmp_shm / "img", sized_layers(3, 1 << 20, seed=1))
    ref = push_layout(image, registry, f"{unique_repo}:v1")
    argv = cli.skiff_argv("pull", "-q", ref)
    processes = [
        subprocess.Popen(argv, env=cli.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() == image.config_digest.hex
    store = assert_consistent(cli.root, cli.runroot)
    try:
        images = store.images.all()
        assert [i.id for i in images] == [image.config_digest.hex]
        assert images[0].names == (ref,)
        assert len(store.layers.all()) == len(image.diff_ids)
    finally:
        store.close()
    system_check(cli)


_RMI_SCRIPT = """
import sys
from pathlib import Path
from skiff.errors import SkiffError
from skiff.storage.store import Store, StoreOptions
store = Store(StoreOptions(root=Path(sys.argv[1]), run_root=Path(sys.argv[2])))
try:
    store.delete_image(sys.argv[3])
except SkiffError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""


def test_pull_while_another_process_removes_an_image_it_builds_on(
    cli: CliEnv, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    layers = sized_layers(3, 1 << 20, seed=2)
    base = build_layered_layout(tmp_shm / "base", layers[:2])
    child = build_layered_layout(tmp_shm / "child", layers)
    base_ref = push_layout(base, registry, f"{unique_repo}:base")
    child_ref = push_layout(child, registry, f"{unique_repo}:child")
    for _ in range(3):
        cli.skiff("pull", "-q", base_ref)
        pull = subprocess.Popen(
            cli.skiff_argv("pull", "-q", child_ref),
            env=cli.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        rmi = subprocess.run(
            [
                sys.executable,
                "-c",
                _RMI_SCRIPT,
                str(cli.root),
                str(cli.runroot),
                base.config_digest.hex,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        out, err = pull.communicate(timeout=120)
        assert rmi.returncode == 0, rmi.stderr
        assert pull.returncode == 0, err.decode()
        assert out.decode().strip() == child.config_digest.hex
        store = assert_consistent(cli.root, cli.runroot)
        try:
            assert [i.id for i in store.images.all()] == [child.config_digest.hex]
            store.delete_image(child.config_digest.hex)
            assert store.layers.all() == []
        finally:
            store.close()
    system_check(cli)


def _kill_at(argv: list[str], cli: CliEnv, marker: str | None, occurrence: int) -> None:
    """Start ``argv`` (a pull) and SIGKILL it when ``marker`` has appeared
    ``occurrence`` times on its stderr (None: right after it started)."""
    process = subprocess.Popen(
        argv,
        env=cli.environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    seen = 0
    deadline = time.monotonic() + 60
    try:
        if marker is not None:
            while time.monotonic() < deadline:
                line = process.stderr.readline().decode()
                if not line:
                    break  # finished before the marker: the kill lands after the end
                if marker in line:
                    seen += 1
                    if seen >= occurrence:
                        break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stderr.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_kill_9_during_a_pull_then_a_pull_succeeds(
    tmp_shm: Path, registry: RunningRegistry, fault_proxy_factory, unique_repo: str, driver: str
) -> None:
    image = build_layered_layout(tmp_shm / "img", sized_layers(3, 2 << 20, seed=3))
    proxy = fault_proxy_factory(registry)
    push_layout(image, registry, f"{unique_repo}:v1")
    ref = f"{proxy.host}/{unique_repo}:v1"
    conf = tmp_shm / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{proxy.host}"\ninsecure = true\n')
    cli = CliEnv(tmp_shm / "cli", registries_conf=conf)
    # slow blobs down so that kills land in the middle of transfers
    proxy.delay(r"/blobs/sha256:", 0.3, times=None, method="GET")
    points: list[tuple[str | None, int]] = [
        (None, 0),  # while it starts
        ("Copying blob", 1),  # first layer started
        ("Copying blob", 3),  # all layers in flight
        ("Copying config", 1),
        ("Writing manifest", 1),  # committing
    ]
    for marker, occurrence in points:
        _kill_at(cli.skiff_argv("--storage-driver", driver, "pull", ref), cli, marker, occurrence)
        assert_consistent(cli.root, cli.runroot, driver).close()
    proxy.clear()
    result = cli.skiff("--storage-driver", driver, "pull", "-q", ref)
    assert result.stdout.strip() == image.config_digest.hex
    store = assert_consistent(cli.root, cli.runroot)
    try:
        stored = store.images.get(image.config_digest.hex)
        assert store.image_layers(stored) == chain_ids(image.diff_ids)
    finally:
        store.close()
    system_check(cli)


@pytest.fixture
def small_tmpfs(tmp_shm: Path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    target = tmp_shm / "full"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_full_disk_fails_cleanly(
    cli: CliEnv,
    tmp_shm: Path,
    registry: RunningRegistry,
    unique_repo: str,
    small_tmpfs: Path,
    driver: str,
) -> None:
    image = build_layered_layout(tmp_shm / "big", sized_layers(2, 3 << 20, seed=4))
    ref = push_layout(image, registry, f"{unique_repo}:big")
    root, run_root = small_tmpfs / "root", tmp_shm / "run"
    argv = [
        cli.skiff_path, "--root", str(root), "--runroot", str(run_root),
        "--storage-driver", driver, "pull", "-q", ref,
    ]  # fmt: skip
    result = cli.run(argv, expect=125)
    assert_clean_failure(result)
    assert "space" in result.stderr.lower()
    store = assert_consistent(root, run_root, driver)
    try:
        assert store.images.all() == []
        assert store.layers.all() == []
    finally:
        store.close()
    layer_dirs = [p for p in (root / driver).iterdir() if re.fullmatch("[0-9a-f]{64}", p.name)]
    assert layer_dirs == []
    # what the failed pull wrote is gone: only the database takes space
    stat = os.statvfs(small_tmpfs)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    assert used < 512 << 10, f"{used} bytes still used after the failed pull"
    # and the same store takes an image that fits
    small = build_layered_layout(tmp_shm / "small", [{"hello.txt": b"hello\n"}], with_busybox=False)
    small_ref = push_layout(small, registry, f"{unique_repo}:small")
    ok = cli.run([*argv[:-1], small_ref])
    assert ok.stdout.strip() == small.config_digest.hex


def test_parallel_pulls_in_threads_share_one_store(
    tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    """The library in one process: several pulls at once through separate Store handles."""
    from skiff.libimage.pull import pull_image

    images = [
        build_layered_layout(tmp_shm / f"t{i}", sized_layers(2, 256 << 10, seed=10 + i))
        for i in range(3)
    ]
    refs = [push_layout(img, registry, f"{unique_repo}:t{i}") for i, img in enumerate(images)]
    ctx = context(tmp_shm / "store")
    ctx = SystemContext(**{**ctx.__dict__, "registries_conf": registry.registries_conf,
                           "tls_verify": False})  # fmt: skip
    errors: list[BaseException] = []

    def run(ref: str) -> None:
        try:
            pull_image(ctx, ref)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    store = assert_consistent(ctx.storage_root, ctx.run_root)
    try:
        assert {i.id for i in store.images.all()} == {img.config_digest.hex for img in images}
        # busybox is shared by all three
        assert len(store.layers.all()) == 1 + 2 * 3
    finally:
        store.close()


def test_apply_takes_the_stream_digest_from_its_caller(tmp_shm: Path) -> None:
    """The copy engine hashes every blob; the extractor then does not hash it again:
    the digest it reports is the caller's, and for a plain tar so is the diff ID."""
    import gzip
    import io

    from skiff.oci.digest import VerifyingReader, sha256_of
    from skiff.storage.archive import apply

    tar = layer_tar([Member("a.txt", data=b"a\n"), Member("b/", "dir")])
    for blob in (tar, gzip.compress(tar, mtime=0)):
        verifying = VerifyingReader(io.BytesIO(blob), sha256_of(blob), len(blob))
        calls: list[Digest] = []

        def stream_digest(
            reader: VerifyingReader = verifying, seen: list[Digest] = calls
        ) -> Digest:
            seen.append(reader.digest)
            return reader.digest

        target = tmp_shm / f"layer-{len(blob)}"
        target.mkdir()
        result = apply(verifying, target, stream_digest=stream_digest)
        assert calls, "the caller's digest was not used"
        assert result.digest == sha256_of(blob)
        assert result.diff_id == sha256_of(tar)
        assert (target / "a.txt").read_bytes() == b"a\n"
