"""skiff.cli.output: --format handling, tables, JSON, human sizes and durations.

Expected strings are podman 4.3.1's output for the same format over rows of
the same shape (three tags of one image: localhost/bb:1, localhost/bb:latest,
example.org/other/thing:v2).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from skiff.cli import output
from skiff.errors import UsageError
from skiff.gotemplate.tabwriter import DEBUG, TabWriter


def rows() -> list[dict[str, object]]:
    base = {
        "ID": "41acab6fc631",
        "Size": "1.99 MB",
        "VirtualSize": 1987703,
        "ReadOnly": False,
        "Labels": {"a": "b"},
        "Names": ["localhost/bb:1", "localhost/bb:latest", "example.org/other/thing:v2"],
    }
    return [
        {"Repository": "localhost/bb", "Tag": "1", **base},
        {"Repository": "localhost/bb", "Tag": "latest", **base},
        {"Repository": "example.org/other/thing", "Tag": "v2", **base},
    ]


HEADERS = {"ID": "IMAGE ID", "ReadOnly": "R/O"}


def fmt(template: str, **kwargs: object) -> str:
    return output.format_items(template, rows(), headers=HEADERS, **kwargs)  # type: ignore[arg-type]


# --- which format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("json", True),
        (" json ", True),
        ("{{json .}}", True),
        ("{{ json . }}", True),
        ("{{json}}", True),
        ("{{json .}}x", False),
        ("{{json .Labels}}", False),
        ("JSON", False),
        (None, False),
    ],
)
def test_is_json(text: str | None, expected: bool) -> None:
    assert output.is_json(text) is expected


def test_json_output_is_an_indented_array_with_go_escaping() -> None:
    items = [{"Id": "x", "Labels": {"html": "<x&y>"}, "RepoTags": None, "Size": 10}]
    assert output.format_items("json", [{"ignored": 1}], json_items=items) == (
        "[\n"
        "    {\n"
        '        "Id": "x",\n'
        '        "Labels": {\n'
        '            "html": "\\u003cx\\u0026y\\u003e"\n'
        "        },\n"
        '        "RepoTags": null,\n'
        '        "Size": 10\n'
        "    }\n"
        "]\n"
    )
    assert output.format_items("{{json .}}", []) == "[]\n"
    assert output.format_items(None, [{"A": 1}]) == '[\n    {\n        "A": 1\n    }\n]\n'


# --- templates per item -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Tag}}", "1\nlatest\nv2\n"),
        ("{{.Tag}}\\n", "1\nlatest\nv2\n"),
        (
            "{{.Tag}}\\t{{.Repository}}",
            "1\tlocalhost/bb\nlatest\tlocalhost/bb\nv2\texample.org/other/thing\n",
        ),
        (
            "{{.Tag}} {{.Repository}}",
            "1 localhost/bb\nlatest localhost/bb\nv2 example.org/other/thing\n",
        ),
        ('{{printf "%s\\t|" .Tag}}', "1\t|\nlatest\t|\nv2\t|\n"),
        ("{{range .}}{{.Tag}}{{end}}", "1latestv2\n"),
        (
            "{{range .Names}}{{.}},{{end}}",
            "localhost/bb:1,localhost/bb:latest,example.org/other/thing:v2,\n" * 3,
        ),
        ("{{- .Tag -}} ", "1latestv2"),
        ("x\\y{{.Tag}}", "x\\y1\nx\\ylatest\nx\\yv2\n"),
        ("{{.Tag}}\\\\t", "1\\\t\nlatest\\\t\nv2\\\t\n"),
        # "\n" inside a string literal breaks the normalised text: podman parses it as typed
        ('{{printf "<%s\\n>" .Tag}}', "<1\n><latest\n><v2\n>"),
        ('{{"a\\nb"}}', "a\nba\nba\nb"),
        ("", "\n\n\n"),
        ("table", "table\ntable\ntable\n"),
        ('{{if eq .Tag "1"}}one{{else}}{{.Tag | upper}}{{end}}', "one\nLATEST\nV2\n"),
        ("{{$.Tag}}", ""),  # $ is the list of rows: a map-less list has no field
    ],
)
def test_templates_run_once_per_item(template: str, expected: str) -> None:
    if template == "{{$.Tag}}":
        with pytest.raises(UsageError, match="can't evaluate field Tag in type"):
            fmt(template)
        return
    assert fmt(template) == expected


# --- tables -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "table {{.Repository}} {{.Tag}}",
            "REPOSITORY               TAG\n"
            "localhost/bb             1\n"
            "localhost/bb             latest\n"
            "example.org/other/thing  v2\n",
        ),
        (
            "table {{.Repository | lower}}\\t{{.Size}}",
            "repository               SIZE\n"
            "localhost/bb             1.99 MB\n"
            "localhost/bb             1.99 MB\n"
            "example.org/other/thing  1.99 MB\n",
        ),
        (
            'table {{printf "%-30s|" .Repository}}\\t{{.ID}}',
            "REPOSITORY                    |  IMAGE ID\n"
            "localhost/bb                  |  41acab6fc631\n"
            "localhost/bb                  |  41acab6fc631\n"
            "example.org/other/thing       |  41acab6fc631\n",
        ),
        (
            "table {{.Tag}}  {{.Repository}}",
            "TAG                     REPOSITORY\n"
            "1                       localhost/bb\n"
            "latest                  localhost/bb\n"
            "v2                      example.org/other/thing\n",
        ),
        (
            "table {{.Tag}}\\t{{.Repository}}\\t",
            "TAG         REPOSITORY               \n"
            "1           localhost/bb             \n"
            "latest      localhost/bb             \n"
            "v2          example.org/other/thing  \n",
        ),
        ("table {{.Tag}}\\n{{.ReadOnly}}", "TAG\nR/O\n1\nfalse\nlatest\nfalse\nv2\nfalse\n"),
        ('table {{if eq .Tag "1"}}one{{else}}{{.Tag}}{{end}}', "TAG\none\nlatest\nv2\n"),
        (
            "table {{json .Names}}",
            '"NAMES"\n'
            + '["localhost/bb:1","localhost/bb:latest","example.org/other/thing:v2"]\n' * 3,
        ),
        (
            "table X{{.Repository}}",
            "XREPOSITORY\nXlocalhost/bb\nXlocalhost/bb\nXexample.org/other/thing\n",
        ),
        ("table ", "\n\n\n\n"),
        ("table  {{.Tag}}", "            TAG\n            1\n            latest\n            v2\n"),
        (
            'table {{.Tag}}\\t{{"a\\tb"}}|',
            "TAG         a           b|\n1           a           b|\nlatest      a           b|\nv2          a           b|\n",
        ),
        (
            'table {{.Tag}}\\t{{printf "a b"}}',
            "TAG         a           b\n1           a           b\nlatest      a           b\nv2          a           b\n",
        ),
        # the normalised text does not parse: podman falls back to the text as typed
        (
            'table {{.Tag}}\\t{{"a\\nb"}}',
            "table TAG\\ta\nbtable 1\\ta\nbtable latest\\ta\nbtable v2\\ta\nb",
        ),
        (
            "table {{.ReadOnly}}\\t{{.VirtualSize}}\\t{{.ID}}",
            "R/O         VIRTUAL SIZE  IMAGE ID\n"
            "false       1987703       41acab6fc631\n"
            "false       1987703       41acab6fc631\n"
            "false       1987703       41acab6fc631\n",
        ),
    ],
)
def test_tables(template: str, expected: str) -> None:
    assert fmt(template) == expected


def test_table_of_nothing_prints_its_header() -> None:
    assert output.format_items("table {{.Tag}}", [], headers=HEADERS) == "TAG\n"


def test_noheading_drops_the_header_row() -> None:
    assert fmt("table {{.Tag}}\\t{{.ID}}", noheading=True) == (
        "1           41acab6fc631\nlatest      41acab6fc631\nv2          41acab6fc631\n"
    )


def test_header_of_a_nested_field_fails_as_in_podman() -> None:
    with pytest.raises(UsageError, match="can't evaluate field a in type string"):
        fmt("table {{.Labels.a}}")


def test_default_table_when_no_format_is_given() -> None:
    columns = [("Repository", "REPOSITORY"), ("Tag", "TAG"), ("ID", "IMAGE ID"), ("Size", "SIZE")]
    assert output.format_items(None, rows(), default_columns=columns) == (
        "REPOSITORY               TAG         IMAGE ID      SIZE\n"
        "localhost/bb             1           41acab6fc631  1.99 MB\n"
        "localhost/bb             latest      41acab6fc631  1.99 MB\n"
        "example.org/other/thing  v2          41acab6fc631  1.99 MB\n"
    )
    assert output.format_items(None, [], default_columns=columns) == (
        "REPOSITORY  TAG         IMAGE ID    SIZE\n"
    )


def test_format_table_of_plain_cells() -> None:
    assert output.format_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], []) == (
        "REPOSITORY  TAG         IMAGE ID    CREATED     SIZE\n"
    )
    assert output.format_table(["NAME", "OK", "LIST"], [["x", True, ["a", "b"]]]) == (
        "NAME        OK          LIST\nx           true        [a b]\n"
    )


# --- errors ---------------------------------------------------------------------------------


def test_unknown_field_is_a_one_line_usage_error_naming_the_fields() -> None:
    with pytest.raises(UsageError) as info:
        fmt("{{.Nope}}")
    err = info.value
    assert err.exit_code == 125
    assert err.message == (
        'template: format:1:2: executing "format" at <.Nope>: '
        "can't evaluate field Nope in type row"
    )
    assert err.hint is not None and "Repository, Tag, ID" in err.hint
    assert "\n" not in str(err)


def test_parse_error_is_a_usage_error_before_any_output() -> None:
    with pytest.raises(UsageError) as info:
        fmt("{{.Tag}")
    assert info.value.message == "template: format:1: bad character U+007D '}'"
    assert info.value.hint is not None and "template" in info.value.hint


def test_dataclass_rows_and_methods() -> None:
    @dataclass
    class Row:
        Name: str
        size: int

        def Size(self) -> str:
            return output.human_size(self.size)

    assert output.format_items("table {{.Name}}\\t{{.Size}}", [Row("a", 1987703)]) == (
        "NAME        SIZE\na           1.99 MB\n"
    )


# --- single objects ---------------------------------------------------------------------------


def test_render_template_for_one_object() -> None:
    data = {"Client": {"Version": "0.1.0", "OsArch": "linux/amd64"}}
    assert output.render_template("{{.Client.Version}}", data) == "0.1.0\n"
    assert output.render_template("{{.Client.Version}}\\t{{.Client.OsArch}}\\n", data) == (
        "0.1.0\tlinux/amd64\n"
    )
    assert output.render_template("json", {"A": "<"}) == '{\n    "A": "\\u003c"\n}\n'
    assert output.render_template("{{- .Client.Version -}} ", data) == "0.1.0"
    with pytest.raises(UsageError, match="can't evaluate field Nope"):
        output.render_template("{{.Nope}}", data)


def test_print_json_writes_a_final_newline(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_json([])
    assert capsys.readouterr().out == "[]\n"


# --- tabwriter --------------------------------------------------------------------------------


def test_tabwriter_podman_settings() -> None:
    writer = TabWriter(12, 2, 2, " ", 0)
    writer.write("a46001bfea3a4172b46c173101208244\tRandom\tuuid")
    assert writer.flush() == "a46001bfea3a4172b46c173101208244  Random      uuid"


@pytest.mark.parametrize(
    ("text", "expected"), [("Hello\tWorld", "Hello:World"), ("Be\tGood", "Be::Good")]
)
def test_tabwriter_padchar_and_minwidth(text: str, expected: str) -> None:
    writer = TabWriter(4, 8, 1, ":", 0)
    writer.write(text)
    assert writer.flush() == expected


def test_tabwriter_debug_bars() -> None:
    writer = TabWriter(8, 1, 1, " ", DEBUG)
    writer.write("Identity\tValue\nc061a0839e\tone\n1eb6fab5aa8f4b5cbfd3e66aa35e9b2a\tthree\n")
    assert writer.flush() == (
        "Identity                         |Value\n"
        "c061a0839e                       |one\n"
        "1eb6fab5aa8f4b5cbfd3e66aa35e9b2a |three\n"
    )


def test_tabwriter_column_blocks() -> None:
    writer = TabWriter()
    writer.write("a\tb\tc\naaaa\tbbbbbbbbbbbbbb\nx\ty\n")
    assert (
        writer.flush() == "a           b           c\naaaa        bbbbbbbbbbbbbb\nx           y\n"
    )
    writer.write("aaaaaaaaaaaaaaaa\tb\nc\nd\te\n")
    assert writer.flush() == "aaaaaaaaaaaaaaaa  b\nc\nd           e\n"


# --- human output ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (3344, "3.34 kB"),
        (1987703, "1.99 MB"),
        (999999, "1e+03 kB"),
        (5_000_000_000, "5 GB"),
        (10**27, "1e+03 YB"),
    ],
)
def test_human_size(size: int, expected: str) -> None:
    assert output.human_size(size) == expected


def test_bytes_size() -> None:
    assert output.bytes_size(1987703) == "1.896MiB"
    assert output.bytes_size(512) == "512B"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "Less than a second"),
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5399, "About an hour"),
        (5400, "2 hours"),
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (13 * 86400, "13 days"),
        (14 * 86400, "2 weeks"),
        (59 * 86400, "8 weeks"),
        (60 * 86400, "2 months"),
        (729 * 86400, "24 months"),
        (730 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert output.human_duration(seconds) == expected


def test_human_duration_since_and_short_id() -> None:
    assert output.human_duration_since(1_000_000.0, now=1_007_200.0) == "2 hours ago"
    assert output.short_id("sha256:41acab6fc63153a9a549a82b852c17a667e0b3acab") == "41acab6fc631"
    assert output.short_id("41acab6fc63153a9") == "41acab6fc631"


@pytest.mark.parametrize(
    ("field", "header"),
    [
        ("FieldA", "FIELD A"),
        ("Fieldb", "FIELDB"),
        ("fieldC", "FIELD C"),
        ("fieldd", "FIELDD"),
        ("ID", "ID"),
        ("CreatedAt", "CREATED AT"),
        ("RepoDigests", "REPO DIGESTS"),
        ("PDFLoader", "PDF LOADER"),
        ("GL11Version", "GL 11 VERSION"),
    ],
)
def test_default_header_splits_camel_case(field: str, header: str) -> None:
    assert output.default_header(field) == header


# --- cost ------------------------------------------------------------------------------------


def test_hundred_rows_are_fast_and_the_template_is_parsed_once() -> None:
    many = [
        {"ID": f"{i:012x}", "Names": f"c{i}", "Image": "localhost/bb:1", "Status": "Up 2 hours"}
        for i in range(100)
    ]
    template = "table {{.ID}}\\t{{.Image}}\\t{{.Status}}\\t{{.Names}}"
    output.format_items(template, many)
    before = output._compile.cache_info().hits
    start = time.perf_counter()
    text = output.format_items(template, many)
    elapsed = time.perf_counter() - start
    assert text.count("\n") == 101
    assert output._compile.cache_info().hits == before + 1
    assert elapsed < 0.25, f"100 rows took {elapsed:.3f}s"


def test_importing_output_does_not_load_the_engine() -> None:
    code = (
        "import sys, skiff.cli.output\n"
        "loaded = [m for m in sys.modules if m.startswith('skiff.gotemplate') or m == 'json']\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
