"""``skiff build``: a Containerfile, stage by stage, into an image in the store.

``build_image(ctx, BuildOptions(...)) -> BuildReport`` is the whole build:

1. The context is opened (``skiff.build.context``), the Containerfile read
   and parsed (``skiff.build.parser``; every problem it finds is an error
   before anything is built), the global ARGs given their values, and the
   stages the target needs put in order (``skiff.build.stages``: ``--target``,
   FROM and ``--from`` dependencies, cycles refused).
2. Each stage starts at its FROM (``skiff.build.basestep``: scratch, an
   earlier stage, or an image — pulled as ``--pull`` says), runs its base
   image's ONBUILD triggers, then its instructions, each prepared by
   ``skiff.build.dispatch`` and then:

   - with ``--layers`` (the default): looked up in the layer cache
     (``skiff.build.cache``); on a miss, a config-only instruction is
     committed straight from the config (no working container, no layer)
     and a RUN/COPY/ADD runs in a working container on the current image,
     committed as one new layer, and the container removed. Every commit is
     an unnamed image the cache remembers (buildah's intermediate images);
   - with ``--layers=false`` (and for the target stage with ``--squash``):
     one working container for the whole stage, committed once at its end.

   Independent stages run in parallel with ``--jobs N``; a stage starts when
   the stages it uses are done, and the first failure stops the others at
   their next step.
3. The target stage's image gets the ``-t`` names (``--label`` and
   ``--annotation`` went into its last commit), ``--iidfile`` is written,
   and the report carries its ID.

Output, as buildah prints it, goes to ``options.log`` (``STEP 2/8: RUN …``,
the command's own output through ``options.stdout``/``stderr``, ``--> Using
cache ID``, ``--> SHORTID`` after each commit, ``COMMIT NAME``); warnings
(a declared ARG without value, build arguments no ARG used, what an OCI
image drops) go to ``options.warn``.

Working containers are removed when their step ends, whether it succeeded
or failed (buildah keeps a failed one unless ``--force-rm``); ``rm=False``
keeps them, for debugging, and ``force_rm`` removes even then on failure.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.build.cache import LayerCache, StepKey
from skiff.build.dispatch import (
    PROXY_ARGS,
    BuildScope,
    StageState,
    Step,
    Stream,
    global_arg_values,
    located,
    prepare,
)
from skiff.errors import BuildError, InvalidReference, SkiffError, UsageError

if TYPE_CHECKING:
    from skiff.build.builder import Builder, PullPolicy
    from skiff.build.context import BuildContext
    from skiff.build.instructions import Instruction
    from skiff.build.parser import Containerfile
    from skiff.build.stages import StagePlan
    from skiff.config import SystemContext
    from skiff.libimage.pull import PullOptions
    from skiff.runtime.engine import Runtime
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

__all__ = ["BuildOptions", "BuildReport", "build_image"]

FORMATS = ("oci", "docker")
SHORT_ID = 11
"""buildah's ``--> ID`` shows 11 characters."""
PLATFORM_ARGS = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
)


@dataclass
class BuildOptions:
    """What ``skiff build`` takes (podman build's flags)."""

    context: str = "."
    """A directory, a tar archive, or an http(s) URL of one."""
    containerfile: str | None = None
    """``-f``: a path (relative ones from the current directory, else from the
    context); None: CONTEXT/Containerfile, else CONTEXT/Dockerfile."""
    containerfile_text: str | None = None
    """The Containerfile itself (``-f -``: read from standard input)."""
    tags: list[str] = field(default_factory=list)
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    """``KEY=VALUE`` labels of the image built."""
    annotations: list[str] = field(default_factory=list)
    layers: bool = True
    no_cache: bool = False
    pull: PullPolicy | None = None
    """None: missing."""
    pull_options: PullOptions | None = None
    """Progress, notes and the trust policy for pulls (the CLI fills them)."""
    format: str = "oci"
    squash: bool = False
    iidfile: Path | None = None
    timestamp: int | None = None
    ignorefile: Path | None = None
    jobs: int = 1
    network: str = "private"
    """RUN's network: private (the default network), none, host, or a network's name."""
    volumes: list[str] = field(default_factory=list)
    """``-v HOST:CTR[:OPTS]`` for every RUN."""
    rm: bool = True
    force_rm: bool = False
    platform: str | None = None
    log: Callable[[str], None] | None = None
    """Receives the progress lines (None: silent, as ``-q``)."""
    warn: Callable[[str], None] | None = None
    stdout: Stream = None
    """Where RUN commands write (None: skiff's own stdout)."""
    stderr: Stream = None


