"""skiff's --format output against podman's, template by template.

A private podman store on /dev/shm holds two images built with buildah
(fixed creation times, labels with HTML characters and dotted keys, one
image with three tags). ``podman images --format json`` gives the data; the
same rows, shaped as podman's image reporter shapes them, go through
``skiff.cli.output`` with the same template, and the two outputs must be
equal to the byte — tables, ranges, printf, json, errors.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from skiff.cli import output
from skiff.errors import UsageError
from skiff.testing import shm_tempdir

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("podman") is None or shutil.which("buildah") is None,
        reason="needs podman and buildah",
    ),
]

# podman's header overrides for `podman images` (the rest are split field names)
IMAGE_HEADERS = {"ID": "IMAGE ID", "ReadOnly": "R/O"}
DEFAULT_COLUMNS = [
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Created", "CREATED"),
    ("Size", "SIZE"),
]


@dataclass
class Store:
    root: Path

    def argv(self, tool: str) -> list[str]:
        return [
            tool,
            "--root",
            str(self.root / "root"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
        ]

    def buildah(self, *args: str) -> str:
        result = subprocess.run(
            [*self.argv("buildah"), *args], capture_output=True, text=True, check=True, timeout=120
        )
        return result.stdout.strip()

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv("podman"), "--events-backend", "none", *args],
            check=False,  # the caller checks: some tests expect podman to fail
            capture_output=True,
            text=True,
            timeout=120,
        )

    def images(self, fmt: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        extra = [] if fmt is None else ["--format", fmt]
        return self.podman("images", *extra, *args)


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with shm_tempdir("skiff-output-podman-") as tmp:
        s = Store(tmp)
        ctr = s.buildah("from", "scratch")
        s.buildah("copy", ctr, "/bin/busybox", "/bin/busybox")
        s.buildah("config", "--label", "a=b", "--label", "html=<x&y>", "--label", "k.dots=v", ctr)
        s.buildah("commit", "-q", "--timestamp", "1600000000", ctr, "localhost/bb:1")
        s.buildah("rm", ctr)
        ctr = s.buildah("from", "scratch")
        s.buildah("copy", ctr, "/dev/null", "/empty")
        s.buildah("commit", "-q", "--timestamp", "1700000000", ctr, "example.org/tiny:latest")
        s.buildah("rm", ctr)
        tagged = s.podman(
            "tag", "localhost/bb:1", "localhost/bb:latest", "example.org/other/thing:v2"
        )
        assert tagged.returncode == 0, tagged.stderr
        yield s


def image_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """podman's image reporter rows from its JSON: one row per tag of each image."""
    rows = []
    seen: dict[str, int] = {}
    for entry in entries:
        n = seen.get(entry["Id"], 0)
        seen[entry["Id"]] = n + 1
        names = entry["Names"] or []
        repo, _, tag = (names[n] if n < len(names) else "<none>:<none>").rpartition(":")
        created = datetime.fromtimestamp(entry["Created"], tz=UTC).astimezone()
        since = output.human_duration_since(created)
        rows.append(
            {
                "Repository": repo,
                "Tag": tag,
                "ID": output.short_id(entry["Id"]),
                "Id": entry["Id"],
                "Digest": entry["Digest"],
                "Created": since,
                "CreatedSince": since,
                "CreatedAt": created,
                "CreatedTime": created,
                "Size": output.human_size(entry["Size"]),
                "VirtualSize": entry["VirtualSize"],
                "SharedSize": entry["SharedSize"],
                "Labels": entry["Labels"] or {},
                "Names": names,
                "RepoDigests": entry["RepoDigests"] or [],
                "History": ", ".join(entry["History"] or []),
                "Containers": entry["Containers"],
                "ReadOnly": False,
                "IsReadOnly": False,
                "Dangling": False,
            }
        )
    return rows


def podman_json(store: Store, *args: str) -> list[dict[str, Any]]:
    result = store.images("json", *args)
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def skiff_output(fmt: str | None, rows: list[dict[str, Any]], **kwargs: Any) -> str:
    return output.format_items(fmt, rows, headers=IMAGE_HEADERS, **kwargs)


# --- templates over image data ---------------------------------------------------------------

