"""skiff's Containerfile parser, expansion and ignore rules against buildah bud.

Each test builds a small Containerfile ``FROM scratch`` with buildah 1.28
(private vfs store on /dev/shm; no RUN, so no runtime is involved), reads
the image config or the copied files, and compares them with what
skiff.build computes for the same text. Only behaviour where skiff means to
agree with buildah is compared; the documented differences (backtick escape
in expansion, ``\\\\`` at a line end, wildcard exceptions in ignore files)
are pinned by the unit tests instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skiff.build.ignore import IgnoreMatcher
from skiff.build.instructions import CmdInstruction, EnvInstruction, LabelInstruction
from skiff.build.parser import parse_containerfile
from skiff.build.words import ExpansionError, expand
from skiff.testing import shm_tempdir

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah"),
]


@dataclass
class Buildah:
    root: Path
    contexts: int = 0

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [
            "buildah",
            "--root",
            str(self.root / "root"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {result.stderr}")
        return result

    def bud(
        self, containerfile: str, files: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        ctx = self.new_context()
        (ctx / "Containerfile").write_text(containerfile)
        for name, content in (files or {}).items():
            (ctx / name).parent.mkdir(parents=True, exist_ok=True)
            (ctx / name).write_text(content)
        return self.run(
            "bud",
            "-q",
            "--pull=never",
            "-t",
            "localhost/out:latest",
            "-f",
            str(ctx / "Containerfile"),
            str(ctx),
            check=False,
        )

    def config(self) -> dict[str, Any]:
        out = self.run("inspect", "--type", "image", "localhost/out:latest").stdout
        config: dict[str, Any] = json.loads(out)["OCIv1"]["config"]
        return config

    @contextmanager
    def mounted(self) -> Iterator[Path]:
        """The built image's root filesystem, through a working container."""
        ctr = self.run("from", "--pull=never", "localhost/out:latest").stdout.strip()
        try:
            yield Path(self.run("mount", ctr).stdout.strip())
        finally:
            self.run("rm", ctr, check=False)

    def new_context(self) -> Path:
        self.contexts += 1
        path = self.root / f"ctx{self.contexts}"
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def buildah() -> Iterator[Buildah]:
    with shm_tempdir("skiff-build-buildah-") as tmp:
        yield Buildah(tmp)


ENV_LINE = 'ENV A=abc E= 1=one SP=" 82  83 " Q="say \\"hi\\"" BS=\\\\ Z=1'

# Texts put after "ENV cN " (legacy form: the value is the rest of the line,
# expanded as one word), so whitespace and quotes reach the lexer unchanged.
EXPANSIONS = [
    "$A",
    "${A}b",
    "$Ab",
    "$A_b",
    "$A$A",
    "x${U}y",
    "$1",
    "$12",
    "${1}2",
    "a$",
    "$@",
    "$-",
    "$ A",
    "${}",
    "$é",
    "${A:-d}",
    "${U:-d}",
    "${E:-d}",
    "${A:+p}",
    "${U:+p}",
    "${E:+p}",
    "${A:-${E:-nest}}",
    "${U:-$A}",
    "${U:-a b}",
    "${U:-'x'}",
    '${U:-"q q"}',
    "${U:-'$A'}",
    "${U:-\\}}",
    "${U:-$}",
    "${A}}",
    "${U:-a}b}",
    '${A:-"x}"}',
    '${U:-"x}"}',
    "'$A'",
    "'a\\b'",
    '"$A"',
    '"${A} x"',
    '"\\$A"',
    '"a\\nb"',
    '"a\\"b"',
    '"a\\\\b"',
    '"a\\\\\\"b"',
    '"\\`"',
    'a"b c"d',
    '""',
    "''",
    '"$Q"',
    "$Q",
    "\\$A",
    "a\\nb",
    "a\\ b",
    "a\\\\b",
    "\\'$A\\'",
    "$SP",
    "a   b",
    "$BS",
]


def test_expansion_table(buildah: Buildah) -> None:
    lines = ["FROM scratch", ENV_LINE]
    lines += [f"ENV c{i} {text}" for i, text in enumerate(EXPANSIONS)]
    containerfile = "\n".join(lines) + "\n"
    result = buildah.bud(containerfile)
    assert result.returncode == 0, result.stderr
    theirs = dict(item.split("=", 1) for item in buildah.config()["Env"])

    cf = parse_containerfile(containerfile)
    env: dict[str, str] = {}
    for instruction in cf.stages[0].instructions:
        assert isinstance(instruction, EnvInstruction)
        for key, value in instruction.pairs:
            env[expand(key, env)] = expand(value, env)
    mismatches = {
        text: (env[f"c{i}"], theirs[f"c{i}"])
        for i, text in enumerate(EXPANSIONS)
        if env[f"c{i}"] != theirs[f"c{i}"]
    }
    assert mismatches == {}