@dataclass
class BuildReport:
    image_id: str
    names: list[str] = field(default_factory=list)
    """Every name the image has now."""
    manifest_digest: str = ""
    steps: int = 0
    """Instructions that committed, cached or not."""
    cached: int = 0
    """Of those, how many came from the layer cache."""
    new_images: list[str] = field(default_factory=list)
    """Images this build committed (intermediate ones included), oldest first."""
    warnings: list[str] = field(default_factory=list)


def build_image(ctx: SystemContext, options: BuildOptions) -> BuildReport:
    """Build ``options.context`` with its Containerfile (see the module docstring)."""
    from skiff.storage.store import Store

    names = _check_options(options)
    store = Store.open(ctx)
    try:
        from skiff.build.context import open_context

        with open_context(
            options.context, ignorefile=options.ignorefile, tmp_dir=ctx.tmp_dir, db=store.db
        ) as context:
            return _Build(ctx, store, context, options, names).run()
    finally:
        store.close()


def _check_options(options: BuildOptions) -> list[str]:
    """Validate what can be checked before anything is read; the -t names, normalized."""
    from skiff.libimage.names import local_name

    if options.format not in FORMATS:
        raise UsageError(f"unknown format {options.format!r}", "use oci or docker")
    if options.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if options.timestamp is not None and options.timestamp < 0:
        raise UsageError("--timestamp must not be negative")
    for item in [*options.labels, *options.annotations]:
        if not item.partition("=")[0]:
            raise UsageError(f"invalid label or annotation {item!r}", "use KEY=VALUE")
    if options.platform:
        from skiff.build.basestep import check_platform

        for platform in options.platform.split(","):
            check_platform(platform.strip())
    names = []
    for tag in options.tags:
        try:
            names.append(str(local_name(tag)))
        except InvalidReference as exc:
            raise UsageError(f"invalid tag {tag!r}: {exc.message}", exc.hint) from exc
    return names


class _Cancelled(Exception):
    """Another stage failed: this one stops at its next step."""


