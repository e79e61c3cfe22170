"""Hostile layers must not touch anything outside the layer directory.

In the spirit of containers/storage's pkg/archive breakout tests: next to the
layer directory ``dest`` sits a ``victim`` directory holding ``hello``. Each
case applies a crafted tar to ``dest`` (in both whiteout formats) and then
checks that ``victim`` still holds exactly ``hello`` with its content, mode
and mtime, and that nothing in ``dest`` reads as ``hello``'s content (which
would mean a link to it was made). Most cases must also fail with
UnsafeArchive; a few are harmless by construction (absolute names land
inside) and must succeed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skiff.errors import InvalidArchive, SkiffError, UnsafeArchive
from skiff.storage.archive import apply
from skiff.storage.archive import tarheader as th
from skiff.storage.archive.tarwriter import END_OF_ARCHIVE, encode_header
from skiff.testing.layertar import Member, layer_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown)")

FORMATS = ["overlay", "vfs"]


@dataclass
class Arena:
    root: Path
    dest: Path
    victim: Path
    hello: Path
    secret: bytes
    stat: os.stat_result

    def check_untouched(self) -> None:
        assert sorted(os.listdir(self.victim)) == ["hello"], "a file appeared in victim"
        st = self.hello.lstat()
        assert self.hello.read_bytes() == self.secret, "victim/hello was modified"
        assert (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink) == (
            self.stat.st_mode,
            self.stat.st_uid,
            self.stat.st_gid,
            self.stat.st_mtime_ns,
            self.stat.st_nlink,
        ), "victim/hello's metadata changed or it gained a hard link"
        vst = self.victim.lstat()
        assert oct(vst.st_mode) == oct(0o40755), "victim's mode changed"
        for dirpath, _dirs, files in os.walk(self.dest):
            for name in files:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    assert path.read_bytes() != self.secret, f"{path} reads victim/hello"


@pytest.fixture
def arena(tmp_shm: Path) -> Iterator[Arena]:
    dest = tmp_shm / "dest"
    victim = tmp_shm / "victim"
    dest.mkdir()
    victim.mkdir()
    victim.chmod(0o755)
    hello = victim / "hello"
    secret = hashlib.sha256(os.urandom(32)).hexdigest().encode()
    hello.write_bytes(secret)
    hello.chmod(0o644)
    yield Arena(tmp_shm, dest, victim, hello, secret, hello.lstat())


def run(arena: Arena, tar: bytes, fmt: str, **kw: object) -> SkiffError | None:
    try:
        apply(io.BytesIO(tar), arena.dest, whiteout_format=fmt, **kw)  # type: ignore[arg-type]
    except SkiffError as exc:
        return exc
    finally:
        arena.check_untouched()
    return None


def refused(arena: Arena, members: list[Member], fmt: str, match: str = "") -> None:
    error = run(arena, layer_tar(members), fmt)
    assert isinstance(error, UnsafeArchive), f"expected UnsafeArchive, got {error!r}"
    assert match in str(error)


# --- ../ and absolute names --------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "name",
    [
        "../victim/hello",
        "../victim/new",
        "a/../../victim/hello",
        "./../victim/x",
        "..",
        "a/b/../../..",
    ],
)
def test_dotdot_names(arena: Arena, fmt: str, name: str) -> None:
    refused(arena, [Member(name, "file", b"pwned")], fmt, "points outside the layer")


@pytest.mark.parametrize("fmt", FORMATS)
def test_dotdot_in_a_directory_name(arena: Arena, fmt: str) -> None:
    refused(arena, [Member("../victim/", "dir", mode=0o777)], fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_absolute_names_land_inside(arena: Arena, fmt: str) -> None:
    name = str(arena.hello)  # "/dev/shm/.../victim/hello"
    assert run(arena, layer_tar([Member(name, "file", b"inside")]), fmt) is None
    assert (arena.dest / name.lstrip("/")).read_bytes() == b"inside"
    assert run(arena, layer_tar([Member("/../../victim/new", "file", b"x")]), fmt) is None
    assert (arena.dest / "victim/new").read_bytes() == b"x"


# --- writing through symlinks ------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_through_absolute_symlink(arena: Arena, fmt: str) -> None:
    refused(
        arena,
        [
            Member("loop", "symlink", linkname=str(arena.victim)),
            Member("loop/hello", "file", b"pwned"),
        ],
        fmt,
        "writes through the symlink /loop",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_through_relative_symlink_escaping(arena: Arena, fmt: str) -> None:
    refused(
        arena,
        [Member("rel", "symlink", linkname="../victim"), Member("rel/new", "file", b"pwned")],
        fmt,
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_through_a_symlink_to_an_inside_directory(arena: Arena, fmt: str) -> None:
    refused(
        arena,
        [
            Member("real/", "dir"),
            Member("alias", "symlink", linkname="real"),
            Member("alias/file", "file", b"x"),
        ],
        fmt,
        "writes through the symlink /alias",
    )
    assert not (arena.dest / "real/file").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlink_in_a_deeper_parent(arena: Arena, fmt: str) -> None:
    refused(
        arena,
        [
            Member("a/", "dir"),
            Member("a/b", "symlink", linkname="../../victim"),
            Member("a/b/c/d", "file", b"pwned"),
        ],
        fmt,
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_directory_entry_through_a_symlink(arena: Arena, fmt: str) -> None:
    refused(
        arena,
        [Member("rel", "symlink", linkname="../victim"), Member("rel/sub/", "dir", mode=0o777)],
        fmt,
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlink_over_the_victim_path_only_replaces_the_link(arena: Arena, fmt: str) -> None:
    """A symlink then a regular file of the same name: the file replaces the
    link, it is not written through it."""
    members = [
        Member("hello", "symlink", linkname=str(arena.hello)),
        Member("hello", "file", b"replaced"),
        Member("rel", "symlink", linkname="../victim/hello"),
        Member("rel", "file", b"replaced too"),
    ]
    assert run(arena, layer_tar(members), fmt) is None
    assert (arena.dest / "hello").read_bytes() == b"replaced"
    assert not (arena.dest / "rel").is_symlink()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "loop",
    [
        [Member("a", "symlink", linkname="b"), Member("b", "symlink", linkname="a")],
        [Member("self", "symlink", linkname="self")],
    ],
)
def test_symlink_loops(arena: Arena, fmt: str, loop: list[Member]) -> None:
    refused(arena, [*loop, Member(f"{loop[0].name}/x", "file", b"x")], fmt, "symlink")


# --- hard links ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_hardlink_to_dotdot(arena: Arena, fmt: str) -> None:
    refused(arena, [Member("h", "hardlink", linkname="../victim/hello")], fmt, "outside the layer")


@pytest.mark.parametrize("fmt", FORMATS)
def test_hardlink_to_etc_passwd(arena: Arena, fmt: str) -> None:
    before = Path("/etc/passwd").stat()
    digest = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    members = [Member("h", "hardlink", linkname="/etc/passwd"), Member("h", "file", b"pwned")]
    error = run(arena, layer_tar(members), fmt)
    # "/etc/passwd" means the layer's own etc/passwd, which it lacks.
    assert isinstance(error, InvalidArchive)
    assert "not in this layer" in str(error)
    after = Path("/etc/passwd").stat()
    assert (after.st_nlink, after.st_ino, after.st_mtime_ns) == (
        before.st_nlink,
        before.st_ino,
        before.st_mtime_ns,
    )
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("fmt", FORMATS)
def test_hardlink_through_a_symlinked_parent(arena: Arena, fmt: str) -> None:
    refused(
        arena,
        [
            Member("rel", "symlink", linkname="../victim"),
            Member("h", "hardlink", linkname="rel/hello"),
        ],
        fmt,
        "writes through the symlink /rel",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_hardlink_to_a_symlink_pointing_outside(arena: Arena, fmt: str) -> None:
    """linkat without AT_SYMLINK_FOLLOW links the symlink itself; writing a
    file over the link afterwards replaces it instead of following it."""
    members = [
        Member("sym", "symlink", linkname="../victim/hello"),
        Member("hard", "hardlink", linkname="sym"),
    ]
    assert run(arena, layer_tar(members), fmt) is None
    assert (arena.dest / "hard").is_symlink()
    assert os.readlink(arena.dest / "hard") == "../victim/hello"
    members.append(Member("hard", "file", b"pwned"))
    shutil.rmtree(arena.dest)
    arena.dest.mkdir()
    assert run(arena, layer_tar(members), fmt) is None
    assert (arena.dest / "hard").read_bytes() == b"pwned"


# --- invalid names -------------------------------------------------------------


def raw_member(name: bytes, data: bytes = b"x") -> bytes:
    header = th.TarHeader(name=name, size=len(data))
    return encode_header(header) + data + bytes(-len(data) % 512)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("name", "match"),
    [
        (b"a\0/../../victim/hello" + b"x" * 100, "NUL"),  # NUL inside a PAX path
        (b"", "empty name"),
        (b".", "replace the layer root"),
        (b"./", "replace the layer root"),
        (b"/", "replace the layer root"),
    ],
)
def test_invalid_names(arena: Arena, fmt: str, name: bytes, match: str) -> None:
    error = run(arena, raw_member(name) + END_OF_ARCHIVE, fmt)
    assert isinstance(error, UnsafeArchive), repr(error)
    assert match in str(error)


@pytest.mark.parametrize("fmt", FORMATS)
def test_nul_in_a_symlink_target(arena: Arena, fmt: str) -> None:
    header = th.TarHeader(name=b"s" * 120, typeflag=th.SYMTYPE, linkname=b"../victim\0/hello" * 10)
    error = run(arena, encode_header(header) + END_OF_ARCHIVE, fmt)
    assert isinstance(error, InvalidArchive)


# --- whiteouts -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", [".wh...", "a/.wh...", ".wh..", "a/b/.wh..", ".wh.", "a/.wh."])
def test_whiteouts_of_dot_and_dotdot(arena: Arena, fmt: str, name: str) -> None:
    refused(arena, [Member("a/b/", "dir"), Member(name, "file")], fmt, "names no valid entry")
    assert (arena.dest / "a/b").is_dir()


@pytest.mark.parametrize("fmt", FORMATS)
def test_whiteout_outside_the_layer(arena: Arena, fmt: str) -> None:
    refused(arena, [Member("../victim/.wh.hello", "file")], fmt, "points outside the layer")
    refused(arena, [Member("a/../../victim/.wh..wh..opq", "file")], fmt, "points outside the layer")


@pytest.mark.parametrize("fmt", FORMATS)
def test_whiteout_through_a_symlink(arena: Arena, fmt: str) -> None:
    """In vfs format a whiteout deletes: through a symlink it would delete
    victim/hello, and an opaque marker would empty victim."""
    refused(
        arena,
        [Member("rel", "symlink", linkname="../victim"), Member("rel/.wh.hello", "file")],
        fmt,
        "writes through the symlink /rel",
    )
    refused(
        arena,
        [Member("abs", "symlink", linkname=str(arena.victim)), Member("abs/.wh..wh..opq", "file")],
        fmt,
        "writes through the symlink /abs",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_whiteout_of_a_symlink_removes_the_link_only(arena: Arena, fmt: str) -> None:
    members = [Member("rel", "symlink", linkname="../victim"), Member(".wh.rel", "file")]
    assert run(arena, layer_tar(members), fmt) is None
    assert not (arena.dest / "rel").is_symlink()


# --- replacing directories and non-directories ---------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_directory_replaced_by_a_symlink_then_written_into(arena: Arena, fmt: str) -> None:
    refused(
        arena,
        [
            Member("d/", "dir"),
            Member("d/f", "file", b"x"),  # the fd of d is now cached
            Member("d", "symlink", linkname="../victim"),
            Member("d/hello", "file", b"pwned"),
        ],
        fmt,
        "writes through the symlink /d",
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlink_replaced_by_a_directory(arena: Arena, fmt: str) -> None:
    members = [
        Member("s", "symlink", linkname=str(arena.victim)),
        Member("s/", "dir", mode=0o700),
        Member("s/hello", "file", b"inside"),
    ]
    assert run(arena, layer_tar(members), fmt) is None
    assert (arena.dest / "s").is_dir() and not (arena.dest / "s").is_symlink()
    assert (arena.dest / "s/hello").read_bytes() == b"inside"


@pytest.mark.parametrize("fmt", FORMATS)
def test_file_replaced_by_a_directory_and_back(arena: Arena, fmt: str) -> None:
    members = [
        Member("x", "file", b"1"),
        Member("x/", "dir"),
        Member("x/y", "file", b"2"),
        Member("x", "file", b"3"),
        Member("x/z", "file", b"4"),  # x is a file again: no parent
    ]
    error = run(arena, layer_tar(members), fmt)
    assert isinstance(error, InvalidArchive)
    assert "/x is not a directory" in str(error)
    assert (arena.dest / "x").read_bytes() == b"3"


# --- bombs and truncation ----------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_tar_bomb_size_limit(arena: Arena, fmt: str) -> None:
    members = [Member(f"zeros{i}", "file", bytes(8 << 20)) for i in range(8)]  # 64 MiB
    blob = gzip.compress(layer_tar(members), compresslevel=1, mtime=0)
    assert len(blob) < 1 << 20
    error = run(arena, blob, fmt, max_bytes=16 << 20)
    assert isinstance(error, UnsafeArchive)
    assert "limit of 16777216 bytes" in str(error)
    written = sum(p.stat().st_size for p in arena.dest.rglob("*") if p.is_file())
    assert written <= 16 << 20


@pytest.mark.parametrize("fmt", FORMATS)
def test_tar_bomb_entry_limit(arena: Arena, fmt: str) -> None:
    members = [Member(f"d/{i}", "file") for i in range(5000)]
    error = run(arena, gzip.compress(layer_tar(members), mtime=0), fmt, max_entries=1000)
    assert isinstance(error, UnsafeArchive)
    assert len(list((arena.dest / "d").iterdir())) <= 1000


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_truncated_stream(arena: Arena, fmt: str, compress: str) -> None:
    import zstandard

    tar = layer_tar(
        [
            Member("a/", "dir"),
            Member("a/big", "file", os.urandom(200_000)),
            Member("a/z", "file", b"z"),
        ]
    )
    blob = {
        "": tar,
        "gzip": gzip.compress(tar, mtime=0),
        "zstd": zstandard.ZstdCompressor().compress(tar),
    }[compress]
    error = run(arena, blob[: len(blob) // 2], fmt)
    assert isinstance(error, InvalidArchive)
    assert "truncated" in str(error) or "cut short" in str(error)
    # the caller discards the partial layer: nothing in it resists removal
    shutil.rmtree(arena.dest)
    assert not arena.dest.exists()


def test_tarfile_cannot_be_tricked_into_what_we_refuse(arena: Arena) -> None:
    """Sanity check of the test tars themselves: Python's own 'data' filter
    also refuses the dotdot member, so the tar really carries it."""
    tar = layer_tar([Member("../victim/hello", "file", b"pwned")])
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        (member,) = archive.getmembers()
        assert member.name == "../victim/hello"
