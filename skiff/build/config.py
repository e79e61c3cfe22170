"""``builder config``: edit the image config a working container will commit.

Each flag changes one part of the record (``skiff.build.builder.Builder``),
with buildah 1.28's rules, checked against ``buildah config``:

- ``--env K=V`` sets (``$VAR``/``${VAR}`` in V expand against the
  container's environment so far, so ``PATH=$PATH:/x`` appends; a variable
  set again moves to the end of Env, as buildah's SetEnv does), ``--env K``
  takes K from the caller's environment (an error when unset), ``--env K-``
  removes. ``--label``, ``--annotation`` take ``K=V``, ``K`` (empty value)
  and ``K-``; ``--port`` and ``--volume`` take ``P`` and ``P-``. Ports are
  stored as given (``80`` stays ``80``; a Containerfile's EXPOSE says
  ``80/tcp`` itself).
- ``--entrypoint``: a JSON array is used as is, other text becomes
  ``["/bin/sh", "-c", TEXT]``, ``""`` removes it. ``--cmd``: a JSON array,
  else the text split into words as a shell would (``""``: no command).
  ``--shell`` the same as ``--cmd`` (buildah splits a JSON array into
  words too; skiff reads it as JSON, which is what a user means).
- ``--healthcheck``: ``NONE``, ``CMD ARGS…`` (or ``CMD ["a", "b"]``), or
  ``CMD-SHELL TEXT`` (kept as one string, as Docker's HEALTHCHECK does;
  buildah splits it into words), with interval and timeout 30s and 3
  retries unless ``--healthcheck-interval/-timeout/-start-period/-retries``
  say otherwise; ``""`` removes it.
- ``--stop-signal`` is stored as given, but must name a signal (buildah
  accepts anything and ``run`` fails later).
- ``--user``, ``--workingdir``, ``--author``, ``--created-by``,
  ``--comment``, ``--history-comment``, ``--onbuild`` (appends),
  ``--os``, ``--arch``, ``--variant``, ``--hostname``, ``--domainname``.

Healthcheck, Shell, OnBuild, the comment, Hostname and Domainname exist
only in Docker's config format: an OCI commit drops them with a warning.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skiff.build.builder import Builder, get_builder, save_builder
from skiff.errors import UsageError
from skiff.storage.store import Store

DEFAULT_HEALTH_INTERVAL = 30_000_000_000
DEFAULT_HEALTH_TIMEOUT = 30_000_000_000
DEFAULT_HEALTH_RETRIES = 3
_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class ConfigOptions:
    """``builder config`` flags; None (or empty lists) leave that part alone."""

    entrypoint: str | None = None
    cmd: str | None = None
    env: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    annotations: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    onbuild: list[str] = field(default_factory=list)
    user: str | None = None
    workingdir: str | None = None
    stop_signal: str | None = None
    shell: str | None = None
    healthcheck: str | None = None
    healthcheck_interval: str | None = None
    healthcheck_timeout: str | None = None
    healthcheck_start_period: str | None = None
    healthcheck_retries: int | None = None
    author: str | None = None
    created_by: str | None = None
    comment: str | None = None
    history_comment: str | None = None
    os: str | None = None
    arch: str | None = None
    variant: str | None = None
    hostname: str | None = None
    domainname: str | None = None


@dataclass
class ConfigReport:
    builder: Builder
    warnings: list[str] = field(default_factory=list)


def configure(store: Store, ref: str, options: ConfigOptions) -> ConfigReport:
    """Apply ``options`` to the working container ``ref`` and save it."""
    builder = get_builder(store, ref)
    warnings = apply_config(builder, options)
    save_builder(store, builder)
    return ConfigReport(builder, warnings)


def apply_config(
    builder: Builder, options: ConfigOptions, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Change ``builder`` in memory as ``options`` say; returns warnings.

    Everything is validated before anything changes, so a bad flag leaves
    the builder as it was.
    """
    environ = os.environ if environ is None else environ
    config = json.loads(json.dumps(builder.config))  # edit a copy; swap in at the end
    inner = config.get("config")
    if not isinstance(inner, dict):
        inner = {}
        config["config"] = inner
    warnings: list[str] = []
    for item in options.env:
        _env(inner, item, environ)
    for item in options.labels:
        _key_value(inner, "Labels", item, "--label")
    for item in options.ports:
        _set_member(inner, "ExposedPorts", item, "--port")
    for item in options.volumes:
        if not item.rstrip("-").startswith("/"):
            raise UsageError(f"invalid --volume {item!r}: must be an absolute path")
        _set_member(inner, "Volumes", item, "--volume")
    if options.entrypoint is not None:
        entrypoint = parse_entrypoint(options.entrypoint)
        if entrypoint is None:
            inner.pop("Entrypoint", None)
        else:
            inner["Entrypoint"] = entrypoint
            if inner.get("Cmd") and options.cmd is None:
                shown = " ".join(inner["Cmd"])
                warnings.append(
                    f'cmd "{shown}" exists and will be passed to entrypoint as a parameter'
                )
    if options.cmd is not None:
        inner["Cmd"] = parse_words(options.cmd, "--cmd")
    if options.shell is not None:
        shell = parse_words(options.shell, "--shell")
        if shell:
            inner["Shell"] = shell
        else:
            inner.pop("Shell", None)
    for item in options.onbuild:
        if not item.strip():
            raise UsageError("--onbuild needs an instruction, e.g. 'RUN make'")
        inner.setdefault("OnBuild", []).append(item)
    _healthcheck(inner, options)
    if options.stop_signal is not None:
        _check_signal(options.stop_signal)
        if options.stop_signal:
            inner["StopSignal"] = options.stop_signal
        else:
            inner.pop("StopSignal", None)
    for key, value in (
        ("User", options.user),
        ("WorkingDir", options.workingdir),
        ("Hostname", options.hostname),
        ("Domainname", options.domainname),
    ):
        if value is not None:
            if value:
                inner[key] = value
            else:
                inner.pop(key, None)
    for key, value in (
        ("author", options.author),
        ("os", options.os),
        ("architecture", options.arch),
        ("variant", options.variant),
    ):
        if value is not None:
            if value:
                config[key] = value
            else:
                config.pop(key, None)
    annotations = dict(builder.annotations)
    for item in options.annotations:
        _annotation(annotations, item)
    builder.config = config
    builder.annotations = annotations
    if options.created_by is not None:
        builder.created_by = options.created_by
    if options.comment is not None:
        builder.comment = options.comment
    if options.history_comment is not None:
        builder.history_comment = options.history_comment
    return warnings