class _Build:
    """One build: the scope its stages share, the output, the runtime."""

    def __init__(
        self,
        ctx: SystemContext,
        store: Store,
        context: BuildContext,
        options: BuildOptions,
        names: list[str],
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.context = context
        self.options = options
        self.names = names
        self.report = BuildReport(image_id="")
        self.cache = LayerCache(store) if options.layers else None
        self._rt: Runtime | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._warned: set[str] = set()

    # --- output -----------------------------------------------------------------------
    def log(self, line: str) -> None:
        if self.options.log is not None:
            with self._lock:
                self.options.log(line)

    def warn(self, text: str) -> None:
        with self._lock:
            if text in self._warned:
                return
            self._warned.add(text)
            self.report.warnings.append(text)
            if self.options.warn is not None:
                self.options.warn(text)

    def runtime(self) -> Runtime:
        with self._lock:
            if self._rt is None:
                from skiff.runtime.engine import Runtime

                self._rt = Runtime(self.ctx, store=self.store)
            return self._rt

    # --- the build --------------------------------------------------------------------
    def run(self) -> BuildReport:
        from skiff.build.stages import plan

        cf = self._containerfile()
        for warning in cf.warnings:
            self.warn(warning)
        options = self.options
        consumed: set[str] = set()
        global_env = global_arg_values(
            cf.global_args,
            options.build_args,
            _platform_args(),
            escape=cf.escape,
            consumed=consumed,
            warn=self.warn,
        )
        scope = BuildScope(
            ctx=self.ctx,
            store=self.store,
            containerfile=cf,
            context=self.context,
            runtime=self.runtime,
            build_args=dict(options.build_args),
            global_env=global_env,
            pull=options.pull,
            pull_options=options.pull_options,
            network=options.network,
            volumes=list(options.volumes),
            stdout=options.stdout,
            stderr=options.stderr,
            warn=self.warn,
            consumed=consumed,
        )

        def expand(text: str, env: Any) -> str:
            return scope.expand(text, env)

        stage_plan = plan(
            cf,
            target=options.target,
            build_args=options.build_args,
            global_env=global_env,
            expand=expand,
        )
        self._run_stages(scope, stage_plan)
        image_id = scope.stage_images[stage_plan.target]
        self._finish(image_id)
        unused = sorted(
            name
            for name in options.build_args
            if name not in scope.consumed and name not in PROXY_ARGS and name not in PLATFORM_ARGS
        )
        if unused:
            self.warn(f"[Warning] one or more build args were not consumed: [{' '.join(unused)}]")
        return self.report

    def _containerfile(self) -> Containerfile:
        from skiff.build.parser import parse_containerfile, parse_file

        options = self.options
        if options.containerfile_text is not None:
            return parse_containerfile(options.containerfile_text, options.containerfile or "-")
        if options.containerfile:
            given = Path(options.containerfile)
            if given.is_absolute() or given.exists():
                return parse_file(given)
            return parse_file(self.context.root / given)
        if self.context.containerfile is not None:
            return parse_file(self.context.containerfile)
        for name in ("Containerfile", "Dockerfile"):
            candidate = self.context.root / name
            if candidate.is_file():
                return parse_file(candidate)
        raise BuildError(
            f"no Containerfile or Dockerfile in the build context {options.context}",
            "give the file with -f",
        )

    def _run_stages(self, scope: BuildScope, stage_plan: StagePlan) -> None:
        order = stage_plan.order
        if self.options.jobs == 1 or len(order) == 1:
            for index in order:
                self._stage(scope, stage_plan, index)
            return
        done: set[int] = set()
        remaining = list(order)
        running: dict[Future[None], int] = {}
        error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.options.jobs) as pool:
            try:
                while remaining or running:
                    if error is None:
                        for index in list(remaining):
                            if len(running) >= self.options.jobs:
                                break
                            if stage_plan.needs[index] <= done:
                                remaining.remove(index)
                                running[pool.submit(self._stage, scope, stage_plan, index)] = index
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        index = running.pop(future)
                        failure = future.exception()
                        if failure is None:
                            done.add(index)
                        elif error is None or isinstance(error, _Cancelled):
                            error = failure
                            self._cancel.set()
            except BaseException:
                self._cancel.set()
                raise
        if error is not None:
            raise error

    def _finish(self, image_id: str) -> None:
        store = self.store
        if self.names:
            store.images.add_names(image_id, self.names)
        image = store.images.get(image_id)
        self.report.image_id = image_id
        self.report.names = list(image.names)
        self.report.manifest_digest = str(image.digest or "")
        if self.names:
            for name in image.names:
                self.log(f"Successfully tagged {name}")
        if self.options.iidfile is not None:
            from skiff.build.commit import write_iidfile

            write_iidfile(self.options.iidfile, image_id)

    # --- one stage ----------------------------------------------------------------------
    def _stage(self, scope: BuildScope, stage_plan: StagePlan, index: int) -> None:
        from skiff.build.basestep import start_stage

        stage = stage_plan.containerfile.stages[index]
        final = index == stage_plan.target
        many = len(stage_plan.order) > 1
        prefix = f"[{stage_plan.position(index)}/{len(stage_plan.order)}] " if many else ""
        total = 1 + len(stage.instructions)
        self._check_cancel()
        self.log(f"{prefix}STEP 1/{total}: {stage.from_.original}")
        state, triggers = start_stage(scope, stage)
        items: list[tuple[Instruction, str]] = [
            (trigger, f"{prefix}--> ONBUILD {trigger.original}") for trigger in triggers
        ]
        for number, instruction in enumerate(stage.instructions, start=2):
            items.append((instruction, f"{prefix}STEP {number}/{total}: {instruction.original}"))
        run = _StageRun(self, scope, state, prefix, final)
        if self.options.layers and not (final and self.options.squash):
            run.layered(items)
        else:
            run.single(items, squash=final and self.options.squash)
        with scope.lock:
            scope.stage_images[index] = run.state.image_id
            scope.stage_docker_only[index] = copy.deepcopy(run.state.docker_only)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Cancelled()

    def commit_settings(self, final: bool) -> dict[str, str]:
        """What shapes a commit besides the step itself (part of every cache key)."""
        options = self.options
        settings = {"format": options.format, "timestamp": str(options.timestamp)}
        if final:
            settings["labels"] = "\n".join(options.labels)
            settings["annotations"] = "\n".join(options.annotations)
        return settings

    def first_name(self) -> str:
        return self.options.tags[0] if self.options.tags else ""


