"""``skiff build`` / ``skiff bud`` / ``skiff image build`` as a user types them.

Each test has a private store with the busybox image (``ContainerEnv``);
RUN steps use ``--network none`` (the tests never touch the host's default
network), and the demo's web image is served through a port published on
127.0.0.1 from a network of the test's own.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import assert_clean_failure
from skiff.testing.containers import ContainerEnv, wait_for
from skiff.testing.network import fetch, free_port

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="building runs containers: needs root"),
]

REPO = Path(__file__).resolve().parents[2]
ID = re.compile(r"^[0-9a-f]{64}$")
CONTAINERFILE = """\
FROM localhost/busybox:latest AS gen
RUN echo generated > /gen.txt
FROM localhost/busybox:latest
ENV GREETING=hello
COPY hello.txt /hello.txt
COPY --from=gen /gen.txt /gen.txt
RUN echo "$GREETING from RUN"; echo "to stderr" >&2
CMD ["cat", "/hello.txt", "/gen.txt"]
"""


@pytest.fixture
def env(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[ContainerEnv]:
    environment = ContainerEnv(tmp_shm / "env", busybox_layout)
    try:
        yield environment
    finally:
        environment.skiff("builder", "rm", "--all", expect=None)
        environment.close()


def _context(env: ContainerEnv, text: str = CONTAINERFILE, name: str = "ctx") -> Path:
    ctx = env.base / name
    ctx.mkdir(exist_ok=True)
    (ctx / "Containerfile").write_text(text)
    (ctx / "hello.txt").write_text("hello from the context\n")
    return ctx


def test_output_as_buildah_prints_it(env: ContainerEnv) -> None:
    ctx = _context(env)
    first = env.skiff("build", "--network", "none", "-t", "built", ctx)
    lines = first.stdout.splitlines()
    image_id = lines[-1]
    assert ID.match(image_id)
    assert lines[0] == "[1/2] STEP 1/2: FROM localhost/busybox:latest AS gen"
    assert lines[1] == "[1/2] STEP 2/2: RUN echo generated > /gen.txt"
    assert re.fullmatch(r"--> [0-9a-f]{11}", lines[2])
    assert '[2/2] STEP 5/6: RUN echo "$GREETING from RUN"; echo "to stderr" >&2' in lines
    assert "hello from RUN" in lines
    assert "to stderr" in first.stderr
    assert lines[-4:-1] == [
        "[2/2] COMMIT built",
        f"--> {image_id[:11]}",
        "Successfully tagged localhost/built:latest",
    ]
    run = env.skiff("run", "--rm", "--network", "none", "built")
    assert run.stdout == "hello from the context\ngenerated\n"

    second = env.skiff("build", "--network", "none", "-t", "built", ctx)
    lines = second.stdout.splitlines()
    assert lines[-1] == image_id
    hits = [line for line in lines if line.startswith("--> Using cache ")]
    assert len(hits) == 6
    assert f"--> Using cache {image_id}" in lines
    assert "hello from RUN" not in lines  # nothing ran
    listing = env.skiff("images", "-a", "--format", "{{.ID}}").stdout.split()
    assert len(listing) == 7  # busybox and one image per committed step


def test_quiet_prints_only_the_id(env: ContainerEnv) -> None:
    ctx = _context(env)
    result = env.skiff("build", "-q", "--network", "none", ctx)
    assert ID.match(result.stdout.strip()) and len(result.stdout.splitlines()) == 1
    assert "to stderr" in result.stderr  # what RUN writes to stderr still shows


def test_bud_alias_image_build_and_stdin(env: ContainerEnv) -> None:
    ctx = _context(env)
    bud = env.skiff("bud", "-q", "--network", "none", ctx).stdout.strip()
    image = env.skiff("image", "build", "-q", "--network", "none", ctx).stdout.strip()
    assert bud == image
    text = "FROM localhost/busybox:latest\nLABEL from=stdin\n"
    piped = env.skiff("build", "-q", "-f", "-", ctx, input_text=text).stdout.strip()
    labels = env.skiff("image", "inspect", "--format", "{{.Labels}}", piped).stdout
    assert "stdin" in labels
    other = ctx / "Other.containerfile"
    other.write_text("FROM localhost/busybox:latest\nLABEL from=file\n")
    named = env.skiff("build", "-q", "-f", "Other.containerfile", ctx).stdout.strip()
    assert named != piped


def test_tags_iidfile_labels_and_build_args(env: ContainerEnv) -> None:
    ctx = _context(
        env,
        "ARG BASE\nFROM $BASE\nARG WHO\nARG FROM_FILE\nRUN echo $WHO $FROM_FILE > /who\n",
    )
    args_file = env.base / "args"
    args_file.write_text("# build arguments\nFROM_FILE=file\n\nBASE=localhost/busybox:latest\n")
    iidfile = env.base / "iid"
    result = env.skiff(
        "build",
        "--network",
        "none",
        "-t",
        "one",
        "-t",
        "localhost/two:v2",
        "--label",
        "k=v",
        "--build-arg-file",
        args_file,
        "--build-arg",
        "WHO",
        "--build-arg",
        "UNUSED=1",
        "--iidfile",
        iidfile,
        ctx,
        env={"WHO": "env"},
    )
    image_id = result.stdout.splitlines()[-1]
    assert iidfile.read_text() == f"sha256:{image_id}"
    assert "Successfully tagged localhost/one:latest" in result.stdout
    assert "Successfully tagged localhost/two:v2" in result.stdout
    assert "[Warning] one or more build args were not consumed: [UNUSED]" in result.stderr
    out = env.skiff("run", "--rm", "--network", "none", "localhost/two:v2", "cat", "/who")
    assert out.stdout == "env file\n"
    inspect = env.skiff("image", "inspect", "--format", "{{.Labels}}", "one").stdout
    assert "k:v" in inspect


def test_errors_are_one_line_with_the_location(env: ContainerEnv) -> None:
    cases = {
        "FROM localhost/busybox:latest\nFOO bar\n": (
            125,
            "Containerfile:2: unknown instruction: FOO",
        ),
        "LABEL a=b\n": (125, "Containerfile:1: LABEL before the first FROM"),
        "FROM localhost/busybox:latest\nCOPY ../x /x\n": (
            125,
            "Containerfile:2: ../x: the path climbs above the root",
        ),
        "FROM localhost/busybox:latest AS a\nCOPY --from=a /x /x\n": (
            125,
            "Containerfile:2: circular dependency between build stages: a -> a",
        ),
        "FROM localhost/busybox:latest\nRUN exit 42\n": (
            42,
            'Containerfile:2: building at STEP "RUN exit 42": while running runtime: exit status 42',
        ),
    }
    for number, (text, (code, expected)) in enumerate(cases.items()):
        ctx = _context(env, text, name=f"bad{number}")
        result = env.skiff("build", "--network", "none", ctx, expect=code)
        assert_clean_failure(result)
        assert f"{ctx}/{expected}" in result.stderr, result.stderr
    assert env.skiff("builder", "containers", "-q").stdout == ""
    missing = env.skiff("build", env.base / "nowhere", expect=125)
    assert_clean_failure(missing)
    assert "does not exist" in missing.stderr
    bad_pull = env.skiff("build", "--pull", "sometimes", _context(env), expect=125)
    assert "invalid pull policy" in bad_pull.stderr


def test_missing_build_argument_warns(env: ContainerEnv) -> None:
    ctx = _context(env, 'FROM localhost/busybox:latest\nARG NEEDED\nRUN echo "[$NEEDED]"\n')
    result = env.skiff("build", "--network", "none", ctx)
    assert (
        f'WARN[0000] {ctx}/Containerfile:2: missing "NEEDED" build argument. '
        'Try adding "--build-arg NEEDED=<VALUE>" to the command line'
    ) in result.stderr
    assert "[]" in result.stdout.splitlines()


def test_base_image_pulls_go_through_the_trust_policy(
    env: ContainerEnv, registry: Any, unique_repo: str
) -> None:
    image = f"{registry.host}/{unique_repo}:base"
    env.skiff("push", "-q", "--tls-verify=false", "localhost/busybox:latest", image)
    ctx = _context(env, f"FROM {image}\nRUN true\n")
    reject = env.base / "reject.json"
    reject.write_text('{"default": [{"type": "reject"}]}')
    refused = env.skiff("--policy", reject, "build", "--tls-verify=false", ctx, expect=125)
    last = refused.stderr.splitlines()[-1]  # after podman's "Trying to pull ..." line
    assert last.startswith(f"Error: {ctx}/Containerfile:1: ") and "rejected by policy" in last
    assert "Traceback" not in refused.stderr
    accept = env.base / "accept.json"
    accept.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    built = env.skiff(
        "--policy", accept, "build", "-q", "--network", "none", "--tls-verify=false", ctx
    )
    assert ID.match(built.stdout.strip())


@pytest.mark.skipif(shutil.which("conmon") is None, reason="serving needs conmon")
def test_demo_web_image_serves_its_page(env: ContainerEnv) -> None:
    result = env.skiff(
        "build",
        "--network",
        "none",
        "--build-arg",
        "BASE=localhost/busybox:latest",
        "-t",
        "localhost/demo/web",
        REPO / "demo" / "web",
    )
    assert "Successfully tagged localhost/demo/web:latest" in result.stdout
    net = env.network()
    port = free_port()
    env.run_detached(
        "--name", "web", "--network", net, "-p", f"127.0.0.1:{port}:8080", "localhost/demo/web"
    )
    page: list[bytes] = []

    def served() -> bool:
        body = fetch(f"http://127.0.0.1:{port}/")
        if body is not None:
            page.append(body)
        return body is not None

    wait_for(served, "the demo page on the published port", 20)
    assert b"<h1>Hello from skiff</h1>" in page[-1]
    assert fetch(f"http://127.0.0.1:{port}/health.txt") == b"ok\n"
    user = env.skiff("exec", "web", "id", "-un").stdout.strip()
    assert user == "www"
    env.skiff("rm", "-f", "-t", "0", "web")