# --- values -------------------------------------------------------------------------


def parse_entrypoint(text: str) -> list[str] | None:
    """A JSON array as is, other text run by ``/bin/sh -c``; None for ``""``."""
    if not text:
        return None
    as_json = _json_list(text)
    if as_json is not None:
        return as_json
    if text.lstrip().startswith("["):
        raise UsageError(
            f"invalid --entrypoint {text!r}: not a JSON array of strings",
            'write ["cmd", "arg"], or plain text to run with /bin/sh -c',
        )
    return ["/bin/sh", "-c", text]


def parse_words(text: str, flag: str) -> list[str]:
    """A JSON array of strings, or the text split into words as a shell would."""
    as_json = _json_list(text)
    if as_json is not None:
        return as_json
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"invalid {flag} {text!r}: {exc}", "check the quotes") from None


def _json_list(text: str) -> list[str] | None:
    if not text.lstrip().startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` replaced by their values (unknown ones by nothing)."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def env_map(entries: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def _env(inner: dict[str, Any], item: str, environ: Mapping[str, str]) -> None:
    current = [str(e) for e in inner.get("Env") or []]
    key, sep, value = item.partition("=")
    if not key:
        raise UsageError(f"invalid --env {item!r}", "use KEY=VALUE, KEY, or KEY- to remove")
    if not sep and key.endswith("-"):
        name = key[:-1]
        inner["Env"] = [e for e in current if e.partition("=")[0] != name]
        return
    if not sep:
        if key not in environ:
            raise UsageError(
                f'setting env "{key}": no value given', f"use {key}=VALUE, or export {key}"
            )
        value = environ[key]
    else:
        value = expand(value, env_map(current))
    # buildah's SetEnv: the old entry goes, the new one is appended
    inner["Env"] = [e for e in current if e.partition("=")[0] != key] + [f"{key}={value}"]


def _key_value(inner: dict[str, Any], field_name: str, item: str, flag: str) -> None:
    key, sep, value = item.partition("=")
    if not key:
        raise UsageError(f"invalid {flag} {item!r}", "use KEY=VALUE, KEY, or KEY- to remove")
    mapping = inner.get(field_name)
    if not isinstance(mapping, dict):
        mapping = {}
    if not sep and key.endswith("-"):
        mapping.pop(key[:-1], None)
    else:
        mapping[key] = value
    if mapping:
        inner[field_name] = mapping
    else:
        inner.pop(field_name, None)


def _set_member(inner: dict[str, Any], field_name: str, item: str, flag: str) -> None:
    if not item or item == "-":
        raise UsageError(f"invalid {flag} {item!r}")
    mapping = inner.get(field_name)
    if not isinstance(mapping, dict):
        mapping = {}
    if item.endswith("-"):
        mapping.pop(item[:-1], None)
    else:
        mapping[item] = {}
    if mapping:
        inner[field_name] = mapping
    else:
        inner.pop(field_name, None)


def _annotation(annotations: dict[str, str], item: str) -> None:
    key, sep, value = item.partition("=")
    if not key:
        raise UsageError(f"invalid --annotation {item!r}", "use KEY=VALUE or KEY- to remove")
    if not sep and key.endswith("-"):
        annotations.pop(key[:-1], None)
    else:
        annotations[key] = value


def _check_signal(text: str) -> None:
    if not text:
        return
    from skiff.runtime.specgen.generator import parse_signal

    parse_signal(text)


def parse_duration(text: str, flag: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    if text == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid {flag} {text!r}", "use a duration such as 30s, 1m30s or 500ms")
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def parse_healthcheck_test(text: str) -> list[str] | None:
    """``NONE``, ``CMD …``, ``CMD-SHELL …`` as Docker's Healthcheck.Test (None: remove)."""
    stripped = text.strip()
    if not stripped:
        return None
    word, _, rest = stripped.partition(" ")
    kind = word.upper()
    rest = rest.strip()
    if kind == "NONE" and not rest:
        return ["NONE"]
    if kind == "CMD-SHELL" and rest:
        return ["CMD-SHELL", rest]
    if kind == "CMD" and rest:
        as_json = _json_list(rest)
        return ["CMD", *(as_json if as_json is not None else parse_words(rest, "--healthcheck"))]
    raise UsageError(
        f"invalid --healthcheck {text!r}",
        "use NONE, 'CMD command args…' or 'CMD-SHELL command line'",
    )


def _healthcheck(inner: dict[str, Any], options: ConfigOptions) -> None:
    check = inner.get("Healthcheck") if isinstance(inner.get("Healthcheck"), dict) else None
    if options.healthcheck is not None:
        test = parse_healthcheck_test(options.healthcheck)
        if test is None:
            inner.pop("Healthcheck", None)
            check = None
        else:
            check = {
                "Test": test,
                "Interval": DEFAULT_HEALTH_INTERVAL,
                "Timeout": DEFAULT_HEALTH_TIMEOUT,
                "Retries": DEFAULT_HEALTH_RETRIES,
            }
    tuning = (
        ("Interval", options.healthcheck_interval, "--healthcheck-interval"),
        ("Timeout", options.healthcheck_timeout, "--healthcheck-timeout"),
        ("StartPeriod", options.healthcheck_start_period, "--healthcheck-start-period"),
    )
    given = any(t[1] is not None for t in tuning) or options.healthcheck_retries is not None
    if given and check is None:
        raise UsageError(
            "the healthcheck options need a healthcheck", "give --healthcheck 'CMD …' too"
        )
    if check is None:
        return
    for key, value, flag in tuning:
        if value is not None:
            nanos = parse_duration(value, flag)
            if nanos:
                check[key] = nanos
            else:
                check.pop(key, None)
    if options.healthcheck_retries is not None:
        if options.healthcheck_retries < 0:
            raise UsageError("--healthcheck-retries must not be negative")
        check["Retries"] = options.healthcheck_retries
    inner["Healthcheck"] = check
