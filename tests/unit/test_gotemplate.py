"""The Go template engine: language, functions, fmt verbs, errors.

Expected outputs are what podman 4.3.1 (Go 1.19 text/template) printed for
the same templates over an image row of the same shape; the live comparison
is tests/interop/test_output_podman.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from skiff.gotemplate import NO_VALUE, Func, Struct, Template, TemplateError
from skiff.gotemplate.gofmt import format_float, format_value, quote, sprint, sprintf
from skiff.gotemplate.gojson import encode
from skiff.gotemplate.lexer import ItemType, lex

ROW = Struct(
    {
        "Repository": "localhost/bb",
        "Tag": "1",
        "ID": "41acab6fc631",
        "Size": "1.99 MB",
        "VirtualSize": 1987703,
        "Containers": 0,
        "Labels": {"a": "b", "html": "<x&y>"},
        "Names": ["localhost/bb:1", "localhost/bb:latest", "example.org/other/thing:v2"],
        "ReadOnly": False,
    },
    "images.imageReporter",
)


def run(text: str, data: object = ROW) -> str:
    return Template(text).execute(data)


def error(text: str, data: object = ROW) -> str:
    with pytest.raises(TemplateError) as info:
        Template(text).execute(data)
    return info.value.message


# --- lexing and parsing ----------------------------------------------------------------


def test_text_without_actions_is_copied() -> None:
    assert run("plain {text} }} {") == "plain {text} }} {"


def test_lexer_tokens_of_an_action() -> None:
    types = [i.typ for i in lex('a{{.X | printf "%d" 1}}b')]
    assert types == [
        ItemType.TEXT,
        ItemType.LEFT_DELIM,
        ItemType.FIELD,
        ItemType.SPACE,
        ItemType.PIPE,
        ItemType.SPACE,
        ItemType.IDENTIFIER,
        ItemType.SPACE,
        ItemType.STRING,
        ItemType.SPACE,
        ItemType.NUMBER,
        ItemType.RIGHT_DELIM,
        ItemType.TEXT,
        ItemType.EOF,
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a  {{- .Tag -}}  c", "a1c"),
        ("a \n {{- .Tag}} \n c", "a1 \n c"),
        ("{{.Tag -}} \n\t x", "1x"),
        ("{{/* a comment */}}x{{- /* c2 */ -}} y", "xy"),
        ("{{-3}}", "-3"),  # no space after the dash: a number, not a trim marker
        ("{{ .Tag }}", "1"),
        ("{{\n.Tag\n}}", "1"),  # newlines inside actions (Go 1.16+)
    ],
)
def test_trim_markers_comments_and_spaces(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{'a'}}|{{0x1F}}|{{0o17}}|{{017}}|{{0b101}}|{{1_000}}", "97|31|15|15|5|1000"),
        ("{{1.5e3}}|{{.5}}|{{-3}}|{{+4}}|{{1e3}}|{{1.0}}", "1500|0.5|-3|4|1000|1"),
        ('{{"\\x41\\u00e9\\101"}}|{{`raw\\n`}}', "Aé" + "A|raw\\n"),
        ('{{"\\xc3\\xa9"}}', "é"),  # escapes are bytes, as in Go
        ("{{true}}|{{false}}", "true|false"),
        ('{{"a\\tb"}}', "a\tb"),
    ],
)
def test_literals(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{.Tag}", "template: template:1: bad character U+007D '}'"),
        ("{{.Tag | nosuch}}", 'template: template:1: function "nosuch" not defined'),
        ("{{if}}{{end}}", "template: template:1: missing value for if"),
        ("{{$y}}", 'template: template:1: undefined variable "$y"'),
        ("{{if true}}{{$y := 1}}{{end}}{{$y}}", 'template: template:1: undefined variable "$y"'),
        ("{{end}}", "template: template:1: unexpected {{end}}"),
        ("{{else}}", "template: template:1: unexpected {{else}}"),
        (
            "{{range $a, $b, $c := .Names}}{{end}}",
            "template: template:1: too many declarations in range",
        ),
        ("{{.Names | 1}}", "template: template:1: non executable command in pipeline stage 2"),
        ("{{.Tag", "template: template:1: unclosed action"),
        ("x\n{{.Tag\n", "template: template:3: unclosed action started at line 2"),
        ('{{"abc}}', "template: template:1: unterminated quoted string"),
        ('{{"a\\\nb"}}', "template: template:1: unterminated quoted string"),
        ("{{'a}}", "template: template:1: unterminated character constant"),
        ("{{'\\\n'}}", "template: template:1: unterminated character constant"),
        ("{{/* c */ .Tag}}", "template: template:1: comment ends before closing delimiter"),
        ('{{"a".Foo}}', 'template: template:1: unexpected . after term "\\"a\\""'),
        ("{{break}}", "template: template:1: {{break}} outside {{range}}"),
        ("{{if true}}", "template: template:1: unexpected EOF"),
        (
            "{{range .Names}}{{else}}{{else}}{{end}}",
            "template: template:1: expected end; found {{else}}",
        ),
        ("{{3x}}", 'template: template:1: bad number syntax: "3x"'),
        ("{{.A :}}", "template: template:1: expected :="),
        ("{{ ( .Tag }}", "template: template:1: unclosed left paren"),
        ("{{ .Tag ) }}", "template: template:1: unexpected right paren"),
        ("{{ € }}", "template: template:1: unrecognized character in action: U+20AC '€'"),
        ("{{template 3}}", 'template: template:1: unexpected "3" in template clause'),
        ('{{"\\q"}}', "template: template:1: invalid syntax"),
        (
            "{{99999999999999999999}}",
            'template: template:1: integer overflow: "99999999999999999999"',
        ),
    ],
)
def test_parse_errors_use_go_messages(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template(text)
    assert info.value.message == message
    assert info.value.parse


def test_template_is_parsed_once_and_reused() -> None:
    template = Template("{{.Tag}}-")
    assert template.execute({"Tag": "a"}) == "a-"
    assert template.execute({"Tag": "b"}) == "b-"
    assert template.execute_each([{"Tag": "x"}, {"Tag": "y"}]) == "x-y-"


# --- fields, maps, objects --------------------------------------------------------------


@dataclass
class Image:
    Repository: str
    Tag: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: dt.datetime | None = None

    def Size(self) -> str:
        return "1.99 MB"

    def Prefixed(self, prefix: str) -> str:
        return prefix + self.Repository

    def explode(self) -> str:
        raise RuntimeError("boom")

    @property
    def private_thing(self) -> int:
        return 1


def test_fields_of_dataclasses_methods_and_snake_case_fallback() -> None:
    image = Image("r", "t", {"k": "v"})
    assert run("{{.Repository}}:{{.Tag}} {{.Size}} {{.Labels.k}}", image) == "r:t 1.99 MB v"
    assert run('{{.Prefixed "x/"}}|{{"y/" | .Prefixed}}', image) == "x/r|y/r"
    assert run("{{.PrivateThing}}", image) == "1"


def test_method_errors_and_argument_counts() -> None:
    image = Image("r", "t")
    assert error("{{.Size 1}}", image).endswith("wrong number of args for Size: want 0 got 1")
    assert error("{{.Explode}}", image).endswith("error calling Explode: boom")
    assert error("{{.Tag 1}}", image).endswith(
        "Tag has arguments but cannot be invoked as function"
    )


def test_missing_field_of_a_struct_is_an_error_with_position_and_hint() -> None:
    with pytest.raises(TemplateError) as info:
        Template("x {{.Nope}}").execute(ROW)
    assert info.value.message == (
        'template: template:1:4: executing "template" at <.Nope>: '
        "can't evaluate field Nope in type images.imageReporter"
    )
    assert info.value.hint is not None and "Repository, Tag, ID" in info.value.hint
    assert error("{{.nope}}", Image("r", "t")).endswith("can't evaluate field nope in type Image")


def test_missing_map_key_is_no_value_and_index_gives_the_zero_value() -> None:
    assert run('{{.Labels.nope}}|{{index .Labels "nope"}}|{{.Labels.nope.deeper}}') == (
        "<no value>||<no value>"
    )
    assert run('{{index .M "x"}}', {"M": {"a": 1}}) == "0"
    assert run('{{index .M "x"}}', {"M": {"a": 1, "b": "s"}}) == "<nil>"


def test_map_keys_with_dots_need_index() -> None:
    assert run('{{index .Labels "k.dots"}}', {"Labels": {"k.dots": "v"}}) == "v"


def test_nested_field_of_a_string_is_an_error() -> None:
    assert error("{{.Labels.a.b}}") == (
        'template: template:1:9: executing "template" at <.Labels.a.b>: '
        "can't evaluate field b in type string"
    )
    assert error("{{.Names.x}}").endswith("can't evaluate field x in type []string")


def test_map_values_printed_as_go_prints_them() -> None:
    assert run("{{.Labels}}|{{.Names}}|{{.ReadOnly}}|{{.Containers}}") == (
        "map[a:b html:<x&y>]|[localhost/bb:1 localhost/bb:latest example.org/other/thing:v2]"
        "|false|0"
    )
    assert run("{{.}}", Struct({"B": {"z": 1, "a": [1.5, None, True]}})) == (
        "{map[a:[1.5 <nil> true] z:1]}"
    )
    assert run("{{.}}", {"B": {"z": 1}}) == "map[B:map[z:1]]"


def test_time_and_duration_values_print_as_go() -> None:
    when = dt.datetime(2026, 11, 28, 20, 28, 35, tzinfo=dt.UTC)
    assert run("{{.T}}", {"T": when}) == "2026-11-28 20:28:35 +0000 UTC"
    east = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert run("{{.T}}", {"T": when.replace(microsecond=500000, tzinfo=east)}) == (
        "2026-11-28 20:28:35.5 +0530 +0530"
    )
    assert run("{{.D}}", {"D": dt.timedelta(hours=1, minutes=2, seconds=3.5)}) == "1h2m3.5s"
    assert run("{{.D}}", {"D": dt.timedelta(milliseconds=1.5)}) == "1.5ms"


def test_none_is_nil_and_fields_of_nil_have_no_value() -> None:
    assert run("{{.X}}|{{.X.Y}}", {"X": None}) == "<nil>|<no value>"


def test_stringers_print_through_their_str() -> None:
    class Digest:
        def __str__(self) -> str:
            return "sha256:abc"

    assert run('{{.D}}|{{printf "%s|%q" .D .D}}', {"D": Digest()}) == (
        'sha256:abc|sha256:abc|"sha256:abc"'
    )


# --- control structures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{if eq .Tag "1"}}one{{else}}{{.Tag}}{{end}}', "one"),
        ("{{if .Labels.nope}}t{{else if .Labels.a}}a{{else}}f{{end}}", "a"),
        ("{{if .Labels.nope}}t{{else if .ReadOnly}}a{{else}}f{{end}}", "f"),
        (
            "{{with .Labels.a}}A={{.}}{{else}}none{{end}}|{{with .Labels.nope}}x{{else}}none{{end}}",
            "A=b|none",
        ),
        ("{{with $x := .Labels.a}}{{$x}}{{end}}", "b"),
        ("{{with .Labels.nope}}x{{else with .Labels.a}}y{{.}}{{end}}", "yb"),
        (
            "{{range $i, $e := .Names}}{{$i}}={{$e}};{{end}}",
            "0=localhost/bb:1;1=localhost/bb:latest;2=example.org/other/thing:v2;",
        ),
        (
            "{{range $e := .Names}}{{$e}};{{end}}",
            "localhost/bb:1;localhost/bb:latest;example.org/other/thing:v2;",
        ),
        ("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", "a=b;html=<x&y>;"),
        ("{{range .Labels.nope}}x{{else}}empty{{end}}", "empty"),
        (
            '{{range .Names}}{{if eq . "localhost/bb:latest"}}{{break}}{{end}}{{.}};{{end}}',
            "localhost/bb:1;",
        ),
        (
            '{{range .Names}}{{if eq . "localhost/bb:latest"}}{{continue}}{{end}}{{.}};{{end}}',
            "localhost/bb:1;example.org/other/thing:v2;",
        ),
        ("{{range 3}}{{.}}{{end}}", "012"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{range .Names}}{{$.Tag}}{{end}}", "111"),
        ("{{ range $k, $v := .Labels -}} {{ $k }}={{ $v }} {{ end -}}", "a=b html=<x&y> "),
        ('{{define "x"}}X{{.}}{{end}}{{template "x" .Tag}}{{template "x"}}', "X1X<no value>"),
        ('{{block "b" .Tag}}B{{.}}{{end}}', "B1"),
        (
            "{{$}}",
            str(ROW)
            if False
            else "{localhost/bb 1 41acab6fc631 1.99 MB 1987703 0 map[a:b html:<x&y>] [localhost/bb:1 localhost/bb:latest example.org/other/thing:v2] false}",
        ),
    ],
)
def test_control_structures(text: str, expected: str) -> None:
    assert run(text) == expected


def test_range_errors() -> None:
    assert error('{{range "abc"}}{{.}}{{end}}') == (
        'template: template:1:8: executing "template" at <"abc">: range can\'t iterate over abc'
    )
    assert error('{{template "x"}}').endswith('template "x" not defined')


def test_execute_each_is_podmans_implicit_range() -> None:
    template = Template("{{.}}{{if eq . 2}}{{break}}{{end}},", in_range=True)
    assert template.execute_each([1, 2, 3]) == "1,2"
    template = Template("{{if eq . 2}}{{continue}}{{end}}{{.}}-{{len $}},", in_range=True)
    assert template.execute_each([1, 2, 3]) == "1-3,3-3,"


def test_recursive_templates_stop_at_a_depth() -> None:
    message = error('{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}')
    assert "exceeded maximum template depth (100)" in message


# --- functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{{and 1 0 2}}|{{and 1 2}}|{{or 0 "" "x"}}|{{or 0 ""}}|{{not 0}}|{{not "a"}}',
            "0|2|x||true|false",
        ),
        (
            '{{or .Labels.nope "dflt"}}|{{and .Labels.a .Labels.nope}}|{{and .Labels.a "x"}}',
            "dflt|<no value>|x",
        ),
        ("{{or 1 .Nope}}", "1"),  # short-circuit: .Nope is never evaluated
        (
            '{{eq 1 2 3 1}}|{{ne "a" "b"}}|{{lt 1 2}}|{{le 2 2}}|{{gt "b" "a"}}|{{ge 1.5 2.5}}',
            "true|true|true|true|true|false",
        ),
        ('{{if eq .Labels.nope "x"}}yes{{else}}no{{end}}', "no"),
        ("{{eq nil nil}}|{{eq .Labels.a nil}}", "true|false"),
        ('{{len "héllo"}}|{{len .Names}}|{{len .Labels}}', "6|3|2"),
        ('{{index .Names 1}}|{{index .Labels "a"}}|{{index "abc" 1}}', "localhost/bb:latest|b|98"),
        (
            '{{slice "abcdef" 1 3}}|{{slice .Names 1}}|{{slice .Names 1 2 3}}',
            "bc|[localhost/bb:latest example.org/other/thing:v2]|[localhost/bb:latest]",
        ),
        ('{{print 1 2 "a" "b" 3 true false}}', "1 2ab3 true false"),
        ('{{println 1 "a" 2}}', "1 a 2\n"),
        ('{{print nil}}|{{printf "%s" nil}}', "<nil>|%!s(<nil>)"),
        (
            '{{printf "%s" .Labels.nope}}|{{print .Labels.nope}}|{{json .Labels.nope}}',
            "%!s(<nil>)|<nil>|null",
        ),
        ('{{html "<a href=\'x\'>&\\"</a>"}}', "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;"),
        (
            '{{js "it\'s <b> \\"q\\" \\\\ \\n é ="}}',
            'it\\\'s \\u003Cb\\u003E \\"q\\" \\\\ \\u000A é \\u003D',
        ),
        ('{{urlquery "a b&c=d/é"}}', "a+b%26c%3Dd%2F%C3%A9"),
        ('{{html 1 2 "a"}}', "1 2a"),
        ('{{3 | printf "%d-%s" "x"}}', "%!d(string=x)-%!s(int=3)"),
        (
            '{{"abc" | len}}|{{.Names | len}}|{{(len .Names)}}|{{(index .Names 0) | upper}}',
            "3|3|3|LOCALHOST/BB:1",
        ),
        ('{{ .Names | len | printf "%d" | upper | lower | printf "%v %v" 1 }}', "1 3"),
        ('{{(index .Labels "a")}}', "b"),
    ],
)
def test_builtin_functions(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{join .Names ","}}', "localhost/bb:1,localhost/bb:latest,example.org/other/thing:v2"),
        (
            '{{split "a:b:c" ":"}}|{{split "" ","}}|{{split "abc" ""}}|{{len (split "a,b," ",")}}',
            "[a b c]|[]|[a b c]|3",
        ),
        ('{{title "hello wORLD foo_bar x-y élan ßtraße"}}', "Hello WORLD Foo_bar X-Y Élan ßtraße"),
        ('{{upper "straße"}}|{{lower "ÀÉÎ"}}|{{.Repository | upper}}', "STRAßE|àéî|LOCALHOST/BB"),
        (
            '{{truncate "abcdef" 3}}|{{truncate "ab" 3}}|{{truncate "abc" 3}}|{{truncate "abc" 0}}',
            "abc|ab|abc|",
        ),
        ('{{pad "ab" 2 3}}|{{pad "" 2 3}}|{{pad "x" 0 0}}', "  ab   ||x"),
        (
            '{{json "a<b>&"}}|{{json 1.5}}|{{json 1e21}}|{{json 1e-7}}|{{json .Names}}|{{json nil}}',
            '"a<b>&"|1.5|1e+21|1e-7|["localhost/bb:1","localhost/bb:latest","example.org/other/thing:v2"]|null',
        ),
        ('{{json "\\u2028\\b\\f\\x01"}}', '"\\u2028\\u0008\\u000c\\u0001"'),
        ("{{json .Labels}}|{{json .Containers}}", '{"a":"b","html":"<x&y>"}|0'),
        (
            "{{json 1.0}}|{{json 100.0}}|{{json 1e20}}|{{json 0.000001}}|{{json -1e-10}}|{{json 123456789.123}}",
            "1|100|100000000000000000000|0.000001|-1e-10|123456789.123",
        ),
        ('{{join nil ","}}|{{join (split "a b c" " ") "+"}}', "|a+b+c"),
    ],
)
def test_podman_functions(text: str, expected: str) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{eq 1 1.0}}", "error calling eq: incompatible types for comparison"),
        ("{{lt true false}}", "error calling lt: invalid type for comparison"),
        ("{{lt nil 1}}", "error calling lt: invalid type for comparison"),
        ('{{lt 1 "a"}}', "error calling lt: incompatible types for comparison"),
        ("{{eq 1}}", "error calling eq: missing argument for comparison"),
        (
            "{{eq .Names .Names}}",
            "error calling eq: non-comparable type [localhost/bb:1 localhost/bb:latest "
            "example.org/other/thing:v2]: []string",
        ),
        ("{{index .Names 5}}", "error calling index: index out of range: 5"),
        ("{{index .Names -1}}", "error calling index: index out of range: -1"),
        ("{{index .Names 3}}", "error calling index: reflect: slice index out of range"),
        ("{{index .Labels 1}}", "error calling index: value has type int; should be string"),
        ('{{index .Names "a"}}', "error calling index: cannot index slice/array with type string"),
        ("{{index nil 1}}", "error calling index: index of untyped nil"),
        ("{{index 3 1}}", "error calling index: can't index item of type int"),
        ("{{slice .Names 2 1}}", "error calling slice: invalid slice index: 2 > 1"),
        ('{{slice "abc" 1 2 3}}', "error calling slice: cannot 3-index slice a string"),
        ("{{len 3}}", "error calling len: len of type int"),
        ("{{len nil}}", "error calling len: reflect: call of reflect.Value.Type on zero Value"),
        ("{{call .Tag}}", "error calling call: non-function of type string"),
        ("{{and}}", "wrong number of args for and: want at least 1 got 0"),
        ("{{printf}}", "wrong number of args for printf: want at least 1 got 0"),
        ("{{len}}", "wrong number of args for len: want 1 got 0"),
        ("{{upper 5}}", "expected string; found 5"),
        ('{{truncate "abc" 1.5}}', "expected integer; found 1.5"),
        ('{{truncate "abc" "1"}}', 'expected integer; found "1"'),
        ("{{upper .Containers}}", "wrong type for value; expected string; got int"),
        ('{{join .Labels ","}}', "wrong type for value; expected []string; got map[string]string"),
        ('{{.Names | join ","}}', 'can\'t handle "," for arg of type []string'),
        ("{{upper .Labels.nope}}", "invalid value; expected string"),
        ("{{upper nil}}", "cannot assign nil to string"),
        ("{{nil}}", "nil is not a command"),
        ('{{"a" "b"}}', 'can\'t give argument to non-function "a"'),
        ("{{(1) 2}}", "can't give argument to non-function 1"),
        ("{{.Labels.a 1}}", "a is not a method but has arguments"),
        (
            '{{truncate "abc" -1}}',
            "error calling truncate: runtime error: slice bounds out of range [:-1]",
        ),
    ],
)
def test_function_errors(text: str, message: str) -> None:
    assert error(text).endswith(": " + message)


def test_error_context_names_the_failing_command() -> None:
    assert error("{{index .Names 5}}") == (
        'template: template:1:2: executing "template" at <index .Names 5>: '
        "error calling index: index out of range: 5"
    )
    assert error("ab\ncd {{upper 5}}") == (
        'template: template:2:11: executing "template" at <5>: expected string; found 5'
    )


def test_call_and_custom_functions() -> None:
    assert run("{{call .F 2 3}}", {"F": lambda a, b: a * b}) == "6"
    funcs = {"double": Func(lambda n: n * 2, ("int",))}
    assert Template("{{double 21}}", funcs=funcs).execute(None) == "42"
    with pytest.raises(TemplateError, match='function "upper" not defined'):
        Template("{{upper .}}", funcs=funcs)


def test_functions_cannot_be_printed() -> None:
    assert error("{{.F}}", {"F": len}).endswith("can't print {{.F}} of type func")


# --- fmt ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        (
            "%5.2f|%-8s|%q|%x|%X|%o|%b|%e|%g|%t|%c|%U|%%",
            [3.14159, "ab", "x\ty", 255, "hi", 8, 5, 1234.5678, 0.000012, True, 65, 233],
            ' 3.14|ab      |"x\\ty"|ff|6869|10|101|1.234568e+03|1.2e-05|true|A|U+00E9|%',
        ),
        ("%d|%s|%d %d|%d", ["a", 5, 1], "%!d(string=a)|%!s(int=5)|1 %!d(MISSING)|%!d(MISSING)"),
        ("%d", [1, 2], "1%!(EXTRA int=2)"),
        ("%v %v %v %v", [1.0, 1e6, 123456789.0, 1e21], "1 1e+06 1.23456789e+08 1e+21"),
        (
            "%08.3f|%+d|% d|%x|%#x|%#o|%10.3s|%-10q|",
            [3.14159, 5, 7, -255, 255, 8, "abcdef", "z"],
            '0003.142|+5| 7|-ff|0xff|010|       abc|"z"       |',
        ),
        ("%v|%s|%q", [["a", "b"], ["a", "b"], ["a", "b"]], '[a b]|[a b]|["a" "b"]'),
        (
            "%T %T %T %T %T",
            [1, 1.5, "s", {"a": "b"}, ["x"]],
            "int float64 string map[string]string []string",
        ),
        (
            "%6.2v|%-6v|%06d|%x|% x|%X",
            [3.14159, "ab", -42, "héllo", "ab", ["ab", "c"]],
            "   3.1|ab    |-00042|68c3a96c6c6f|61 62|[6162 63]",
        ),
        (
            "%5t|%-5t|%q|%c|%q",
            [True, False, 65, 0x1F600, "é\x00"],
            " true|false|'A'|\U0001f600|\"é\\x00\"",
        ),
        (
            "%+q|%#q|%#v|%#v|%+v",
            ["é", "ab", "s", ["a", "b"], {"a": "b"}],
            '"\\u00e9"|`ab`|"s"|[]string{"a", "b"}|map[a:b]',
        ),
        (
            "%.2s|%.0f|%.1e|%G|%E|%8.3g",
            ["héllo", 2.5, 12345.678, 1e-10, 1e20, 3.14159],
            "hé|2|1.2e+04|1E-10|1.000000E+20|    3.14",
        ),
        ("%!|%z|%", [1], "%!!(int=1)|%!z(MISSING)|%!(NOVERB)"),
        ("%[2]d %[1]d", [1, 2], "2 1"),
        ("%*d|%-*d|%.*f", [5, 1, 4, 2, 2, 3.14159], "    1|2   |3.14"),
        (
            "%x|%X|%e|%g|%g|%v|%.3g",
            [3.5, -1.25, 0.0, 100000.0, 1000000.0, 0.000012345, 0.0001234],
            "0x1.cp+01|-0X1.4P+00|0.000000e+00|100000|1e+06|1.2345e-05|0.000123",
        ),
        (
            "%-8.3f|%+.2e|%08.2f|% .1f|%+v",
            [-3.14159, 12345.678, -2.5, 2.0, 1.5],
            "-3.142  |+1.23e+04|-0002.50| 2.0|1.5",
        ),
        (
            "%c|%c|%U|%#U|%q",
            [0x4E16, -1, 0x1F600, 0x4E16, 0x7F],
            "世|\ufffd|U+1F600|U+4E16 '世'|'\\x7f'",
        ),
        ("%#x|%#o|%#b|%O|%x|% X", [255, 8, 5, 8, "é", "abc"], "0xff|010|0b101|0o10|c3a9|61 62 63"),
        (
            "%5s|%-5s|%.1s|%05d|%-05d|%05s",
            ["ab", "ab", "xyz", 42, 42, "ab"],
            "   ab|ab   |x|00042|42   |000ab",
        ),
        ("%t|%v|%s", [True, None, None], "true|<nil>|%!s(<nil>)"),
        ("%d|%v|%s", [["a"], {"a": "b"}, 0], "[%!d(string=a)]|map[a:b]|%!s(int=0)"),
        ("%v %d", [[], 0], "[] 0"),
        ("%6.2v|%.0v|%10v|%-10v|", [3.14159, 2.5, "x", True], "   3.1|2|         x|true      |"),
        (
            "%[1]d %[1]x %[1]o|%[3]d|%[0]d|%[x]d",
            [64],
            "64 40 100|%!d(BADINDEX)|%!d(BADINDEX)|%!d(BADINDEX)",
        ),
        ("%*d|%*d", [-5, 1, "x", 2], "1    |%!(BADWIDTH)2"),
        ("%.*d|%.-1d", [-1, 5, 3], "%!(BADPREC)5|%!-(int=3)1d"),
        ("%5.1f%%", [99.44], " 99.4%"),
        ("%+v|%v", [Struct({"A": 1, "B": "x"}), Struct({"A": 1})], "{A:1 B:x}|{1}"),
        ("%v|%d", [float("inf"), True], "+Inf|%!d(bool=true)"),
    ],
)
def test_printf_matches_go(fmt: str, args: list[object], expected: str) -> None:
    assert sprintf(fmt, args) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, "1.5"),
        (1e100, "1e+100"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (100000000.0, "1e+08"),
        (1234567.0, "1.234567e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (12345678.9, "1.23456789e+07"),
        (float("nan"), "NaN"),
    ],
)
def test_floats_print_in_go_shortest_form(value: float, expected: str) -> None:
    assert format_value(value) == expected
    assert format_float(value) == expected


def test_sprint_spacing_and_quote() -> None:
    assert sprint(["a", 1, 2, "b", None]) == "a1 2b<nil>"
    assert quote("\u2028\x01\U0001f600 \u00a0") == '"\\u2028\\x01\U0001f600 \\u00a0"'


def test_json_encoding_like_go() -> None:
    @dataclass
    class Row:
        Name: str
        Tags: list[str]
        Empty: dict[str, str] = field(default_factory=dict)
        Skipped: str = field(default="", metadata={"omitempty": True})
        When: dt.datetime = dt.datetime(2020, 9, 13, 12, 26, 40, 123000, tzinfo=dt.UTC)

    value = [Row("<a&b>", []), {"k": 1.0, "n": None, "b": b"hi", "d": dt.timedelta(seconds=1)}]
    assert encode(value) == (
        '[{"Name":"\\u003ca\\u0026b\\u003e","Tags":[],"Empty":{},'
        '"When":"2020-09-13T12:26:40.123Z"},{"k":1,"n":null,"b":"aGk=","d":1000000000}]'
    )
    assert encode({"a": [1, {"b": {}}]}, indent="    ") == (
        '{\n    "a": [\n        1,\n        {\n            "b": {}\n        }\n    ]\n}'
    )
    assert encode(NO_VALUE) == "null"
