"""Encode tar headers: POSIX ustar, with PAX records for what ustar cannot hold.

Layers must be byte-for-byte reproducible (a diff ID is the digest of the
tar), so the encoding is fixed: a value goes into the ustar field when it
fits and into a PAX ``x`` record otherwise (names and link targets over 100
bytes, ids over 2097151, sizes of 8 GiB and more, times outside the octal
range, user and group names over 31 bytes) plus ``SCHILY.xattr.*`` for
extended attributes (``LIBARCHIVE.xattr.*``, URL-encoded, for the rare names
holding "=" that SCHILY records cannot carry). Records are sorted by key.
Numbers that overflow their ustar field also get GNU base-256 there, for
readers that ignore PAX.
Times are whole seconds unless ``subsecond`` asks for PAX fractions.
"""

from __future__ import annotations

import base64
from typing import Final
from urllib.parse import quote_from_bytes

from skiff.storage.archive.tarheader import (
    BLKTYPE,
    BLOCK,
    CHRTYPE,
    XHDTYPE,
    TarHeader,
)

END_OF_ARCHIVE: Final = bytes(2 * BLOCK)
_NS: Final = 1_000_000_000


def padding(size: int) -> bytes:
    """Zero bytes that round ``size`` up to a whole block."""
    return bytes(-size % BLOCK)


def _octal(value: int, width: int) -> bytes | None:
    """``width``-byte field: octal digits and a NUL, or None if it does not fit."""
    if value < 0 or value >= 8 ** (width - 1):
        return None
    return b"%0*o\0" % (width - 1, value)


def _base256(value: int, width: int) -> bytes:
    if value < 0:
        return (value + (1 << (8 * width))).to_bytes(width, "big")
    if value >= 1 << (8 * width - 1):
        # Too big even for base-256: the PAX record carries it.
        return bytes(width)
    raw = bytearray(value.to_bytes(width, "big"))
    raw[0] |= 0x80
    return bytes(raw)


def _number(value: int, width: int, pax: dict[bytes, bytes], key: bytes | None) -> bytes:
    field = _octal(value, width)
    if field is not None:
        return field
    if key is not None:
        pax[key] = b"%d" % value
    return _base256(value, width)


def _pax_time(ns: int) -> bytes:
    sign = b"-" if ns < 0 else b""
    whole, frac = divmod(abs(ns), _NS)
    if frac:
        return sign + b"%d.%s" % (whole, (b"%09d" % frac).rstrip(b"0"))
    return sign + b"%d" % whole


def pax_record(key: bytes, value: bytes) -> bytes:
    """One ``"%d %s=%s\\n"`` record; the length counts its own digits."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(b"%d" % length) + len(body) != length:
        length = len(b"%d" % length) + len(body)
    return b"%d" % length + body


def _fit(text: bytes, width: int) -> bytes | None:
    return text if len(text) <= width and b"\0" not in text else None


def _block(
    *,
    name: bytes,
    mode: int,
    uid: bytes,
    gid: bytes,
    size: bytes,
    mtime: bytes,
    typeflag: int,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
    devmajor: bytes,
    devminor: bytes,
) -> bytes:
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = b"%07o\0" % (mode & 0o7777)
    block[108:116] = uid
    block[116:124] = gid
    block[124:136] = size
    block[136:148] = mtime
    block[148:156] = b" " * 8
    block[156] = typeflag
    block[157 : 157 + len(linkname)] = linkname
    block[257:265] = b"ustar\x0000"
    block[265 : 265 + len(uname)] = uname
    block[297 : 297 + len(gname)] = gname
    block[329:337] = devmajor
    block[337:345] = devminor
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def encode_header(header: TarHeader, *, subsecond: bool = False) -> bytes:
    """The blocks announcing ``header``: a PAX header first when needed.

    The member's data (``header.size`` bytes for a regular file) and its
    ``padding`` follow; the caller writes them.
    """
    pax: dict[bytes, bytes] = {}
    name = _fit(header.name, 100)
    if name is None:
        pax[b"path"] = header.name
        name = _short_name(header.name)
    linkname = _fit(header.linkname, 100)
    if linkname is None:
        pax[b"linkpath"] = header.linkname
        linkname = header.linkname[:100].split(b"\0", 1)[0]
    uname = _fit(header.uname, 31)
    if uname is None:
        pax[b"uname"] = header.uname
        uname = b""
    gname = _fit(header.gname, 31)
    if gname is None:
        pax[b"gname"] = header.gname
        gname = b""

    seconds, frac = divmod(header.mtime_ns, _NS)
    mtime = _octal(seconds, 12)
    if mtime is None or (subsecond and frac):
        pax[b"mtime"] = _pax_time(header.mtime_ns if subsecond else seconds * _NS)
        mtime = mtime if mtime is not None else _base256(seconds, 12)
    if subsecond and header.atime_ns is not None:
        pax[b"atime"] = _pax_time(header.atime_ns)

    device = header.typeflag in (CHRTYPE, BLKTYPE)
    block = _block(
        name=name,
        mode=header.mode,
        uid=_number(header.uid, 8, pax, b"uid"),
        gid=_number(header.gid, 8, pax, b"gid"),
        size=_number(header.size, 12, pax, b"size"),
        mtime=mtime,
        typeflag=header.typeflag,
        linkname=linkname,
        uname=uname,
        gname=gname,
        devmajor=_number(header.devmajor, 8, pax, b"SCHILY.devmajor") if device else bytes(8),
        devminor=_number(header.devminor, 8, pax, b"SCHILY.devminor") if device else bytes(8),
    )
    for xname, value in header.xattrs.items():
        raw = xname.encode("utf-8", "surrogateescape")
        if b"=" in raw or b"\0" in raw or b"%" in raw:
            # SCHILY.xattr cannot hold such a name (the record splits at the
            # first "="); libarchive's form URL-encodes it.
            pax[b"LIBARCHIVE.xattr." + quote_from_bytes(raw).encode()] = base64.b64encode(value)
        else:
            pax[b"SCHILY.xattr." + raw] = value
    if not pax:
        return block
    data = b"".join(pax_record(key, pax[key]) for key in sorted(pax))
    pax_header = _block(
        name=b"PaxHeaders/" + _short_name(header.name)[-88:],
        mode=0o644,
        uid=b"%07o\0" % 0,
        gid=b"%07o\0" % 0,
        size=b"%011o\0" % len(data),
        mtime=b"%011o\0" % max(0, min(seconds, 8**11 - 1)),
        typeflag=XHDTYPE,
        linkname=b"",
        uname=b"",
        gname=b"",
        devmajor=bytes(8),
        devminor=bytes(8),
    )
    return pax_header + data + padding(len(data)) + block


def _short_name(name: bytes) -> bytes:
    """What goes in the 100-byte field when PAX carries the real name."""
    clean = name.replace(b"\0", b"")
    base = clean.rstrip(b"/").rsplit(b"/", 1)[-1] or clean
    return base[:100]
