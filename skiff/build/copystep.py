"""COPY and ADD: files into a working container on the stage's current image.

Sources, destination and flags are expanded as one word each, then the
copy goes through the working-container library
(``skiff.build.copy.copy_into``, Docker's rules: globs, directory contents,
a destination ending in ``/``, ``--chown``/``--chmod``, ADD's archive
extraction and downloads) from:

- the build context (``.containerignore`` applied; nothing outside the
  context can be named — ``../x`` or a symlink leading out is an error);
- ``--from=STAGE``: the root of that stage's image (by name or index);
- ``--from=IMAGE``: an image of the store, pulled as ``--pull`` says;
- heredocs (``COPY <<EOF /etc/app.conf``): each body is a file named by
  its delimiter (mode 0644), with ``$NAME``/``${NAME}`` expanded unless the
  delimiter was quoted.

What the step's cache key holds besides the expanded instruction is what
it copies: the digest of the context files (``BuildContext.digest_sources``:
content and mode, not mtime), the ID of the stage's or image's image, the
heredoc bodies, and for ADD of a URL the digest of what the URL serves now
(it is downloaded for that, as Docker does; ``--checksum=sha256:…`` is
checked against it).

``--link`` is accepted (every COPY makes its own layer here anyway);
``--parents``, ``--exclude`` and ``--keep-git-dir`` are not supported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.build.dispatch import BuildScope, StageState, Step, mount_image_root
from skiff.build.instructions import CopyInstruction
from skiff.errors import BuildError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from skiff.build.builder import Builder
    from skiff.runtime.engine import Runtime

__all__ = ["prepare_copy"]

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
HEREDOC_MODE = 0o644


def prepare_copy(scope: BuildScope, state: StageState, instruction: CopyInstruction) -> Step:
    keyword = "ADD" if instruction.is_add else "COPY"
    for flag, given in (
        ("--parents", instruction.parents),
        ("--exclude", bool(instruction.excludes)),
        ("--keep-git-dir", instruction.keep_git_dir is not None),
    ):
        if given:
            raise instruction.error(
                f"{keyword} {flag} is not supported", f"remove {flag} from the instruction"
            )
    env = state.expansion_env()
    sources = scope.expand_words(instruction.sources, env)
    dest = scope.expand(instruction.dest, env)
    if not dest:
        raise instruction.error(f"{keyword} needs a destination", f"write {keyword} SRC... DEST")
    from_ = scope.expand(instruction.from_, env) if instruction.from_ else None
    chown = scope.expand(instruction.chown, env) if instruction.chown else None
    chmod = scope.expand(instruction.chmod, env) if instruction.chmod else None
    checksum = scope.expand(instruction.checksum, env) if instruction.checksum else None
    heredocs = [
        (doc.name, _expand_body(doc.body(), env) if doc.expand else doc.body())
        for doc in instruction.heredocs
    ]
    urls = [s for s in sources if s.startswith(("http://", "https://"))]

    stage_image = ""
    image = ""
    content: list[str] = []
    if from_:
        from skiff.build.stages import find_stage

        if urls:
            raise instruction.error(f"{keyword} --from cannot take a URL: {urls[0]}")
        used = find_stage(scope.containerfile, from_)
        if used is not None:
            stage_image = scope.stage_images[used]
            content.append(f"stage:{stage_image}")
        else:
            from skiff.build.basestep import resolve_image

            image = resolve_image(scope, from_).image_id
            content.append(f"image:{image}")
    else:
        if urls and not instruction.is_add:
            raise instruction.error(
                f"COPY cannot take a URL: {urls[0]}", "use ADD to download a file"
            )
        local = [s for s in sources if s not in urls]
        if local:
            content.append("context:" + scope.context.digest_sources(local))
        for url in urls:
            digest = _url_digest(scope, url)
            if checksum is not None:
                _check_checksum(instruction, url, digest, checksum)
            content.append(f"url:{url}:{digest}")
    if checksum is not None and not urls:
        raise instruction.error("ADD --checksum is only for URL sources")
    if heredocs:
        content.append("heredocs:" + json.dumps(heredocs))

    described = {
        "from": from_,
        "chown": chown,
        "chmod": chmod,
        "sources": sources,
        "heredocs": [name for name, _ in heredocs],
        "dest": dest,
    }
    key = f"{keyword} " + json.dumps(described, sort_keys=True)
    digest = hashlib.sha256("\n".join(content).encode()).hexdigest()
    kind = _kind(scope, sources, heredocs, from_)
    created_by = f"/bin/sh -c #(nop) {keyword} {kind}:{digest} in {dest} "

    def act(rt: Runtime, builder: Builder) -> None:
        _execute(
            scope,
            rt,
            builder,
            instruction,
            sources=sources,
            dest=dest,
            heredocs=heredocs,
            chown=chown,
            chmod=chmod,
            stage_image=stage_image,
            image=image,
        )

    return Step(instruction, key, created_by, content="\n".join(content), act=act)


def _kind(
    scope: BuildScope, sources: list[str], heredocs: list[tuple[str, str]], from_: str | None
) -> str:
    """buildah's word for what was copied: file, dir or multi."""
    if len(sources) + len(heredocs) != 1:
        return "multi"
    if heredocs or from_ or sources[0].startswith(("http://", "https://")):
        return "file"
    path = scope.context.root / sources[0].lstrip("/")
    return "dir" if path.is_dir() and not path.is_symlink() else "file"


