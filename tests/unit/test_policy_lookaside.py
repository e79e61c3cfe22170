"""registries.d: parsing, the section lookup, the lookaside layout, file reads and writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skiff.errors import ConfigError, SignatureError
from skiff.oci.digest import Digest
from skiff.oci.reference import parse_named
from skiff.signature.lookaside import (
    LookasideReader,
    LookasideWriter,
    RegistriesD,
    builtin_default,
    signature_location,
)

DIGEST = Digest("sha256", "ab" * 32)


def config(tmp_path: Path, **files: str) -> RegistriesD:
    directory = tmp_path / "registries.d"
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / f"{name}.yaml").write_text(text)
    return RegistriesD.load(directory)


def test_lookup_most_specific_first(tmp_path: Path) -> None:
    conf = config(
        tmp_path,
        a="""
default-docker:
  lookaside-staging: file:///staging/default
docker:
  quay.io:
    lookaside: https://sigs.quay.test
  quay.io/team:
    sigstore: file:///old-name/team
    use-sigstore-attachments: true
""",
        b="""
docker:
  quay.io/team/app:1.0:
    lookaside-staging: file:///staging/app
  "*.example.com":
    lookaside: http://wild.example.com
""",
    )
    team = parse_named("quay.io/team/app:2.0")
    assert conf.base_url(team, write=False) == "file:///old-name/team"
    assert conf.base_url(team, write=True) == "file:///old-name/team"
    tagged = parse_named("quay.io/team/app:1.0")
    assert conf.base_url(tagged, write=True) == "file:///staging/app"
    # that section has no read URL: reading falls through to the next scope
    assert conf.base_url(tagged, write=False) == "file:///old-name/team"
    other = parse_named("quay.io/other/x:1")
    assert conf.base_url(other, write=False) == "https://sigs.quay.test"
    assert conf.base_url(parse_named("reg.example.com/x:1"), False) == "http://wild.example.com"
    # nothing specific: default-docker for writing, built-in default for reading
    elsewhere = parse_named("docker.io/library/busybox:latest")
    assert conf.base_url(elsewhere, write=True) == "file:///staging/default"
    assert conf.base_url(elsewhere, write=False) == builtin_default()
    assert conf.use_sigstore_attachments(team)
    assert not conf.use_sigstore_attachments(other)


def test_builtin_default() -> None:
    if os.geteuid() == 0:
        assert builtin_default() == "file:///var/lib/containers/sigstore"
    else:
        assert builtin_default().endswith("/.local/share/containers/sigstore")


def test_missing_directory_is_empty(tmp_path: Path) -> None:
    conf = RegistriesD.load(tmp_path / "absent")
    assert conf.base_url(parse_named("quay.io/a:1"), False) == builtin_default()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("docker: [1, 2]\n", "docker is not a mapping"),
        ("- a\n", "not a YAML mapping"),
        ("docker:\n  quay.io:\n    lookaside: 3\n", "is not a URL"),
        ("docker:\n  quay.io:\n    lookasid: file:///x\n", "unknown key 'lookasid'"),
        ("registries:\n  quay.io: {}\n", "unknown top-level key 'registries'"),
        (
            "docker:\n  quay.io:\n    lookaside: file:///a\n    sigstore: file:///b\n",
            "both 'lookaside' and 'sigstore'",
        ),
        ("docker:\n  quay.io:\n    use-sigstore-attachments: yes please\n", "true or false"),
        ("docker: {quay.io: [\n", "not YAML"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        config(tmp_path, bad=text)


def test_a_scope_lives_in_one_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configured in both"):
        config(
            tmp_path,
            a="docker:\n  quay.io:\n    lookaside: file:///a\n",
            b="docker:\n  quay.io:\n    lookaside-staging: file:///b\n",
        )
    with pytest.raises(ConfigError, match="default-docker is defined in both"):
        config(
            tmp_path,
            a="default-docker:\n  lookaside: file:///a\n",
            c="default-docker:\n  lookaside: file:///c\n",
        )


def test_layout_matches_containers_image() -> None:
    ref = parse_named("quay.io/team/app:1.0")
    assert (
        signature_location("file:///srv/sigs/", ref, DIGEST)
        == f"file:///srv/sigs/team/app@sha256={'ab' * 32}"
    )


def test_write_then_read_side_by_side(tmp_path: Path) -> None:
    base = (tmp_path / "sigs").as_uri()
    ref = parse_named("quay.io/team/app:1.0")
    writer, reader = LookasideWriter(base), LookasideReader(base)
    assert reader.read(ref, DIGEST) == []
    assert writer.write(ref, DIGEST, [b"\x89one", b"\x89two"]) == 2
    assert writer.write(ref, DIGEST, [b"\x89two", b"\x89three"]) == 1  # "two" is there already
    assert reader.read(ref, DIGEST) == [b"\x89one", b"\x89two", b"\x89three"]
    directory = tmp_path / "sigs" / f"team/app@sha256={'ab' * 32}"
    assert sorted(p.name for p in directory.iterdir()) == [
        "signature-1",
        "signature-2",
        "signature-3",
    ]
    # a gap ends the list, as in containers/image
    (directory / "signature-2").unlink()
    assert reader.read(ref, DIGEST) == [b"\x89one"]


def test_writing_needs_a_file_url(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="only file:// can be written"):
        LookasideWriter("https://sigs.example.com")
    with pytest.raises(ConfigError, match="unsupported URL scheme"):
        LookasideReader("ftp://sigs.example.com")
    with pytest.raises(ConfigError, match="names a remote host"):
        LookasideReader("file://otherhost/x").read(parse_named("quay.io/a:1"), DIGEST)


def test_unwritable_lookaside_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        SignatureError, match=r"cannot (read signature|create lookaside directory) .*file/sub"
    ):
        LookasideWriter((blocker / "sub").as_uri()).write(
            parse_named("quay.io/a:1"), DIGEST, [b"\x89sig"]
        )