DATA_TEMPLATES = [
    "{{.Repository}}:{{.Tag}}",
    "table {{.Repository}} {{.Tag}}",
    "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.Created}}\\t{{.Size}}",
    "table {{.ID}}\\t{{.ReadOnly}}\\t{{.VirtualSize}}\\t{{.Digest}}\\t{{.Containers}}",
    "table {{.Size}}\\t{{.SharedSize}}\\t{{.Dangling}}\\t{{.Names}}",
    'table {{.Tag | printf "%q"}}\\t{{len .Names}}\\t{{split .Repository "/"}}',
    "table {{title .Repository}}\\t{{lower .ID}}\\t{{pad .Tag 1 1}}|",
    "{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}",
    "{{range $i, $n := .Names}}{{if $i}},{{end}}{{$n}}{{end}}",
    '{{if eq .Tag "latest"}}LATEST{{else if eq .Tag "1"}}one{{else}}{{.Tag}}{{end}}',
    '{{printf "%-25s|%8.3s|%5d|%x" .Repository .Tag .VirtualSize .Tag}}',
    "{{json .Labels}} {{json .Names}} {{json .VirtualSize}}",
    '{{join .Names ","}}',
    "{{.Repository | upper}} {{upper .Tag}}",
    "{{truncate .Id 5}}|{{truncate .Tag 20}}",
    "{{.Labels}} {{.Names}} {{.RepoDigests}}",
    '{{index .Labels "k.dots"}}|{{.Labels.a}}|{{index .Labels "nope"}}|{{.Labels.nope}}',
    "{{with .Labels.a}}a={{.}}{{else}}no a{{end}}",
    "{{.CreatedAt}} {{.CreatedSince}} {{.History}}",
    "{{range .}}{{.Tag}},{{end}}",
    "{{.Repository}}\\t{{.Tag}}\\n",
    "{{$r := .Repository}}{{range .Names}}{{if ne . $r}}[{{.}}]{{end}}{{end}}",
    "{{- .Tag -}} ",
    '{{printf "%v %T %T" .Containers .Labels .Names}}',
    '{{"a\\tb"}}|{{printf "%s\\n" .Tag}}',
    '{{printf "<%s\\n>" .Tag}}',
    'table {{.Tag}}\\t{{"a\\nb"}}',
    "{{len $}} {{(index $ 0).Tag}}",
    "table",
    "",
]


@pytest.mark.parametrize("template", DATA_TEMPLATES)
def test_template_output_matches_podman(store: Store, template: str) -> None:
    rows = image_rows(podman_json(store))
    expected = store.images(template)
    assert expected.returncode == 0, expected.stderr
    assert skiff_output(template, rows) == expected.stdout


def test_default_table_matches_podman(store: Store) -> None:
    rows = image_rows(podman_json(store))
    expected = store.images(None)
    assert expected.returncode == 0, expected.stderr
    assert output.format_items(None, rows, default_columns=DEFAULT_COLUMNS) == expected.stdout


def test_noheading_matches_podman(store: Store) -> None:
    rows = image_rows(podman_json(store))
    expected = store.images("table {{.ID}}\\t{{.Tag}}", "--noheading")
    assert skiff_output("table {{.ID}}\\t{{.Tag}}", rows, noheading=True) == expected.stdout


def test_json_output_matches_podman_byte_for_byte(store: Store) -> None:
    entries = podman_json(store)
    expected = store.images("json")
    assert skiff_output("json", image_rows(entries), json_items=entries) == expected.stdout
    empty = store.images("json", "--filter", "label=none-has-this")
    assert skiff_output("json", [], json_items=[]) == empty.stdout


def test_empty_listing_matches_podman(store: Store) -> None:
    for template in ("table {{.Tag}}", "{{.Tag}}", None):
        expected = store.images(template, "--filter", "label=none-has-this")
        assert expected.returncode == 0
        got = output.format_items(
            template, [], default_columns=DEFAULT_COLUMNS, headers=IMAGE_HEADERS
        )
        assert got == expected.stdout


# --- the engine on data-independent templates --------------------------------------------------