def _expand_body(text: str, env: Mapping[str, str]) -> str:
    """``$NAME``/``${NAME}`` in a heredoc body (quotes stay as written)."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def _url_digest(scope: BuildScope, url: str) -> str:
    from skiff.build.sources import download

    hasher = hashlib.sha256()
    with tempfile.TemporaryFile(prefix="skiff-add-", dir=scope.ctx.tmp_dir) as spool:
        download(url, spool, hasher)
    return hasher.hexdigest()


def _check_checksum(instruction: CopyInstruction, url: str, digest: str, checksum: str) -> None:
    algorithm, _, value = checksum.partition(":")
    if algorithm != "sha256" or not value:
        raise instruction.error(f"invalid ADD --checksum={checksum}", "write --checksum=sha256:HEX")
    if value.lower() != digest:
        raise instruction.error(
            f"{url}: checksum mismatch: expected sha256:{value}, got sha256:{digest}",
            "the server sends other content than --checksum names",
        )


def _execute(
    scope: BuildScope,
    rt: Runtime,
    builder: Builder,
    instruction: CopyInstruction,
    *,
    sources: list[str],
    dest: str,
    heredocs: list[tuple[str, str]],
    chown: str | None,
    chmod: str | None,
    stage_image: str,
    image: str,
) -> None:
    from skiff.build.copy import CopyOptions, copy_into

    with contextlib.ExitStack() as stack:
        if sources:
            options = CopyOptions(chown=chown, chmod=chmod, add=instruction.is_add)
            if stage_image:
                options.source_root = mount_image_root(scope, stage_image, stack)
            elif image:
                options.from_ = image
            else:
                options.context_dir = scope.context.root
                options.ignore = scope.context.ignore
            copy_into(rt, builder, sources, dest, options)
        if heredocs:
            directory = Path(tempfile.mkdtemp(prefix="skiff-heredoc-", dir=scope.ctx.tmp_dir))
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            for name, body in heredocs:
                if "/" in name or name in (".", ".."):
                    raise BuildError(f"heredoc name {name!r} is no file name")
                path = directory / name
                path.write_text(body)
                path.chmod(HEREDOC_MODE)
                os.utime(path, (0, 0))
            target = dest
            if len(heredocs) + len(sources) > 1 and not dest.endswith("/"):
                target = dest + "/"
            copy_into(
                rt,
                builder,
                [name for name, _ in heredocs],
                target,
                CopyOptions(chown=chown, chmod=chmod, context_dir=directory),
            )
