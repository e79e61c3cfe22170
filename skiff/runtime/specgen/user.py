"""Who the container process runs as: ``--user`` resolved in the image.

The rules are runc's ``GetExecUser`` as podman 4 applies them (checked
against ``podman create --user ...`` config.json files):

- no user: uid 0, gid 0, HOME of uid 0's entry;
- ``NAME``: its passwd entry; ``UID``: the entry with that uid, or just the
  number (gid 0, HOME "/") when there is none; an unknown name is an error;
- ``:GROUP`` (name or number) replaces the primary group;
- additional groups, in podman's order: the primary gid (when a user was
  given at all), the ``--group-add`` entries (names or numbers), then —
  unless a group was given — the /etc/group entries that list the user's
  name (for no user: uid 0's name); duplicates dropped.

/etc/passwd and /etc/group are read through ``rootfs.read_file``: inside the
rootfs, never following a symlink out of it (CVE-2024-9676).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import ContainerError, UsageError
from skiff.runtime.specgen import rootfs as rootfs_paths

MAX_ID = 2**32 - 2
"""uid/gid 4294967295 is (uid_t)-1, "no change" to setresuid; refused."""
MAX_DB_SIZE = 16 << 20
"""/etc/passwd and /etc/group larger than this are refused, not read."""


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str
    name: str | None = None
    """The passwd name, when the user was found there."""


def _id(text: str) -> int | None:
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def parse_passwd(data: bytes) -> list[PasswdEntry]:
    """Entries of an /etc/passwd; malformed lines are skipped (as libc does)."""
    entries = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 4:
            continue
        uid, gid = _id(fields[2]), _id(fields[3])
        if uid is None or gid is None:
            continue
        home = fields[5] if len(fields) > 5 else ""
        entries.append(PasswdEntry(fields[0], uid, gid, home))
    return entries


def parse_group(data: bytes) -> list[GroupEntry]:
    """Entries of an /etc/group; malformed lines are skipped."""
    entries = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 3:
            continue
        gid = _id(fields[2])
        if gid is None:
            continue
        members = tuple(m for m in (fields[3].split(",") if len(fields) > 3 else []) if m)
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def split_user_spec(spec: str) -> tuple[str, str | None]:
    """``user[:group]`` → (user, group or None); refuses empty halves."""
    user, sep, group = spec.partition(":")
    if sep and not group:
        raise UsageError(f"invalid user {spec!r}: empty group after ':'", "use USER[:GROUP]")
    if not user and sep:
        raise UsageError(f"invalid user {spec!r}: empty user before ':'", "use USER[:GROUP]")
    if any(c.isspace() or c in "/\0" for c in spec):
        raise UsageError(f"invalid user {spec!r}", "use a name or number: USER[:GROUP]")
    for part in (user, group or ""):
        if part.isdigit() and _id(part) is None:
            raise UsageError(
                f"invalid user {spec!r}: {part} is out of range", f"ids go up to {MAX_ID}"
            )
    return user, (group if sep else None)


def validate_group_add(group: str) -> None:
    if not group or any(c.isspace() or c in ":/\0" for c in group):
        raise UsageError(f"invalid --group-add value {group!r}", "use a group name or number")
    if group == "keep-groups":
        raise UsageError(
            "--group-add keep-groups is not supported",
            "it only applies to rootless containers run with crun",
        )
    if group.isdigit() and _id(group) is None:
        raise UsageError(f"invalid --group-add value {group!r}: out of range")


def _read_db(rootfs: Path, path: str) -> bytes | None:
    try:
        return rootfs_paths.read_file(rootfs, path, MAX_DB_SIZE)
    except OSError as exc:
        raise ContainerError(
            f"cannot read {path} in the container's root filesystem: {exc.strerror or exc}",
            "the image's user database must be a regular file",
        ) from exc


def _dedup(ids: Sequence[int]) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for gid in ids:
        seen.setdefault(gid, None)
    return tuple(seen)


def resolve_user(rootfs: Path, user_spec: str, group_add: Sequence[str] = ()) -> ExecUser:
    """Resolve ``--user`` (or the image's ``User``) and ``--group-add``."""
    user, group = split_user_spec(user_spec) if user_spec else ("", None)
    for g in group_add:
        validate_group_add(g)
    passwd_data = _read_db(rootfs, "/etc/passwd")
    passwd = parse_passwd(passwd_data) if passwd_data is not None else []
    groups: list[GroupEntry] | None = None

    def group_db() -> list[GroupEntry]:
        nonlocal groups
        if groups is None:
            data = _read_db(rootfs, "/etc/group")
            groups = parse_group(data) if data is not None else []
        return groups

    def lookup_group(text: str, what: str) -> int:
        numeric = _id(text)
        if numeric is not None:
            return numeric
        for entry in group_db():
            if entry.name == text:
                return entry.gid
        raise ContainerError(
            f"unable to find group {text}: no matching entries in group file",
            f"add the group to the image's /etc/group or give {what} as a number",
        )

    entry: PasswdEntry | None = None
    if not user:
        entry = next((e for e in passwd if e.uid == 0), None)
        uid, gid = 0, 0
    else:
        entry = next((e for e in passwd if e.name == user), None)
        numeric = _id(user)
        if entry is None and numeric is not None:
            entry = next((e for e in passwd if e.uid == numeric), None)
            if entry is None:
                uid, gid = numeric, 0
        elif entry is None:
            raise ContainerError(
                f"unable to find user {user}: no matching entries in passwd file",
                "use a user of the image's /etc/passwd, or a numeric uid",
            )
        if entry is not None:
            uid, gid = entry.uid, entry.gid
    home = entry.home if entry is not None and entry.home else "/"

    additional: list[int] = []
    if group is not None:
        gid = lookup_group(group, "the group")
    if user:
        additional.append(gid)
    additional.extend(lookup_group(g, "--group-add") for g in group_add)
    if group is None and entry is not None:
        additional.extend(g.gid for g in group_db() if entry.name in g.members)
    return ExecUser(
        uid=uid,
        gid=gid,
        additional_gids=_dedup(additional),
        home=home,
        name=entry.name if entry is not None else None,
    )
