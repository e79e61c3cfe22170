"""The Containerfile parser (skiff.build.parser, skiff.build.instructions).

Behaviour follows BuildKit's Dockerfile frontend; where buildah 1.28.2 was
run to settle a question the test says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.build.instructions import (
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    Heredoc,
    InlineFile,
    Instruction,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    RunMount,
    ShellInstruction,
    StopSignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    expose_ports,
    heredoc_marker,
    parse_duration,
    parse_mount,
    parse_size,
)
from skiff.build.parser import Containerfile, parse_containerfile, parse_file, parse_instruction
from skiff.build.words import expand
from skiff.errors import BuildError


def parse(text: str) -> Containerfile:
    return parse_containerfile(text)


def only(text: str) -> Instruction:
    """The single instruction after ``FROM x``."""
    cf = parse("FROM x\n" + text)
    assert len(cf.stages) == 1
    (instruction,) = cf.stages[0].instructions
    return instruction


def error_of(text: str, path: str = "Containerfile") -> BuildError:
    with pytest.raises(BuildError) as info:
        parse_containerfile(text, path)
    return info.value


# --- file structure -----------------------------------------------------------


def test_stages_names_and_global_args() -> None:
    cf = parse(
        "ARG BASE=alpine\nARG V\nFROM $BASE AS Builder\nRUN make\n"
        "FROM scratch\nCOPY --from=builder /out /\n"
    )
    assert [a.items for a in cf.global_args] == [[("BASE", "alpine")], [("V", None)]]
    assert [(s.index, s.name) for s in cf.stages] == [(0, "builder"), (1, None)]
    assert cf.stages[0].from_.image == "$BASE"
    assert [i.keyword for i in cf.stages[0].instructions] == ["RUN"]
    assert cf.stage("BUILDER") is cf.stages[0]
    assert cf.stage(1) is cf.stages[1]
    assert cf.stage("1") is cf.stages[1]
    with pytest.raises(BuildError, match="no build stage 'nope'"):
        cf.stage("nope")


def test_keywords_are_case_insensitive() -> None:
    cf = parse("from x as A\nrun echo\nCoPy a b\n")
    assert cf.stages[0].name == "a"
    assert [i.keyword for i in cf.stages[0].instructions] == ["RUN", "COPY"]


def test_arg_inside_stage_is_an_instruction() -> None:
    cf = parse("FROM x\nARG A=1 B\n")
    (arg,) = cf.stages[0].instructions
    assert isinstance(arg, ArgInstruction)
    assert arg.items == [("A", "1"), ("B", None)]
    assert cf.global_args == []


def test_line_numbers_and_texts() -> None:
    text = "# c\n\nFROM x\nRUN a \\\n  # inner\n  b\n\nLABEL k=v\n"
    cf = parse(text)
    run, label = cf.stages[0].instructions
    assert (cf.stages[0].from_.line, cf.stages[0].from_.end_line) == (3, 3)
    assert (run.line, run.end_line) == (4, 6)
    assert run.original == "RUN a   b"
    assert run.source == "RUN a \\\n  # inner\n  b\n"
    assert (label.line, label.end_line) == (8, 8)
    assert run.location() == "Containerfile:4"


def test_comments_inside_continuations_are_dropped() -> None:
    # buildah: LABEL a=1 \ / # comment / b=2 \ / (blank) / c=3 gives a, b and c
    cf = parse("FROM x\nLABEL a=1 \\\n# comment\n    b=2 \\\n\n  c=3\n")
    (label,) = cf.stages[0].instructions
    assert isinstance(label, LabelInstruction)
    assert label.pairs == [("a", "1"), ("b", "2"), ("c", "3")]
    assert any("empty continuation line" in w for w in cf.warnings)


def test_indented_comment_lines() -> None:
    cf = parse("  # lead\nFROM x\n\t# tab\nRUN a \\\n\t  # deep\n b\n")
    (run,) = cf.stages[0].instructions
    assert isinstance(run, RunInstruction)
    assert run.command == "a  b"


def test_hash_inside_a_line_is_not_a_comment() -> None:
    run = only("RUN echo a # b\n")
    assert isinstance(run, RunInstruction)
    assert run.command == "echo a # b"


def test_continuation_with_trailing_blanks_and_crlf() -> None:
    cf = parse("FROM x\r\nRUN a \\  \r\n b\r\nUSER u\r\n")
    run, user = cf.stages[0].instructions
    assert isinstance(run, RunInstruction) and isinstance(user, UserInstruction)
    assert run.command == "a  b"
    assert user.user == "u"


def test_escaped_escape_ends_the_line() -> None:
    # BuildKit's rule; buildah 1.28 would continue here (docs/containerfile.md)
    cf = parse("FROM x\nLABEL a=x\\\\\nLABEL b=y\n")
    first, second = cf.stages[0].instructions
    assert isinstance(first, LabelInstruction) and isinstance(second, LabelInstruction)
    assert first.pairs == [("a", "x\\\\")]
    assert second.pairs == [("b", "y")]


def test_continuation_at_end_of_file() -> None:
    run = only("RUN a \\\n")
    assert isinstance(run, RunInstruction)
    assert run.command == "a"


def test_lone_escape_line_continues() -> None:
    run = only("RUN a \\\n\\\n b\n")
    assert isinstance(run, RunInstruction)
    assert run.command == "a  b"


def test_byte_order_mark_is_ignored() -> None:
    cf = parse("\ufeff# escape=`\nFROM x\nRUN a `\n b\n")
    assert cf.escape == "`"


def test_other_unicode_line_breaks_are_not_line_ends() -> None:
    run = only("RUN echo x\u2028y\x0bz\x1cw\n")
    assert isinstance(run, RunInstruction)
    assert run.command == "echo x\u2028y\x0bz\x1cw"


# --- directives --------------------------------------------------------------


def test_escape_directive_backtick() -> None:
    cf = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\nCOPY a\\ b c:\\dst\n")
    assert cf.escape == "`"
    assert cf.directives == {"escape": "`"}
    run, copy = cf.stages[0].instructions
    assert isinstance(run, RunInstruction) and isinstance(copy, CopyInstruction)
    assert run.command == "dir c:\\   && echo"
    assert copy.sources == ["a\\", "b"]
    assert copy.dest == "c:\\dst"


@pytest.mark.parametrize(
    "head",
    [
        "# syntax=docker/dockerfile:1\n# escape=`\n",
        "#escape = `  \n# syntax=foo\n",
        "  # ESCAPE=`\n",
        "# Escape=`\n# Syntax=x\n# check=skip=all\n",
    ],
)
def test_directives_at_the_top(head: str) -> None:
    cf = parse(head + "FROM x\nLABEL a=x`\n  b=1\n")
    assert cf.escape == "`"
    (label,) = cf.stages[0].instructions
    assert isinstance(label, LabelInstruction)
    assert label.pairs == [("a", "x"), ("b", "1")]


def test_syntax_directive_is_recorded() -> None:
    cf = parse("# syntax = docker/dockerfile:1.4 \nFROM x\n")
    assert cf.directives == {"syntax": "docker/dockerfile:1.4"}
    assert cf.escape == "\\"


@pytest.mark.parametrize(
    "head",
    [
        "# comment\n# escape=`\n",  # buildah: after a comment it is a comment
        "\n# escape=`\n",  # after an empty line
        "# unknown=1\n# escape=`\n",  # an unknown directive ends them too
        "FROM y\n# escape=`\n",
    ],
)
def test_directives_after_other_lines_are_comments(head: str) -> None:
    cf = parse(head + "FROM x\nLABEL a=x\\\n  b=1\n")
    assert cf.escape == "\\"
    assert "escape" not in cf.directives
    label = cf.stages[-1].instructions[0]
    assert isinstance(label, LabelInstruction)
    assert label.pairs == [("a", "x"), ("b", "1")]


def test_repeated_directive_is_an_error() -> None:
    err = error_of("# escape=`\n# escape=\\\nFROM x\n")
    assert err.message == "Containerfile:2: only one escape parser directive can be used"


def test_invalid_escape_value() -> None:
    err = error_of("# escape=^\nFROM x\n", "build/Dockerfile.dev")
    assert err.message.startswith("build/Dockerfile.dev:1: invalid escape character '^'")
    assert err.hint


# --- FROM ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "image", "alias", "platform"),
    [
        ("FROM scratch", "scratch", None, None),
        ("FROM busybox:1.36 AS base", "busybox:1.36", "base", None),
        ("FROM busybox as Base-1.x_y", "busybox", "base-1.x_y", None),
        ("FROM --platform=linux/arm64 img", "img", None, "linux/arm64"),
        (
            "FROM --platform=$BUILDPLATFORM ${IMG}:${TAG} AS b",
            "${IMG}:${TAG}",
            "b",
            "$BUILDPLATFORM",
        ),
        ("FROM   img@sha256:abc   ", "img@sha256:abc", None, None),
    ],
)
def test_from(line: str, image: str, alias: str | None, platform: str | None) -> None:
    cf = parse(line + "\n")
    from_ = cf.stages[0].from_
    assert isinstance(from_, FromInstruction)
    assert (from_.image, from_.alias, from_.platform) == (image, alias, platform)
    assert cf.stages[0].name == alias


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("FROM", "FROM requires either one or three arguments"),
        ("FROM a b", "FROM requires either one or three arguments"),
        ("FROM a AS", "FROM requires either one or three arguments"),
        ("FROM a AS b c", "FROM requires either one or three arguments"),
        ("FROM a FOR b", "FROM requires either one or three arguments"),
        ("FROM a AS 1bad", "invalid name for build stage: '1bad'"),
        ("FROM a AS $NAME", "invalid name for build stage"),
        ("FROM --platform a", "--platform needs a value"),
        ("FROM --pull=always a", "FROM does not take --pull"),
    ],
)
def test_from_errors(line: str, fragment: str) -> None:
    err = error_of(line + "\n")
    assert err.message.startswith("Containerfile:1: ")
    assert fragment in err.message
    assert err.hint


def test_duplicate_stage_names() -> None:
    err = error_of("FROM a AS x\nFROM b AS X\n")
    assert err.message == "Containerfile:2: duplicate stage name 'x'"


def test_instruction_before_from() -> None:
    err = error_of("ARG A\n# c\nLABEL a=b\nFROM x\n")
    assert err.message == "Containerfile:3: LABEL before the first FROM"
    assert "only ARG" in (err.hint or "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Containerfile:1: file with no instructions"),
        ("# only\n\n# comments\n", "Containerfile:3: file with no instructions"),
        ("ARG A\nARG B\n", "Containerfile:2: no FROM instruction"),
    ],
)
def test_no_from(text: str, message: str) -> None:
    assert error_of(text).message == message


def test_unknown_instruction() -> None:
    err = error_of("FROM x\nRUN a\n  \nFOO bar\n", "ctx/Containerfile")
    assert err.message == "ctx/Containerfile:4: unknown instruction: FOO"
    assert "RUN" in (err.hint or "")


def test_unknown_instruction_in_continued_line_cites_its_first_line() -> None:
    err = error_of("FROM x\nECHO a \\\n b\n")
    assert err.message == "Containerfile:2: unknown instruction: ECHO"


# --- RUN -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command", "shell_form"),
    [
        ("RUN echo hi", "echo hi", True),
        ('RUN ["echo", "hi"]', ["echo", "hi"], False),
        ('RUN   [ "a b" , "c" ]  ', ["a b", "c"], False),
        ('RUN ["a\\"b", "\\u00e9"]', ['a"b', "é"], False),
        ("RUN [ -f /x ] && echo yes", "[ -f /x ] && echo yes", True),
        ('RUN [ "$A" = "b" ]', '[ "$A" = "b" ]', True),
        ('RUN ["a" "b"]', '["a" "b"]', True),  # buildah: invalid JSON runs as shell
        ("RUN ['a']", "['a']", True),
        ('RUN ["a"] && b', '["a"] && b', True),
        ("RUN echo $HOME ${X:-y}", "echo $HOME ${X:-y}", True),  # never expanded here
    ],
)
def test_run_forms(line: str, command: list[str] | str, shell_form: bool) -> None:
    run = only(line + "\n")
    assert isinstance(run, RunInstruction)
    assert run.command == command
    assert run.shell_form is shell_form
    assert run.mounts == [] and run.heredocs == []


def test_run_invalid_json_warns() -> None:
    cf = parse('FROM x\nCMD ["a" "b"]\n')
    assert any("not valid JSON" in w and w.startswith("Containerfile:2:") for w in cf.warnings)
    cf = parse("FROM x\nRUN [ -f /x ]\n")
    assert cf.warnings == []


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("RUN", "RUN requires an argument"),
        ("RUN []", "RUN [] has no command"),
        ('RUN ["a", 1]', "arrays must be comprised of strings only"),  # buildah says so too
        ('RUN ["a", null]', "strings only"),
        ('RUN [["a"]]', "strings only"),
        ("RUN --foo=bar x", "RUN does not take --foo"),
        ("RUN --network=bridge x", "--network=bridge: unknown network mode"),
        ("RUN --security=x y", "--security=x: unknown mode"),
        ("RUN --network x", "--network needs a value"),
        ("RUN --network=none --network=host x", "--network given twice"),
        ("RUN --mount x", "--mount needs a value"),
        ("RUN --mount=type=nfs,target=/x y", "unsupported mount type 'nfs'"),
    ],
)
def test_run_errors(line: str, fragment: str) -> None:
    err = error_of("FROM x\n" + line + "\n")
    assert err.message.startswith("Containerfile:2: ")
    assert fragment in err.message
    assert err.hint


def test_run_flags() -> None:
    run = only(
        "RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked "
        "--mount=type=bind,source=.,target=/src,rw --network=none --security=insecure make\n"
    )
    assert isinstance(run, RunInstruction)
    assert run.command == "make"
    assert run.network == "none"
    assert run.security == "insecure"
    assert run.flags == {
        "mount": "type=bind,source=.,target=/src,rw",
        "network": "none",
        "security": "insecure",
    }
    cache, bind = run.mounts
    assert (cache.type, cache.target, cache.id, cache.sharing, cache.readonly) == (
        "cache",
        "/root/.cache",
        "pip",
        "locked",
        False,
    )
    assert (bind.type, bind.source, bind.target, bind.readonly) == ("bind", ".", "/src", False)


def test_flags_end_at_double_dash_and_accept_quotes() -> None:
    run = only('RUN --network="none" -- --not-a-flag\n')
    assert isinstance(run, RunInstruction)
    assert run.network == "none"
    assert run.command == "--not-a-flag"


def test_flags_only_before_arguments() -> None:
    run = only("RUN echo --network=host\n")
    assert isinstance(run, RunInstruction)
    assert run.network is None
    assert run.command == "echo --network=host"


# --- RUN --mount ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("target=/x", {"type": "bind", "target": "/x", "readonly": True}),
        ("type=bind,src=a,dst=/x", {"source": "a", "target": "/x", "readonly": True}),
        ("type=bind,source=a,destination=/x,ro=false", {"readonly": False}),
        ("type=bind,target=/x,readwrite", {"readonly": False}),
        ("type=bind,target=/x,rw=true", {"readonly": False}),
        ("type=bind,target=/x,from=builder", {"from_": "builder"}),
        ("type=cache,target=/c", {"type": "cache", "readonly": False, "sharing": None}),
        ("type=cache,target=/c,ro", {"readonly": True}),
        ("type=cache,target=/c,readonly=true", {"readonly": True}),
        (
            "type=cache,target=/c,id=x,sharing=PRIVATE,mode=0700,uid=1000,gid=100",
            {"id": "x", "sharing": "private", "mode": 0o700, "uid": 1000, "gid": 100},
        ),
        ("type=tmpfs,target=/t,size=64m", {"type": "tmpfs", "size": 64 << 20, "readonly": False}),
        ("type=tmpfs,target=/t,tmpfs-size=1g,tmpfs-mode=1777", {"size": 1 << 30, "mode": 0o1777}),
        ("type=secret,id=tok", {"type": "secret", "id": "tok", "readonly": True}),
        ("type=secret,id=tok,required,env=TOKEN", {"required": True, "env": "TOKEN"}),
        ("type=secret,target=/run/s,required=false", {"required": False}),
        ("type=ssh", {"type": "ssh"}),
        ("TYPE=Cache,Target=/c", {"type": "cache", "target": "/c"}),
        ('"type=bind","target=/a,b"', {"target": "/a,b"}),  # CSV quoting
        ('type=bind,"target=/a""b"', {"target": '/a"b'}),
        ("type=bind,target=/x,z,relabel=shared", {"options": ("z", "relabel=shared")}),
        (
            "type=bind,target=/x,bind-propagation=rshared,Z",
            {"options": ("bind-propagation=rshared", "Z")},
        ),
        (
            "type=bind,target=/x,U=true,notmpcopyup",
            {"options": ("U=true", "notmpcopyup")},
        ),
    ],
)
def test_parse_mount(spec: str, expected: dict[str, object]) -> None:
    mount = parse_mount(spec)
    assert mount.spec == spec
    assert not mount.unexpanded
    for name, value in expected.items():
        assert getattr(mount, name) == value, name


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty"),
        ("type=bind", "needs target="),
        ("type=cache", "needs target="),
        ("type=volume,target=/x", "unsupported mount type 'volume'"),
        ("type=bind,target=/x,sharing=shared", "sharing= is only for cache"),
        ("type=cache,target=/x,sharing=maybe", "sharing=maybe"),
        ("type=cache,target=/x,mode=999", "not an octal mode"),
        ("type=cache,target=/x,uid=-1", "not a non-negative number"),
        ("type=cache,target=/x,gid=abc", "not a non-negative number"),
        ("type=bind,target=/x,uid=1", "uid= is not allowed for bind"),
        ("type=bind,target=/x,mode=755", "mode= is not allowed for bind"),
        ("type=bind,target=/x,size=1m", "size= is only for tmpfs"),
        ("type=tmpfs,target=/x,size=lots", "invalid size"),
        ("type=bind,target=/x,required", "required is only for secret and ssh"),
        ("type=bind,target=/x,ro=maybe", "not a boolean"),
        ("type=bind,target=/x,colour=red", "unknown key 'colour'"),
        ("type=bind,target=/x,bogus", "must be a KEY=VALUE pair"),
        ("type=bind,target=/x,", "'' must be a KEY=VALUE pair"),
        ("type=secret", "needs id=, source= or target="),
        ("type=secret,id=a,source=b", "either source= or id="),
        ("type=secret,id=a,from=b", "a secret mount has no from="),
        ("type=cache,target=/x,env=A", "env= is only for secret"),
        ('type="bind,target=/x', "not a comma-separated list"),
        ('type=b"ind,target=/x', "not a comma-separated list"),
        ('"type=bind"x,target=/x', "not a comma-separated list"),
    ],
)
def test_parse_mount_errors(spec: str, fragment: str) -> None:
    with pytest.raises(BuildError) as info:
        parse_mount(spec)
    assert fragment in info.value.message
    assert info.value.message.startswith(f"invalid --mount={spec}:")


def test_mount_values_with_variables_are_checked_after_expansion() -> None:
    # buildah 1.28 expands build variables in --mount (target=$T/x worked)
    run = only("RUN --mount=type=cache,target=$T/c,uid=$UID,mode=${M} make\n")
    assert isinstance(run, RunInstruction)
    (mount,) = run.mounts
    assert mount.unexpanded
    assert (mount.target, mount.uid, mount.mode) == ("$T/c", None, None)
    env = {"T": "/root", "UID": "1000", "M": "0750"}
    done = mount.expand(lambda word: expand(word, env))
    assert isinstance(done, RunMount)
    assert not done.unexpanded
    assert (done.target, done.uid, done.mode) == ("/root/c", 1000, 0o750)
    with pytest.raises(BuildError, match="uid=x is not a non-negative number"):
        mount.expand(lambda word: expand(word, {"T": "/", "UID": "x", "M": "1"}))


def test_mount_with_variable_type_is_deferred_whole() -> None:
    mount = parse_mount("type=$KIND,target=/x")
    assert mount.unexpanded
    assert mount.expand(lambda w: w.replace("$KIND", "tmpfs")).type == "tmpfs"


def test_mount_error_in_containerfile_has_location() -> None:
    err = error_of("FROM x\n\nRUN --mount=type=cache echo\n")
    assert err.message == "Containerfile:3: invalid --mount=type=cache: a cache mount needs target="


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("64k", 64 << 10),
        ("64K", 64 << 10),
        ("512m", 512 << 20),
        ("1.5g", 3 << 29),
        ("2GiB", 2 << 30),
        ("3kb", 3072),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


# --- heredocs --------------------------------------------------------------------


def test_run_heredoc_alone() -> None:
    cf = parse("FROM x\nRUN <<EOF\necho a\n  echo $HOME\n\n# not a comment\nEOF\nUSER u\n")
    run, user = cf.stages[0].instructions
    assert isinstance(run, RunInstruction)
    assert run.command == "<<EOF"
    assert run.heredocs == [
        Heredoc(
            name="EOF",
            content="echo a\n  echo $HOME\n\n# not a comment\n",
            chomp=False,
            expand=True,
        )
    ]
    assert (run.line, run.end_line) == (2, 7)
    assert run.source.endswith("EOF\n")
    assert run.shell_script() == (
        "/dev/pipes/EOF",
        [
            InlineFile(
                path="/dev/pipes/EOF", data="echo a\n  echo $HOME\n\n# not a comment\n", mode=0o755
            )
        ],
    )
    assert user.line == 8


def test_run_heredoc_with_command_and_chomp() -> None:
    run = only("RUN python3 <<-EOF > /out\n\tprint(1)\n\t\tprint(2)\n\tEOF\n")
    assert isinstance(run, RunInstruction)
    (doc,) = run.heredocs
    assert doc.chomp
    assert doc.content == "\tprint(1)\n\t\tprint(2)\n"
    assert doc.body() == "print(1)\nprint(2)\n"
    # the shell gets the heredoc as written and strips the tabs itself
    assert run.shell_script() == ("python3 <<-EOF > /out\n\tprint(1)\n\t\tprint(2)\nEOF", [])


def test_run_lone_chomped_heredoc_strips_tabs_in_the_file() -> None:
    run = only("RUN <<-EOT\n\t#!/bin/sh\n\techo\n\t\tEOT\n")
    assert isinstance(run, RunInstruction)
    assert run.shell_script()[1][0].data == "#!/bin/sh\necho\n"


def test_several_heredocs_on_one_line() -> None:
    run = only("RUN cat <<A <<'B' > /f\n$x\nA\n$y\nB\n")
    assert isinstance(run, RunInstruction)
    assert [(d.name, d.content, d.expand) for d in run.heredocs] == [
        ("A", "$x\n", True),
        ("B", "$y\n", False),
    ]
    assert run.shell_script() == ("cat <<A <<'B' > /f\n$x\nA\n$y\nB", [])


@pytest.mark.parametrize(
    ("word", "name", "chomp", "expand_", "fd"),
    [
        ("<<EOF", "EOF", False, True, 0),
        ("<<-EOF", "EOF", True, True, 0),
        ('<<"EOF"', "EOF", False, False, 0),
        ("<<'EOF'", "EOF", False, False, 0),
        ('<<E"O"F', "EOF", False, False, 0),
        ("<<-'END'", "END", True, False, 0),
        ("3<<EOF", "EOF", False, True, 3),
        ("<<file.txt", "file.txt", False, True, 0),
    ],
)
def test_heredoc_markers(word: str, name: str, chomp: bool, expand_: bool, fd: int) -> None:
    marker = heredoc_marker(word)
    assert marker is not None
    assert (marker.name, marker.chomp, marker.expand, marker.fd) == (name, chomp, expand_, fd)


@pytest.mark.parametrize(
    "word", ["<<", "<<-", "<<<EOF", "a<<EOF", "<<EOF<<X", "'<<EOF'", "<<'A B'x y"]
)
def test_not_heredoc_markers(word: str) -> None:
    assert heredoc_marker(word) is None


def test_quoted_marker_is_not_a_heredoc() -> None:
    run = only('RUN echo "<<EOF"\n')
    assert isinstance(run, RunInstruction)
    assert run.heredocs == []


def test_heredoc_terminator_must_be_exact() -> None:
    run = only("RUN <<EOF\n EOF\nEOF \n\tEOF\nEOF\n")
    assert isinstance(run, RunInstruction)
    assert run.heredocs[0].content == " EOF\nEOF \n\tEOF\n"


def test_empty_heredoc_and_crlf() -> None:
    run = only("RUN <<EOF\r\nEOF\r\n")
    assert isinstance(run, RunInstruction)
    assert run.heredocs[0].content == ""


def test_heredoc_after_continuation_lines() -> None:
    cf = parse("FROM x\nRUN --network=none \\\n  cat <<EOF\nbody\nEOF\nUSER u\n")
    run, _ = cf.stages[0].instructions
    assert isinstance(run, RunInstruction)
    assert run.command == "cat <<EOF"
    assert run.heredocs[0].content == "body\n"
    assert (run.line, run.end_line) == (2, 5)


def test_unterminated_heredoc() -> None:
    err = error_of("FROM x\nRUN <<EOF\necho\n")
    assert err.message.startswith("Containerfile:2: unterminated heredoc")
    assert "EOF" in (err.hint or "")


def test_heredocs_only_in_run_copy_add_shell_forms() -> None:
    cf = parse('FROM x\nRUN ["cat", "<<EOF"]\nLABEL a=<<EOF\nUSER u\n')
    run, label, user = cf.stages[0].instructions
    assert isinstance(run, RunInstruction) and run.heredocs == []
    assert isinstance(label, LabelInstruction) and label.pairs == [("a", "<<EOF")]
    assert isinstance(user, UserInstruction)


def test_copy_heredocs() -> None:
    copy = only(
        'COPY --chmod=755 <<a.sh <<"b.txt" local.txt /dst/\n#!/bin/sh\n$X\na.sh\n$Y\nb.txt\n'
    )
    assert isinstance(copy, CopyInstruction)
    assert copy.sources == ["local.txt"]
    assert copy.dest == "/dst/"
    assert copy.chmod == "755"
    assert [(d.name, d.body(), d.expand) for d in copy.heredocs] == [
        ("a.sh", "#!/bin/sh\n$X\n", True),
        ("b.txt", "$Y\n", False),
    ]


def test_add_heredoc_chomp() -> None:
    add = only("ADD <<-EOF /f\n\tx\n\t\ty\nEOF\n")
    assert isinstance(add, CopyInstruction) and add.is_add
    assert add.heredocs[0].body() == "x\ny\n"


def test_copy_heredoc_destination_is_an_error() -> None:
    err = error_of("FROM x\nCOPY a <<EOF\nx\nEOF\n")
    assert err.message == "Containerfile:2: COPY cannot take a heredoc as its destination"


# --- CMD, ENTRYPOINT, SHELL ----------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["CMD", "ENTRYPOINT"])
@pytest.mark.parametrize(
    ("args", "value", "shell_form"),
    [
        ('["/bin/app", "-v"]', ["/bin/app", "-v"], False),
        ("[]", [], False),
        ("/bin/app -v", "/bin/app -v", True),
        ('["a" "b"]', '["a" "b"]', True),  # buildah: CMD ["/bin/sh", "-c", "[\"a\" \"b\"]"]
        ("echo $HOME", "echo $HOME", True),
    ],
)
def test_cmd_entrypoint(keyword: str, args: str, value: list[str] | str, shell_form: bool) -> None:
    instruction = only(f"{keyword} {args}\n")
    cls = CmdInstruction if keyword == "CMD" else EntrypointInstruction
    assert isinstance(instruction, cls)
    assert instruction.args == value
    assert instruction.shell_form is shell_form


@pytest.mark.parametrize("keyword", ["CMD", "ENTRYPOINT"])
def test_cmd_entrypoint_need_arguments(keyword: str) -> None:
    err = error_of(f"FROM x\n{keyword}\n")
    assert err.message == f"Containerfile:2: {keyword} requires an argument"
    assert f"{keyword} []" in (err.hint or "")


def test_shell() -> None:
    shell = only('SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n')
    assert isinstance(shell, ShellInstruction)
    assert shell.args == ["/bin/bash", "-o", "pipefail", "-c"]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),  # buildah too
        ("SHELL []", "SHELL requires at least one argument"),
        ("SHELL", "SHELL requires an argument"),
        ('SHELL ["a", 2]', "strings only"),
    ],
)
def test_shell_errors(line: str, fragment: str) -> None:
    assert fragment in error_of(f"FROM x\n{line}\n").message


# --- COPY / ADD ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "sources", "dest"),
    [
        ("COPY a /b", ["a"], "/b"),
        ("COPY a b c /d/", ["a", "b", "c"], "/d/"),
        ('COPY ["a b", "c", "/d e/"]', ["a b", "c"], "/d e/"),
        ("COPY $SRC ${DST}", ["$SRC"], "${DST}"),
        ('COPY "a b" /c', ['"a', 'b"'], "/c"),  # quotes do not group here: use JSON
        ("COPY\ta\t\t/b", ["a"], "/b"),
    ],
)
def test_copy_arguments(line: str, sources: list[str], dest: str) -> None:
    copy = only(line + "\n")
    assert isinstance(copy, CopyInstruction)
    assert not copy.is_add and copy.keyword == "COPY"
    assert (copy.sources, copy.dest) == (sources, dest)
    assert copy.json_form is line.startswith("COPY [")


def test_copy_flags() -> None:
    copy = only(
        "COPY --from=build --chown=1000:1000 --chmod=0640 --link --parents "
        "--exclude=*.tmp --exclude=.git a /b\n"
    )
    assert isinstance(copy, CopyInstruction)
    assert (copy.from_, copy.chown, copy.chmod, copy.link, copy.parents) == (
        "build",
        "1000:1000",
        "0640",
        True,
        True,
    )
    assert copy.excludes == ["*.tmp", ".git"]
    assert copy.flags["link"] == "true"


def test_copy_bool_flag_values() -> None:
    copy = only("COPY --link=false a b\n")
    assert isinstance(copy, CopyInstruction)
    assert copy.link is False
    assert "expected true or false" in error_of("FROM x\nCOPY --link=yes a b\n").message


def test_add_flags() -> None:
    add = only("ADD --checksum=sha256:abc --keep-git-dir=true --chown=u https://x/y.tgz /z\n")
    assert isinstance(add, CopyInstruction)
    assert add.is_add and add.keyword == "ADD"
    assert (add.checksum, add.keep_git_dir, add.chown) == ("sha256:abc", True, "u")
    assert add.sources == ["https://x/y.tgz"]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("COPY a", "COPY requires at least two arguments"),
        ("COPY", "COPY requires at least two arguments"),
        ('COPY ["a"]', "COPY requires at least two arguments"),
        ("ADD --from=x a b", "ADD does not take --from"),
        ("COPY --checksum=x a b", "COPY does not take --checksum"),
        ("COPY --keep-git-dir a b", "COPY does not take --keep-git-dir"),
        ("COPY --chown a b", "--chown needs a value"),
        ("COPY --from=a --from=b x y", "--from given twice"),
    ],
)
def test_copy_errors(line: str, fragment: str) -> None:
    err = error_of(f"FROM x\n{line}\n")
    assert err.message.startswith("Containerfile:2: ")
    assert fragment in err.message


# --- ENV, LABEL, ARG -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "pairs", "legacy"),
    [
        ("a=b", [("a", "b")], False),
        ("a=1 b=2", [("a", "1"), ("b", "2")], False),
        ("a=\"x y\" b='z w'", [("a", '"x y"'), ("b", "'z w'")], False),
        ("a=x\\ y", [("a", "x\\ y")], False),
        ('a="" b=', [("a", '""'), ("b", "")], False),
        ("a==b", [("a", "=b")], False),
        ("a=$B c=${D:-e f}", [("a", "$B"), ("c", "${D:-e")], None),  # ${} does not group
        ('"quoted key"=v', [('"quoted key"', "v")], False),
        ("a b  c", [("a", "b  c")], True),  # legacy: the rest of the line
        ('a b  "c" d', [("a", 'b  "c" d')], True),  # buildah: value b  c d after expansion
    ],
)
def test_env(args: str, pairs: list[tuple[str, str]], legacy: bool | None) -> None:
    if legacy is None:
        assert "can't find =" not in args
        with pytest.raises(BuildError, match="cannot find = in 'f}'"):
            parse(f"FROM x\nENV {args}\n")
        return
    cf = parse(f"FROM x\nENV {args}\nLABEL {args}\n")
    env, label = cf.stages[0].instructions
    assert isinstance(env, EnvInstruction) and isinstance(label, LabelInstruction)
    assert env.pairs == pairs and label.pairs == pairs
    assert env.legacy_form is legacy and label.legacy_form is legacy
    assert any("legacy" in w for w in cf.warnings) is legacy


def test_env_value_expansion_matches_buildah() -> None:
    env = only('ENV a b  "c" d\n')
    assert isinstance(env, EnvInstruction)
    assert expand(env.pairs[0][1], {}) == "b  c d"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ENV", "ENV requires at least one argument"),
        ("ENV a", "ENV a has no value"),
        ("ENV a=1 b", "ENV: cannot find = in 'b'"),
        ("ENV =x", "ENV names can not be blank"),
        ("LABEL", "LABEL requires at least one argument"),
        ("LABEL x=1 =2", "LABEL names can not be blank"),
        ("ARG", "ARG requires at least one argument"),
        ("ARG =x", "ARG names can not be blank"),
    ],
)
def test_name_value_errors(line: str, fragment: str) -> None:
    err = error_of(f"FROM x\n{line}\n")
    assert err.message.startswith("Containerfile:2: ")
    assert fragment in err.message


@pytest.mark.parametrize(
    ("args", "items"),
    [
        ("A", [("A", None)]),
        ("A=1", [("A", "1")]),
        ("A= B=", [("A", ""), ("B", "")]),
        ('A="x y" B C=$A', [("A", '"x y"'), ("B", None), ("C", "$A")]),
    ],
)
def test_arg(args: str, items: list[tuple[str, str | None]]) -> None:
    arg = only(f"ARG {args}\n")
    assert isinstance(arg, ArgInstruction)
    assert arg.items == items


def test_words_with_backtick_escape() -> None:
    cf = parse('# escape=`\nFROM x\nLABEL a="x`"y" b=c`\n  d=e\n')
    (label,) = cf.stages[0].instructions
    assert isinstance(label, LabelInstruction)
    assert label.pairs == [("a", '"x`"y"'), ("b", "c"), ("d", "e")]
    assert expand(label.pairs[0][1], {}, escape=cf.escape) == 'x"y'


# --- the rest -----------------------------------------------------------------------------------


def test_expose() -> None:
    expose = only("EXPOSE 80 443/tcp  $PORT 8000-8010/udp\n")
    assert isinstance(expose, ExposeInstruction)
    assert expose.ports == ["80", "443/tcp", "$PORT", "8000-8010/udp"]
    assert "EXPOSE requires an argument" in error_of("FROM x\nEXPOSE\n").message


@pytest.mark.parametrize(
    ("words", "ports"),
    [
        (["80"], ["80/tcp"]),
        (["80/TCP", "53/udp", "9/sctp", "80/tcp"], ["80/tcp", "53/udp", "9/sctp"]),
        (["8000-8002/udp"], ["8000/udp", "8001/udp", "8002/udp"]),
        (["80/"], ["80/tcp"]),
    ],
)
def test_expose_ports(words: list[str], ports: list[str]) -> None:
    assert expose_ports(words) == ports


@pytest.mark.parametrize("word", ["abc", "80/foo", "70000", "9-8", "-1", "80/tcp/x", ""])
def test_expose_ports_errors(word: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        expose_ports([word])


@pytest.mark.parametrize(
    ("line", "cls", "attr", "value"),
    [
        ("USER app:staff", UserInstruction, "user", "app:staff"),
        ("USER $U", UserInstruction, "user", "$U"),
        ("WORKDIR /a b", WorkdirInstruction, "path", "/a b"),
        ("WORKDIR ${HOME}/src", WorkdirInstruction, "path", "${HOME}/src"),
        ("STOPSIGNAL SIGTERM", StopSignalInstruction, "signal", "SIGTERM"),
        ("MAINTAINER Jane <j@x>", MaintainerInstruction, "maintainer", "Jane <j@x>"),
        ("VOLUME /a /b", VolumeInstruction, "paths", ["/a", "/b"]),
        ('VOLUME ["/a b", "/c"]', VolumeInstruction, "paths", ["/a b", "/c"]),
        ("VOLUME $V", VolumeInstruction, "paths", ["$V"]),
    ],
)
def test_simple_instructions(line: str, cls: type[Instruction], attr: str, value: object) -> None:
    instruction = only(line + "\n")
    assert isinstance(instruction, cls)
    assert getattr(instruction, attr) == value


def test_maintainer_warns() -> None:
    cf = parse("FROM x\nMAINTAINER me\n")
    assert any("MAINTAINER is deprecated" in w for w in cf.warnings)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("USER", "USER requires exactly one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ("VOLUME []", "VOLUME requires at least one argument"),
        ('VOLUME ["/a", " "]', "VOLUME specified can not be an empty string"),
        ("USER --chown=x u", "USER does not take --chown"),
        ("WORKDIR --x /a", "WORKDIR does not take --x"),
    ],
)
def test_simple_instruction_errors(line: str, fragment: str) -> None:
    err = error_of(f"FROM x\n{line}\n")
    assert err.message.startswith("Containerfile:2: ")
    assert fragment in err.message


# --- HEALTHCHECK -------------------------------------------------------------------------


def test_healthcheck_none() -> None:
    hc = only("HEALTHCHECK none\n")
    assert isinstance(hc, HealthcheckInstruction)
    assert hc.disabled and hc.test == ["NONE"]


def test_healthcheck_cmd_shell_and_exec() -> None:
    hc = only(
        "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms "
        "--start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1\n"
    )
    assert isinstance(hc, HealthcheckInstruction)
    assert not hc.disabled
    assert hc.test == ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    assert (hc.interval, hc.timeout, hc.start_period, hc.start_interval, hc.retries) == (
        30 * 10**9,
        90 * 10**9,
        500 * 10**6,
        2 * 10**9,
        3,
    )
    hc = only('HEALTHCHECK cmd ["/bin/check", "-q"]\n')
    assert isinstance(hc, HealthcheckInstruction)
    assert hc.test == ["CMD", "/bin/check", "-q"]
    assert (hc.interval, hc.retries) == (None, None)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK --interval=5s NONE", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CMD []", "missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK RUN x", "unknown type 'RUN' in HEALTHCHECK"),
        ("HEALTHCHECK --interval=5 CMD x", "--interval: invalid duration '5'"),
        ("HEALTHCHECK --timeout=10us CMD x", "--timeout=10us cannot be less than 1ms"),
        ("HEALTHCHECK --retries=x CMD y", "--retries=x is not a number"),
        ("HEALTHCHECK --retries=-1 CMD y", "--retries=-1 is out of range"),
        ("HEALTHCHECK --every=1s CMD y", "HEALTHCHECK does not take --every"),
    ],
)
def test_healthcheck_errors(line: str, fragment: str) -> None:
    err = error_of(f"FROM x\n{line}\n")
    assert err.message.startswith("Containerfile:2: ")
    assert fragment in err.message


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1s", 10**9),
        ("1.5h", 5400 * 10**9),
        ("1m30s", 90 * 10**9),
        ("300ms", 3 * 10**8),
        ("2us", 2000),
        ("2µs", 2000),
        ("10ns", 10),
        ("-1s", -(10**9)),
        (".5s", 5 * 10**8),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "5", "1d", "s", "1 s", "1s2", "--1s"])
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- ONBUILD -------------------------------------------------------------------------------------


def test_onbuild() -> None:
    onbuild = only("ONBUILD  RUN --mount=type=cache,target=/c make $X\n")
    assert isinstance(onbuild, OnbuildInstruction)
    assert onbuild.text == "RUN --mount=type=cache,target=/c make $X"
    assert isinstance(onbuild.inner, RunInstruction)
    assert onbuild.inner.command == "make $X"
    assert onbuild.inner.mounts[0].target == "/c"


def test_onbuild_heredoc_is_kept_in_the_trigger() -> None:
    cf = parse("FROM x\nONBUILD COPY <<EOF /f\nhello\nEOF\nUSER u\n")
    onbuild, user = cf.stages[0].instructions
    assert isinstance(onbuild, OnbuildInstruction)
    assert onbuild.text == "COPY <<EOF /f\nhello\nEOF"
    assert isinstance(onbuild.inner, CopyInstruction)
    assert onbuild.inner.heredocs[0].content == "hello\n"
    assert user.line == 5
    # the trigger text parses back to the same instruction
    replayed = parse_instruction(onbuild.text, path="base-image ONBUILD", line=1)
    assert isinstance(replayed, CopyInstruction)
    assert replayed.heredocs == onbuild.inner.heredocs
    assert replayed.dest == "/f"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ONBUILD ONBUILD RUN x", "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD FOO x", "unknown instruction: FOO"),
        ("ONBUILD COPY a", "COPY requires at least two arguments"),
        ("ONBUILD RUN --nope x", "RUN does not take --nope"),
    ],
)
def test_onbuild_errors(line: str, fragment: str) -> None:
    err = error_of(f"FROM x\n{line}\n")
    assert err.message.startswith("Containerfile:2: ")
    assert fragment in err.message


def test_parse_instruction_errors_cite_the_given_line() -> None:
    with pytest.raises(BuildError) as info:
        parse_instruction("COPY a", path="base ONBUILD", line=3)
    assert info.value.message.startswith("base ONBUILD:3: COPY requires at least two arguments")
    with pytest.raises(BuildError, match="expected one instruction, found 2"):
        parse_instruction("RUN a\nRUN b")
    run = parse_instruction("RUN a `\n b", escape="`")
    assert isinstance(run, RunInstruction)
    assert run.command == "a  b"


# --- files ------------------------------------------------------------------------------------


def test_parse_file(tmp_shm: Path) -> None:
    base = tmp_shm
    good = base / "Containerfile.x"
    good.write_text("FROM x\nUSER u\n")
    cf = parse_file(good)
    assert cf.path == str(good)
    bad = base / "bad"
    bad.write_text("FROM x\nNOPE\n")
    with pytest.raises(BuildError, match=f"^{bad}:2: unknown instruction: NOPE"):
        parse_file(bad)
    with pytest.raises(BuildError, match="cannot read Containerfile"):
        parse_file(base / "missing")
    binary = base / "bin"
    binary.write_bytes(b"FROM x\n\xff\n")
    with pytest.raises(BuildError, match="not UTF-8"):
        parse_file(binary)


def test_instructions_keep_filename() -> None:
    cf = parse_containerfile("FROM x\nRUN a\n", "sub/Dockerfile")
    run = cf.stages[0].instructions[0]
    assert run.filename == "sub/Dockerfile"
    err = run.error("something failed", "do this")
    assert err.message == "sub/Dockerfile:2: something failed"
    assert err.hint == "do this"


def test_a_realistic_file() -> None:
    text = """\