class _StageRun:
    """The steps of one stage (``layered`` or ``single``)."""

    def __init__(
        self, build: _Build, scope: BuildScope, state: StageState, prefix: str, final: bool
    ) -> None:
        self.build = build
        self.scope = scope
        self.state = state
        self.prefix = prefix
        self.final = final
        self.start_image = state.image_id

    # --- with --layers ---------------------------------------------------------------
    def layered(self, items: list[tuple[Instruction, str]]) -> None:
        build = self.build
        cache = build.cache
        use_cache = cache is not None and not build.options.no_cache
        prepared: list[Step] = []
        last = -1
        for position, (instruction, line) in enumerate(items):
            build._check_cancel()
            build.log(line)
            step = prepare(self.scope, self.state, instruction)
            if not step.commits:
                if step.after is not None:
                    step.after(self.state)
                continue
            prepared.append(step)
            is_last = self.final and not any(
                _commits(i) for i, _ in items[position + 1 :]
            )  # later ARGs commit nothing
            last = position
            key = StepKey(
                parent=self.state.image_id or "scratch",
                instruction=step.key,
                content=step.content,
                args=step.args,
                settings=build.commit_settings(is_last),
            )
            hit = cache.lookup(key) if use_cache and cache is not None else None
            if hit is not None:
                build.log(f"--> Using cache {hit}")
                build.report.cached += 1
                self._adopt(step, hit)
            else:
                image_id = self._commit_step(step, final_commit=is_last)
                if cache is not None:
                    cache.record(key, image_id)
            build.report.steps += 1
            if is_last:
                self._announce_commit()
            build.log(f"--> {self.state.image_id[:SHORT_ID]}")
        if last < 0 or not self.state.image_id:
            self._empty_final()

    def _announce_commit(self) -> None:
        name = self.build.first_name()
        self.build.log(f"{self.prefix}COMMIT {name}".rstrip())

    def _empty_final(self) -> None:
        """A stage that committed nothing: its base image is its image, unless
        it is scratch (an image without layers is made) or the final image
        needs labels or annotations (one config-only commit adds them)."""
        options = self.build.options
        needs_commit = not self.state.image_id or (
            self.final and (options.labels or options.annotations)
        )
        if self.final:
            self._announce_commit()
        if needs_commit:
            builder = self._detached()
            self._commit(builder, "/bin/sh -c #(nop) COMMIT", empty_layer=True, final=self.final)
        if self.final:
            self.build.log(f"--> {self.state.image_id[:SHORT_ID]}")

    def _adopt(self, step: Step, image_id: str) -> None:
        from skiff.build.basestep import image_config

        if step.after is not None:
            step.after(self.state)
        self.state.adopt(image_id, image_config(self.build.store, image_id))

    def _commit_step(self, step: Step, *, final_commit: bool) -> str:
        if step.act is None:
            builder = self._detached()
            if step.edit is not None:
                step.edit(builder)
            return self._commit(
                builder, step.created_by, empty_layer=True, final=final_commit, step=step
            )
        with self._working_container() as builder:
            try:
                step.act(self.build.runtime(), builder)
            except SkiffError as exc:
                raise located(step.instruction, exc) from exc
            return self._commit(
                builder, step.created_by, empty_layer=False, final=final_commit, step=step
            )

    def _commit(
        self,
        builder: Builder,
        created_by: str,
        *,
        empty_layer: bool,
        final: bool,
        step: Step | None = None,
        squash: bool = False,
    ) -> str:
        from skiff.build.basestep import image_config
        from skiff.build.commit import CommitOptions, commit_builder

        build = self.build
        options = build.options
        if final:
            _apply_final(builder, options.labels, options.annotations)
        report = commit_builder(
            build.runtime(),
            builder,
            None,
            CommitOptions(
                format=options.format,
                squash=squash,
                timestamp=options.timestamp,
                created_by=created_by,
                comment=self._comment(),
                empty_layer=empty_layer,
            ),
        )
        for warning in report.warnings:
            build.warn(warning)
        build.report.new_images.append(report.image_id)
        if step is not None and step.after is not None:
            step.after(self.state)
        self.state.adopt(report.image_id, image_config(build.store, report.image_id))
        return report.image_id

    def _comment(self) -> str:
        state = self.state
        if state.image_id and state.image_id == self.start_image:
            return f"FROM {state.base_name}" if state.base_name else ""
        return f"FROM {state.image_id[:12]}" if state.image_id else ""

    def _detached(self) -> Builder:
        """A Builder on the current image without a working container (for
        commits that change only the config)."""
        from skiff.build.builder import Builder

        state = self.state
        return Builder(
            id="",
            name="",
            container_id="",
            from_image=state.base_name,
            from_image_id=state.image_id,
            from_image_digest=state.base_digest,
            created=0.0,
            format=self.build.options.format,
            config=copy.deepcopy(state.config),
        )

    @contextlib.contextmanager
    def _working_container(self) -> Iterator[Builder]:
        """A working container on the current image, removed when the step ends
        (kept with ``rm=False``; on failure too unless ``force_rm``)."""
        from skiff.build.builder import FromOptions, PullPolicy, from_image, remove_builder

        build = self.build
        options = build.options
        state = self.state
        rt = build.runtime()
        builder = from_image(
            rt,
            state.image_id or "scratch",
            options=FromOptions(pull=PullPolicy.NEVER, format=options.format),
        )
        builder.config = copy.deepcopy(state.config)
        builder.from_image = state.base_name
        builder.from_image_digest = state.base_digest
        if options.rm and build.store.driver_name == "overlay":
            # A container removed after its step never needs its writes synced
            # to disk: a volatile overlay skips the sync a plain one does at
            # unmount (over a second on a journaled file system). The mount is
            # counted, so run and copy use it; removing the container unmounts
            # it, and removes the work directory volatile marks.
            container = build.store.containers.get(builder.container_id)
            build.store.layers.mount(container.layer_id, ["volatile"])
        failed = False
        try:
            yield builder
        except BaseException:
            failed = True
            raise
        finally:
            keep = not options.rm and not (failed and options.force_rm)
            if not keep:
                try:
                    remove_builder(build.store, builder.id)
                except SkiffError as exc:
                    build.warn(f"removing working container {builder.name}: {exc}")

    # --- without --layers (and --squash) --------------------------------------------------
    def single(self, items: list[tuple[Instruction, str]], *, squash: bool) -> None:
        """Every step in one working container, one commit at the end."""
        build = self.build
        with self._working_container() as builder:
            self.state.config = builder.config
            history: list[str] = []
            changed_files = False
            for instruction, line in items:
                build._check_cancel()
                build.log(line)
                step = prepare(self.scope, self.state, instruction)
                if not step.commits:
                    if step.after is not None:
                        step.after(self.state)
                    continue
                if step.edit is not None:
                    step.edit(builder)
                if step.act is not None:
                    try:
                        step.act(build.runtime(), builder)
                    except SkiffError as exc:
                        raise located(step.instruction, exc) from exc
                    changed_files = True
                if step.after is not None:
                    step.after(self.state)
                history.append(step.created_by)
                build.report.steps += 1
            if self.final:
                self._announce_commit()
            last = history.pop() if history else "/bin/sh -c #(nop) COMMIT"
            for created_by in history:
                builder.add_history(created_by, empty_layer=True)
            self._commit(
                builder,
                last,
                empty_layer=not (changed_files or squash),
                final=self.final,
                squash=squash,
            )
            build.log(f"--> {self.state.image_id[:SHORT_ID]}")


def _commits(instruction: Instruction) -> bool:
    from skiff.build.instructions import ArgInstruction

    return not isinstance(instruction, ArgInstruction)


def _apply_final(builder: Builder, labels: list[str], annotations: list[str]) -> None:
    if labels:
        inner = builder.container_config
        merged = dict(inner.get("Labels") or {})
        for item in labels:
            key, _, value = item.partition("=")
            merged[key] = value
        inner["Labels"] = merged
    for item in annotations:
        key, _, value = item.partition("=")
        builder.annotations[key] = value


def _platform_args() -> dict[str, str]:
    from skiff.oci.platform import host_platform

    host = host_platform()
    platform = f"{host.os}/{host.architecture}" + (f"/{host.variant}" if host.variant else "")
    values = {"PLATFORM": platform, "OS": host.os, "ARCH": host.architecture}
    values["VARIANT"] = host.variant
    out = {}
    for prefix in ("TARGET", "BUILD"):
        for key, value in values.items():
            out[prefix + key] = value
    return out
