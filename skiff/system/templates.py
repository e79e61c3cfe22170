"""The image's ``/exports``: templates, the manifest, and variable substitution.

An image made to be a system container ships (all optional)::

    /exports/config.json.template   the OCI runtime config
    /exports/service.template       the systemd unit
    /exports/tmpfiles.template      a tmpfiles.d(5) file
    /exports/manifest.json          {"defaultValues": {VAR: VALUE},
                                     "noContainerService": bool,
                                     "installedFilesTemplate": ["/path/in/hostfs", …]}
    /exports/hostfs/…               files copied to the host (``hostfs`` of a
                                    deployment), those listed in
                                    installedFilesTemplate after substitution

Substitution (atomic's, that is Python's ``string.Template`` syntax):
``$VAR`` and ``${VAR}`` are replaced by the value; ``$$`` is a literal
``$`` (so a unit can still say ``$$MAINPID``); a ``$`` not followed by a
name is left alone. A variable with no value is an error that names it
and the file — never an empty string.

Where values come from, later ones winning:

1. built-in defaults of the overridable variables (``RUN_DIRECTORY=/run``,
   ``STATE_DIRECTORY=/var/lib``);
2. the manifest's ``defaultValues``;
3. ``--set KEY=VALUE``;
4. the values skiff computes (``NAME``, ``DESTDIR``, ``EXEC_START``, …):
   neither the manifest nor ``--set`` may set those (an error says so).

The templates are read from the checked-out rootfs through
``skiff.runtime.specgen.rootfs.read_file``, which resolves symlinks inside
the rootfs: an image cannot make skiff read a host file as its template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from skiff.errors import SystemContainerError, UsageError

EXPORTS = "/exports"
CONFIG_TEMPLATE = "config.json.template"
SERVICE_TEMPLATE = "service.template"
TMPFILES_TEMPLATE = "tmpfiles.template"
MANIFEST = "manifest.json"
HOSTFS = "hostfs"
MAX_TEMPLATE_SIZE = 1 << 20

COMPUTED = (
    "NAME",
    "DESTDIR",
    "EXEC_START",
    "EXEC_STOP",
    "EXEC_STARTPRE",
    "EXEC_STOPPOST",
    "HOST_UID",
    "HOST_GID",
    "IMAGE_ID",
    "IMAGE_NAME",
    "PIDFILE",
    "UUID",
    "RUNTIME",
)
"""Variables skiff computes for every deployment."""

OVERRIDABLE_DEFAULTS = {"RUN_DIRECTORY": "/run", "STATE_DIRECTORY": "/var/lib"}
"""Variables with a built-in value that the manifest or ``--set`` may change."""

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VAR_RE = re.compile(rf"\$(?:(?P<escaped>\$)|\{{(?P<braced>{_NAME})\}}|(?P<named>{_NAME}))")
_KEY_RE = re.compile(rf"\A{_NAME}\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class TemplateError(SystemContainerError):
    """A template or manifest of the image cannot be used."""


# --- substitution ----------------------------------------------------------------------


def variables_used(text: str) -> list[str]:
    """The variable names ``text`` refers to, in order of first use."""
    names: dict[str, None] = {}
    for match in _VAR_RE.finditer(text):
        name = match["braced"] or match["named"]
        if name:
            names.setdefault(name, None)
    return list(names)


def substitute(text: str, values: Mapping[str, str], *, what: str) -> str:
    """``text`` with ``$VAR``/``${VAR}`` replaced; ``what`` names it in errors."""
    missing = [name for name in variables_used(text) if name not in values]
    if missing:
        raise TemplateError(
            f"{what} uses {', '.join('$' + m for m in missing)}, which "
            + ("has" if len(missing) == 1 else "have")
            + " no value",
            "give "
            + " ".join(f"--set {m}=VALUE" for m in missing)
            + ", or add defaultValues to the image's manifest.json",
        )

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        return values[match["braced"] or match["named"]]

    return _VAR_RE.sub(replace, text)


def parse_set_values(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` arguments; a computed variable cannot be set."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _KEY_RE.match(key):
            raise UsageError(
                f"invalid --set {item!r}", "use --set KEY=VALUE with KEY a variable name"
            )
        if key in COMPUTED:
            raise UsageError(
                f"--set {key}: ${key} is computed by skiff and cannot be set",
                f"computed: {', '.join(COMPUTED)}",
            )
        if _CONTROL_RE.search(value):
            raise UsageError(
                f"invalid --set {key}: the value holds a control character (a newline?)",
                "values go into unit files and configs line by line",
            )
        out[key] = value
    return out


def merge_values(
    manifest_defaults: Mapping[str, str],
    user_values: Mapping[str, str],
    computed: Mapping[str, str],
) -> dict[str, str]:
    """All the values of a deployment, in the order of the module docstring."""
    values = dict(OVERRIDABLE_DEFAULTS)
    values.update(manifest_defaults)
    values.update(user_values)
    values.update(computed)
    return values


# --- the manifest ------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    default_values: dict[str, str] = field(default_factory=dict)
    no_container_service: bool = False
    installed_files_template: tuple[str, ...] = ()
    """hostfs paths (``/usr/local/bin/x``) whose content is a template."""


def parse_manifest(raw: bytes, what: str = f"{EXPORTS}/{MANIFEST}") -> Manifest:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TemplateError(f"the image's {what} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"the image's {what} is not a JSON object")
    defaults = data.get("defaultValues") or {}
    if not isinstance(defaults, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in defaults.items()
    ):
        raise TemplateError(f"the image's {what}: defaultValues is not an object of strings")
    values: dict[str, str] = {}
    for key, value in defaults.items():
        if not _KEY_RE.match(key):
            raise TemplateError(f"the image's {what}: defaultValues has an invalid name {key!r}")
        if key in COMPUTED:
            raise TemplateError(
                f"the image's {what}: defaultValues sets {key}, which skiff computes",
                "remove it from the image's manifest",
            )
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if _CONTROL_RE.search(text):
            raise TemplateError(
                f"the image's {what}: defaultValues {key} holds a control character"
            )
        values[key] = text
    no_service = data.get("noContainerService", False)
    if not isinstance(no_service, bool):
        raise TemplateError(f"the image's {what}: noContainerService is not true or false")
    installed = data.get("installedFilesTemplate") or []
    if not isinstance(installed, list) or not all(isinstance(p, str) for p in installed):
        raise TemplateError(f"the image's {what}: installedFilesTemplate is not a list of paths")
    return Manifest(values, no_service, tuple("/" + p.strip("/") for p in installed))


# --- reading /exports -------------------------------------------------------------------


@dataclass(frozen=True)
class Exports:
    config_template: str | None = None
    service_template: str | None = None
    tmpfiles_template: str | None = None
    manifest: Manifest = field(default_factory=Manifest)
    hostfs: Path | None = None
    """The host path of the image's /exports/hostfs directory (inside the
    checkout, symlinks resolved inside the rootfs), or None."""


def _read_text(rootfs: Path, path: str) -> str | None:
    from skiff.runtime.specgen.rootfs import read_file

    try:
        raw = read_file(rootfs, path, MAX_TEMPLATE_SIZE)
    except OSError as exc:
        raise TemplateError(
            f"cannot read the image's {path}: {exc.strerror or exc}",
            f"it must be a regular file of at most {MAX_TEMPLATE_SIZE} bytes",
        ) from exc
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise TemplateError(f"the image's {path} is not UTF-8 text: {exc}") from exc


def read_exports(rootfs: Path) -> Exports:
    """What the checked-out image at ``rootfs`` exports (see the module docstring)."""
    from skiff.runtime.specgen.rootfs import is_dir, resolve

    manifest_text = _read_text(rootfs, f"{EXPORTS}/{MANIFEST}")
    manifest = parse_manifest(manifest_text.encode()) if manifest_text is not None else Manifest()
    hostfs: Path | None = None
    hostfs_path = f"{EXPORTS}/{HOSTFS}"
    kind = is_dir(rootfs, hostfs_path)
    if kind is False:
        raise TemplateError(f"the image's {hostfs_path} is not a directory")
    if kind is True:
        hostfs = rootfs / resolve(rootfs, hostfs_path).path.lstrip("/")
    return Exports(
        config_template=_read_text(rootfs, f"{EXPORTS}/{CONFIG_TEMPLATE}"),
        service_template=_read_text(rootfs, f"{EXPORTS}/{SERVICE_TEMPLATE}"),
        tmpfiles_template=_read_text(rootfs, f"{EXPORTS}/{TMPFILES_TEMPLATE}"),
        manifest=manifest,
        hostfs=hostfs,
    )


def render_config(template: str, values: Mapping[str, str]) -> dict[str, object]:
    """The OCI config from ``config.json.template``: substituted, then parsed."""
    what = f"{EXPORTS}/{CONFIG_TEMPLATE}"
    text = substitute(template, values, what=what)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TemplateError(
            f"the image's {what} is not JSON after substitution: {exc}",
            "fix the template in the image (quote substituted strings)",
        ) from exc
    if not isinstance(data, dict):
        raise TemplateError(f"the image's {what} is not a JSON object")
    return data