@pytest.mark.parametrize(
    "text",
    ["${A-d}", "${U+d}", "${A:?msg}", "${A:=x}", "${A", "${A:-x", "${:}", '"abc', "'abc", "${A#a}"],
)
def test_expansion_errors(buildah: Buildah, text: str) -> None:
    containerfile = f"FROM scratch\nENV A=abc\nLABEL x={text}\n"
    assert buildah.bud(containerfile).returncode != 0
    label = parse_containerfile(containerfile).stages[0].instructions[1]
    assert isinstance(label, LabelInstruction)
    with pytest.raises(ExpansionError):
        expand(label.pairs[0][1], {"A": "abc"})


def test_parser_forms(buildah: Buildah) -> None:
    containerfile = (
        "# comment first: the next line is a comment, not a directive\n"
        "# escape=`\n"
        "from scratch\n"
        "LABEL a=1 \\\n"
        "# dropped\n"
        "    b=2 \\\n"
        "  c=\"x y\" d='$e' \\\n"
        "  f=a\\ b\n"
        'label "g h"=i\n'
        'CMD ["a" "b"]\n'
        "ENV legacy  spaced   out\n"
    )
    result = buildah.bud(containerfile)
    assert result.returncode == 0, result.stderr
    theirs = buildah.config()
    cf = parse_containerfile(containerfile)
    labels: dict[str, str] = {}
    cmd: list[str] = []
    env: dict[str, str] = {}
    for instruction in cf.stages[0].instructions:
        if isinstance(instruction, LabelInstruction):
            labels.update((expand(k, {}), expand(v, {})) for k, v in instruction.pairs)
        elif isinstance(instruction, CmdInstruction):
            assert instruction.shell_form
            assert isinstance(instruction.args, str)
            cmd = ["/bin/sh", "-c", instruction.args]
        elif isinstance(instruction, EnvInstruction):
            env.update((expand(k, {}), expand(v, {})) for k, v in instruction.pairs)
    theirs_labels = dict(theirs["Labels"])
    theirs_labels.pop("io.buildah.version")
    assert labels == theirs_labels
    assert cmd == theirs["Cmd"]
    assert f"legacy={env['legacy']}" in theirs["Env"]


@pytest.mark.parametrize(
    ("ignore", "files"),
    [
        (
            "**/*.go\n!a/b/g.go\nd\n!d/2\ne\n!e/keep\n/x/*.md\n# comment\n ./README.md \n",
            [
                "a/f.go",
                "a/b/g.go",
                "a/b/c/h.txt",
                "d/1",
                "d/2",
                "e/keep/k",
                "e/z",
                "top.go",
                "x/y.md",
                "README.md",
            ],
        ),
        (
            "*.md\n!README*.md\nREADME-secret.md\n*/temp*\ntemp?\n",
            [
                "README.md",
                "README-secret.md",
                "CHANGES.md",
                "s/temp.txt",
                "s/t/temp",
                "tempa",
                "temp",
            ],
        ),
        ("*\n!keep\n!src/\n", ["keep", "other", "src/a", "src/b/c"]),
        ("[a-c]*\n!b?\n", ["a1", "b1", "b12", "c", "d"]),
    ],
)
def test_ignore_files(buildah: Buildah, ignore: str, files: list[str]) -> None:
    contents = {name: name for name in files}
    contents[".containerignore"] = ignore
    result = buildah.bud("FROM scratch\nCOPY . /ctx\n", contents)
    assert result.returncode == 0, result.stderr
    with buildah.mounted() as root:
        theirs = sorted(str(p.relative_to(root / "ctx")) for p in (root / "ctx").rglob("*"))

    ctx = Path(result.args[-1])
    ours = list(IgnoreMatcher.for_context(ctx).walk(ctx))
    # buildah also creates the (excluded) parents of re-included paths
    with_parents = set(ours)
    for path in ours:
        parts = path.split("/")
        with_parents.update("/".join(parts[:i]) for i in range(1, len(parts)))
    assert sorted(with_parents) == theirs