ENGINE_TEMPLATES = [
    '{{printf "%5.2f|%-8s|%q|%x|%X|%o|%b|%e|%g|%t|%c|%U|%%" 3.14159 "ab" "x\\ty" 255 "hi" 8 5 1234.5678 0.000012 true 65 233}}',
    '{{printf "%d" "a"}}|{{printf "%s" 5}}|{{printf "%d %d" 1}}|{{printf "%d" 1 2}}',
    '{{printf "%v %v %v %v %v" 1.0 1e6 123456789.0 1e21 0.000012345}}',
    '{{printf "%08.3f|%+d|% d|%x|%#x|%#o|%10.3s|%-10q|" 3.14159 5 7 -255 255 8 "abcdef" "z"}}',
    '{{printf "%6.2v|%-6v|%06d|%x|% x" 3.14159 "ab" -42 "héllo" "ab"}}',
    '{{printf "%+q|%#q|%#v" "é" "ab" "s"}}',
    '{{printf "%.2s|%.0f|%.1e|%G|%E|%8.3g" "héllo" 2.5 12345.678 1e-10 1e20 3.14159}}',
    '{{printf "%!|%z|%" 1}}',
    '{{printf "%[2]d %[1]d|%[3]d" 1 2}}',
    '{{printf "%*d|%-*d|%.*f|%*d" 5 1 4 2 2 3.14159 "x" 3}}',
    '{{printf "%x|%X|%c|%q|%U|%#U" 3.5 -1.25 0x4E16 0x7f 0x1F600 0x4E16}}',
    '{{print 1 2 "a" "b" 3 true false nil}}|{{println 1 "a"}}',
    "{{'a'}}|{{0x1F}}|{{0o17}}|{{017}}|{{0b101}}|{{1_000}}|{{1.5e3}}|{{.5}}|{{-3}}|{{+4}}",
    "{{1.5}}|{{1e100}}|{{0.1}}|{{100000000.0}}|{{1234567.0}}|{{123456.0}}|{{0.00001}}",
    '{{"\\x41\\u00e9\\101"}}|{{`raw`}}',
    "{{$x := 5}}{{$x}}{{$x = 6}}{{$x}}",
    '{{and 1 0 2}}|{{and 1 2}}|{{or 0 "" "x"}}|{{or 0 ""}}|{{not 0}}|{{not "a"}}',
    '{{eq 1 2 3 1}}|{{ne "a" "b"}}|{{lt 1 2}}|{{le 2 2}}|{{gt "b" "a"}}|{{ge 1.5 2.5}}',
    '{{len "héllo"}}|{{index "abc" 1}}|{{slice "abcdef" 1 3}}',
    '{{html "<a href=\'x\'>&\\"</a>"}}|{{urlquery "a b&c=d/é"}}|{{js "it\'s <b> = &"}}',
    '{{json "a<b>&"}}|{{json 1.5}}|{{json 1e21}}|{{json 1e-7}}|{{json nil}}|{{json 1.0}}|{{json 1e20}}',
    '{{split "a:b:c" ":"}}|{{title "hello wORLD foo_bar x-y élan"}}|{{upper "straße"}}|{{lower "ÀÉÎ"}}',
    '{{truncate "abcdef" 3}}|{{truncate "ab" 3}}|{{pad "ab" 2 3}}|{{pad "" 2 3}}',
    '{{/* c */}}x{{- /* c2 */ -}} y|a  {{- "b" -}}  c',
    '{{3 | printf "%d-%s" "x"}}|{{"abc" | len}}',
    '{{range $i, $c := split "x,y" ","}}{{$i}}{{$c}}{{end}}',
    '{{block "b" "v"}}B{{.}}{{end}}',
]


@pytest.mark.parametrize("template", ENGINE_TEMPLATES)
def test_engine_matches_go(store: Store, template: str) -> None:
    rows = image_rows(podman_json(store, "example.org/tiny"))
    expected = store.images(template, "example.org/tiny")
    assert expected.returncode == 0, expected.stderr
    assert skiff_output(template, rows) == expected.stdout


ERROR_TEMPLATES = [
    "{{.Nope}}",
    "{{.Tag}",
    "{{.Tag | nosuch}}",
    "{{if}}{{end}}",
    "{{$y}}",
    "{{end}}",
    "{{range $a, $b, $c := .Names}}{{end}}",
    "{{.Names | 1}}",
    "{{upper 5}}",
    '{{truncate "abc" "1"}}',
    "{{upper .Containers}}",
    "{{eq 1 1.0}}",
    "{{lt true false}}",
    "{{index .Names 5}}",
    "{{index .Labels 1}}",
    "{{len 3}}",
    '{{"a" "b"}}',
    "{{nil}}",
    "{{.Labels.a 1}}",
    '{{range "abc"}}{{.}}{{end}}',
    "{{printf}}",
    "{{.Names.x}}",
    "table {{.Labels.a}}",
]


def _normalise(message: str) -> str:
    """Error text without the template's name and column (podman's column counts its
    hidden ``{{range .}}`` prefix) and without podman's Go type names."""
    message = re.sub(r"^Error: ", "", message.strip())
    message = re.sub(r"template: \w+:(\d+)(:\d+)?: ", r"template: \1: ", message)
    message = re.sub(r'executing "\w+" ', "", message)
    return message.replace("images.imageReporter", "row")


@pytest.mark.parametrize("template", ERROR_TEMPLATES)
def test_errors_match_podman(store: Store, template: str) -> None:
    rows = image_rows(podman_json(store, "example.org/tiny"))
    expected = store.images(template, "example.org/tiny")
    assert expected.returncode == 125
    assert expected.stdout == ""
    with pytest.raises(UsageError) as info:
        skiff_output(template, rows)
    assert info.value.exit_code == 125
    assert _normalise(info.value.message) == _normalise(expected.stderr)
