"""Tar header parsing and writing: ustar, GNU, PAX, base-256, round trips."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skiff.errors import InvalidArchive
from skiff.storage.archive import tarheader as th
from skiff.storage.archive.tarwriter import END_OF_ARCHIVE, encode_header, padding, pax_record
from skiff.testing.layertar import Member, layer_tar


def headers_of(data: bytes) -> list[th.TarHeader]:
    chunks = iter([data])
    reader = th.BlockReader(lambda: next(chunks, b""))
    return list(th.iter_headers(reader))


def members_of(data: bytes, chunk: int = 1 << 20) -> list[tuple[th.TarHeader, bytes]]:
    """Headers and data, reading in chunks of ``chunk`` bytes (to cross
    chunk boundaries anywhere)."""
    pieces = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    reader = th.BlockReader(lambda: next(pieces, b""))
    out = []
    for header in th.iter_headers(reader):
        out.append((header, reader.read(header.size) if header.typeflag == th.REGTYPE else b""))
    return out


def test_ustar_member_fields() -> None:
    data = layer_tar(
        [
            Member("etc/", "dir", mode=0o755, uid=1, gid=2, mtime=1_600_000_000),
            Member("etc/passwd", "file", b"root:x:0:0\n", mode=0o4755, uid=3, gid=4),
            Member("etc/link", "symlink", linkname="/etc/passwd"),
            Member("etc/hard", "hardlink", linkname="etc/passwd"),
            Member("dev/null", "chr", devmajor=1, devminor=3, mode=0o666),
            Member("dev/sda", "blk", devmajor=8, devminor=0),
            Member("run/fifo", "fifo", mode=0o600),
        ],
        tar_format=tarfile.USTAR_FORMAT,
    )
    got = members_of(data)
    assert [(h.name, h.typeflag) for h, _ in got] == [
        (b"etc/", th.DIRTYPE),
        (b"etc/passwd", th.REGTYPE),
        (b"etc/link", th.SYMTYPE),
        (b"etc/hard", th.LNKTYPE),
        (b"dev/null", th.CHRTYPE),
        (b"dev/sda", th.BLKTYPE),
        (b"run/fifo", th.FIFOTYPE),
    ]
    directory, (passwd, content) = got[0][0], got[1]
    assert (directory.mode, directory.uid, directory.gid) == (0o755, 1, 2)
    assert directory.mtime_ns == 1_600_000_000 * 10**9
    assert (passwd.mode, passwd.uid, passwd.gid, passwd.size) == (0o4755, 3, 4, 11)
    assert content == b"root:x:0:0\n"
    assert got[2][0].linkname == b"/etc/passwd"
    assert got[3][0].linkname == b"etc/passwd"
    assert (got[4][0].devmajor, got[4][0].devminor) == (1, 3)
    assert (got[5][0].devmajor, got[5][0].devminor) == (8, 0)


def test_ustar_prefix_field_joins_long_names() -> None:
    name = "d" * 120 + "/" + "f" * 90
    data = layer_tar([Member(name, "file", b"x")], tar_format=tarfile.USTAR_FORMAT)
    assert data[345:350] == b"ddddd"  # tarfile used the prefix field
    assert headers_of(data)[0].name == name.encode()


def test_gnu_long_name_and_long_link() -> None:
    name = "n" * 150 + "/" + "x" * 150
    target = "t" * 300
    data = layer_tar(
        [Member(name, "symlink", linkname=target), Member(name + "2", "file", b"abc")],
        tar_format=tarfile.GNU_FORMAT,
    )
    assert b"././@LongLink" in data
    got = members_of(data)
    assert got[0][0].name == name.encode()
    assert got[0][0].linkname == target.encode()
    assert got[1][0].name == (name + "2").encode()
    assert got[1][1] == b"abc"


def test_pax_long_path_linkpath_big_ids_and_xattrs() -> None:
    name = "p" * 200 + "/file"
    link = "/" + "l" * 250
    data = layer_tar(
        [
            Member(
                name,
                "hardlink",
                linkname=link,
                uid=3_000_000_000,
                gid=4_000_000_000,
                xattrs={"user.comment": b"hello", "security.selinux": b"label"},
            )
        ],
    )
    (header,) = headers_of(data)
    assert header.name == name.encode()
    assert header.linkname == link.encode()
    assert (header.uid, header.gid) == (3_000_000_000, 4_000_000_000)
    assert header.xattrs == {"user.comment": b"hello", "security.selinux": b"label"}


def test_gnu_base256_uid_and_negative_mtime() -> None:
    data = layer_tar(
        [Member("f", "file", b"", uid=3_000_000_000, mtime=-1000)], tar_format=tarfile.GNU_FORMAT
    )
    (header,) = headers_of(data)
    assert header.uid == 3_000_000_000
    assert header.mtime_ns == -1000 * 10**9


def test_parse_number_forms() -> None:
    assert th.parse_number(b"0000644\x00") == 0o644
    assert th.parse_number(b" 644 \x00") == 0o644
    assert th.parse_number(b"\x00" * 8) == 0
    assert th.parse_number(b"\x80" + (12345).to_bytes(7, "big")) == 12345
    assert th.parse_number(b"\xff" * 12) == -1
    with pytest.raises(InvalidArchive, match="malformed number"):
        th.parse_number(b"12x4\x00")


def test_pax_size_over_8_gib_is_read_without_the_data() -> None:
    big = 9 << 30
    header = th.TarHeader(name=b"huge", size=big, mtime_ns=0)
    blob = encode_header(header)
    assert b"size=9663676416" in blob
    got = next(th.iter_headers(th.BlockReader(iter([blob]).__next__)))
    assert got.size == big


def test_binary_xattr_values_survive_pax_newlines_and_equals() -> None:
    capability = bytes.fromhex("0100000200200000000000000000000000000000")
    odd = b"a=b\nc\x00d"
    header = th.TarHeader(
        name=b"bin/ping", xattrs={"security.capability": capability, "user.odd": odd}
    )
    (got,) = headers_of(encode_header(header) + END_OF_ARCHIVE)
    assert got.xattrs == {"security.capability": capability, "user.odd": odd}


def test_libarchive_xattr_records() -> None:
    records = pax_record(b"LIBARCHIVE.xattr.user.a%3Db", b"aGVsbG8")
    header = th.TarHeader(name=b"f")
    th.apply_pax(header, th.parse_pax(records))
    assert header.xattrs == {"user.a=b": b"hello"}


def test_global_pax_header_applies_to_later_members() -> None:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "4242"}
    ) as tar:  # the pax_headers are written as one global header
        for name in ("a", "b"):
            tar.addfile(tarfile.TarInfo(name), io.BytesIO())
    assert [h.uid for h in headers_of(buf.getvalue())] == [4242, 4242]


def test_empty_pax_value_keeps_the_header_field() -> None:
    header = th.TarHeader(name=b"orig", uid=7)
    th.apply_pax(header, {b"path": b"", b"uid": b""})
    assert (header.name, header.uid) == (b"orig", 7)


def test_pax_times() -> None:
    assert th.parse_pax_time(b"1700000000.123456789") == 1_700_000_000_123_456_789
    assert th.parse_pax_time(b"1700000000.5") == 1_700_000_000_500_000_000
    assert th.parse_pax_time(b"12") == 12 * 10**9
    assert th.parse_pax_time(b"-1.25") == -1_250_000_000
    assert th.parse_pax_time(b"1.1234567899") == 1_123_456_789
    with pytest.raises(InvalidArchive):
        th.parse_pax_time(b"1e9")


@pytest.mark.parametrize(
    "records",
    [b"5 a=b\n", b"9 path=x", b"x path=y\n", b"10 noequals\n", b"99 path=short\n"],
)
def test_malformed_pax_records_are_rejected(records: bytes) -> None:
    with pytest.raises(InvalidArchive, match="PAX"):
        th.parse_pax(records)


def test_pax_record_lengths_count_themselves() -> None:
    for size in range(0, 300, 7):
        record = pax_record(b"k", b"v" * size)
        length, _, _ = record.partition(b" ")
        assert int(length) == len(record)
        assert th.parse_pax(record) == {b"k": b"v" * size}


def test_checksum_mismatch_is_an_error() -> None:
    data = bytearray(layer_tar([Member("f", "file", b"x")]))
    offset = data.index(b"f\x00")  # the member's name, after the PAX header
    data[offset] = ord("g")
    with pytest.raises(InvalidArchive, match="checksum"):
        headers_of(bytes(data))


def test_signed_checksums_of_old_writers_are_accepted() -> None:
    block = bytearray(encode_header(th.TarHeader(name="é".encode("latin-1"))))
    signed = sum(b - 256 if b & 0x80 else b for b in block[:148] + b" " * 8 + block[156:])
    block[148:156] = b"%06o\x00 " % signed
    (header,) = headers_of(bytes(block) + END_OF_ARCHIVE)
    assert header.name == "é".encode("latin-1")


def test_empty_stream_is_an_empty_layer_and_one_zero_block_ends_it() -> None:
    assert headers_of(b"") == []
    data = layer_tar([Member("a", "file", b"1")], writer="skiff")
    assert len(data) == 512 + 512 + 1024
    assert len(headers_of(data[:1024] + bytes(512))) == 1


@pytest.mark.parametrize("cut", [100, 512 + 600, 2560 - 256, 2560, 2560 + 100])
def test_truncated_streams_are_errors(cut: int) -> None:
    # header a (512) + data (1024) + header b (512) + data (512) + end (1024)
    data = layer_tar([Member("a", "file", b"1" * 700), Member("b", "file", b"2")], writer="skiff")
    assert len(data) == 3584
    data = data[:cut]
    with pytest.raises(InvalidArchive, match=r"truncated|end-of-archive|cut short"):
        members_of(data)


def test_stream_ending_after_an_extended_header_is_an_error() -> None:
    data = layer_tar([Member("x" * 200, "file", b"")])
    pax_end = 512 + 512  # PAX header block and its data
    with pytest.raises(InvalidArchive, match="after an extended header"):
        headers_of(data[:pax_end] + bytes(1024))


def test_sparse_and_unknown_types_are_refused() -> None:
    sparse = layer_tar([Member("s", "file", b"")], tar_format=tarfile.GNU_FORMAT)
    block = bytearray(sparse[:512])
    block[156] = ord("S")
    block[148:156] = b"%06o\x00 " % (sum(block[:148]) + 256 + sum(block[156:]))
    with pytest.raises(InvalidArchive, match="sparse"):
        headers_of(bytes(block) + END_OF_ARCHIVE)
    block[156] = ord("Z")
    block[148:156] = b"%06o\x00 " % (sum(block[:148]) + 256 + sum(block[156:]))
    with pytest.raises(InvalidArchive, match="unknown type 'Z'"):
        headers_of(bytes(block) + END_OF_ARCHIVE)
    header = th.TarHeader(name=b"f")
    with pytest.raises(InvalidArchive, match="sparse"):
        th.apply_pax(header, {b"GNU.sparse.major": b"1"})


def test_old_style_regular_file_with_slash_is_a_directory() -> None:
    block = bytearray(encode_header(th.TarHeader(name=b"olddir/", typeflag=th.REGTYPE)))
    block[156] = 0
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    (header,) = headers_of(bytes(block) + END_OF_ARCHIVE)
    assert header.typeflag == th.DIRTYPE


def test_member_data_is_skipped_when_not_read() -> None:
    data = layer_tar([Member("a", "file", b"A" * 5000), Member("b", "file", b"B" * 3)])
    assert [h.name for h in headers_of(data)] == [b"a", b"b"]


def test_block_reader_writes_members_across_chunk_boundaries() -> None:
    payload = bytes(range(256)) * 20
    data = layer_tar([Member("a", "file", payload), Member("b", "file", b"tail")])
    for chunk in (1, 7, 511, 512, 513, 4096):
        pieces = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
        reader = th.BlockReader(lambda p=pieces: next(p, b""))
        with tempfile.TemporaryFile(dir="/dev/shm") as out:
            names = []
            for header in th.iter_headers(reader):
                names.append(header.name)
                if header.name == b"a":
                    assert reader.write_to(out.fileno(), header.size) == header.size
            out.seek(0)
            assert os.read(out.fileno(), len(payload) + 1) == payload
        assert names == [b"a", b"b"]


# --- the writer ------------------------------------------------------------


names = st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" not in b)
small_text = st.binary(max_size=40).filter(lambda b: b"\0" not in b)


@st.composite
def tar_headers(draw: st.DrawFn) -> th.TarHeader:
    kind = draw(
        st.sampled_from([th.REGTYPE, th.DIRTYPE, th.SYMTYPE, th.LNKTYPE, th.CHRTYPE, th.FIFOTYPE])
    )
    return th.TarHeader(
        name=draw(names),
        typeflag=kind,
        mode=draw(st.integers(0, 0o7777)),
        uid=draw(st.integers(0, 2**40)),
        gid=draw(st.integers(0, 2**40)),
        size=draw(st.integers(0, 2**40)) if kind == th.REGTYPE else 0,
        mtime_ns=draw(st.integers(-(2**40), 2**40)) * 10**9,
        linkname=draw(names) if kind in (th.SYMTYPE, th.LNKTYPE) else b"",
        uname=draw(small_text),
        gname=draw(small_text),
        devmajor=draw(st.integers(0, 2**30)) if kind == th.CHRTYPE else 0,
        devminor=draw(st.integers(0, 2**30)) if kind == th.CHRTYPE else 0,
        xattrs=draw(
            st.dictionaries(
                st.sampled_from(["user.a", "user.b=c", "security.capability"]),
                st.binary(max_size=64),
                max_size=3,
            )
        ),
    )


@settings(max_examples=300, deadline=None)
@given(tar_headers())
def test_writer_round_trip(header: th.TarHeader) -> None:
    blob = encode_header(header)
    assert len(blob) % 512 == 0
    got = next(th.iter_headers(th.BlockReader(iter([blob]).__next__)))
    assert got == header


def test_writer_output_is_read_by_tarfile_and_gnu_tar() -> None:
    members = [
        th.TarHeader(name=b"dir/", typeflag=th.DIRTYPE, mode=0o755),
        th.TarHeader(name=b"dir/" + b"long" * 40, size=5, mode=0o4755, uid=5_000_000),
        th.TarHeader(name=b"dir/link", typeflag=th.SYMTYPE, linkname=b"/" + b"t" * 150),
    ]
    out = bytearray()
    for header in members:
        out += encode_header(header)
        if header.size:
            out += b"hello" + padding(5)
    out += END_OF_ARCHIVE
    with tarfile.open(fileobj=io.BytesIO(bytes(out))) as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == ["dir", "dir/" + "long" * 40, "dir/link"]
        assert infos[1].uid == 5_000_000
        assert infos[1].mode == 0o4755
        assert infos[2].linkname == "/" + "t" * 150
    listing = subprocess.run(
        ["tar", "-tvf", "-", "--numeric-owner"], input=bytes(out), capture_output=True, check=True
    ).stdout.decode()
    assert "5000000/0" in listing
    assert "dir/link -> /" + "t" * 150 in listing


def test_writer_is_deterministic_and_sorts_pax_records() -> None:
    header = th.TarHeader(
        name=b"x" * 150, uid=2**30, xattrs={"user.z": b"1", "user.a": b"2"}, linkname=b""
    )
    blob = encode_header(header)
    assert blob == encode_header(header)
    pax = blob[512 : 512 + th.parse_block(blob[:512], 0).size]
    keys = list(th.parse_pax(pax))
    assert keys == sorted(keys)


def test_subsecond_times_need_asking_for() -> None:
    header = th.TarHeader(name=b"f", mtime_ns=1_700_000_000_123_456_789, atime_ns=5 * 10**9)
    (whole,) = headers_of(encode_header(header) + END_OF_ARCHIVE)
    assert whole.mtime_ns == 1_700_000_000 * 10**9
    assert whole.atime_ns is None
    (exact,) = headers_of(encode_header(header, subsecond=True) + END_OF_ARCHIVE)
    assert exact.mtime_ns == header.mtime_ns
    assert exact.atime_ns == header.atime_ns