# syntax=docker/dockerfile:1.4
ARG PY=3.11

FROM python:${PY}-slim AS build
WORKDIR /src
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip \\
    pip install -r requirements.txt \\
 && rm -rf /tmp/*
COPY . .
RUN <<EOF
set -e
python -m compileall .
EOF

FROM python:${PY}-slim
LABEL org.opencontainers.image.title="demo app" \\
      org.opencontainers.image.version=1.0
ENV PYTHONUNBUFFERED=1 \\
    PATH=/app/bin:$PATH
COPY --from=build --chown=app:app /src /app
EXPOSE 8080
USER app
HEALTHCHECK --interval=10s CMD ["python", "-c", "print(1)"]
ENTRYPOINT ["python", "-m", "app"]
CMD ["--serve"]
"""
    cf = parse(text)
    assert cf.directives == {"syntax": "docker/dockerfile:1.4"}
    assert [s.name for s in cf.stages] == ["build", None]
    assert [i.keyword for i in cf.stages[0].instructions] == [
        "WORKDIR",
        "COPY",
        "RUN",
        "COPY",
        "RUN",
    ]
    assert [i.keyword for i in cf.stages[1].instructions] == [
        "LABEL",
        "ENV",
        "COPY",
        "EXPOSE",
        "USER",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
    ]
    label = cf.stages[1].instructions[0]
    assert isinstance(label, LabelInstruction)
    assert [(k, expand(v, {})) for k, v in label.pairs] == [
        ("org.opencontainers.image.title", "demo app"),
        ("org.opencontainers.image.version", "1.0"),
    ]
    run = cf.stages[0].instructions[4]
    assert (run.line, run.end_line) == (11, 14)
    assert cf.warnings == []
