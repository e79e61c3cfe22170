"""Renaming a container: its record and its storage container, together.

The name lives twice — in the runtime's record and in the storage
container (``skiff mount``/``diff``/``export`` find containers there) — so
both change in one database transaction, under the container's lock. A
running container keeps running; its /etc/hosts and ``.containerenv``
show the new name from its next start, as in podman.
"""

from __future__ import annotations

import re

from skiff.errors import NameInUse, UsageError
from skiff.runtime.create import NAME_RE_TEXT
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container


def rename(rt: Runtime, container: Container, new_name: str) -> Container:
    """Give ``container`` the name ``new_name`` (podman's checks and messages)."""
    if not re.fullmatch(NAME_RE_TEXT, new_name):
        raise UsageError(
            f"names must match {NAME_RE_TEXT}: invalid argument",
            f"{new_name!r} is not a valid container name",
        )
    with rt.lock(container.id):
        container = rt.records.reload(container)
        if container.name == new_name:
            return container
        other = rt.records.find(new_name)
        storage_other = rt.store.containers.find(new_name)
        if (other is not None and other.id != container.id) or (
            storage_other is not None and storage_other.id != container.id
        ):
            raise NameInUse(
                f"renaming container {container.id}: name {new_name} already in use, "
                f"cannot rename container {container.id}: container already exists",
                "choose another name, or remove that container",
            )
        with rt.store.db.write():
            rt.records.rename(container.id, new_name)
            if rt.store.containers.find(container.id) is not None:
                rt.store.containers.rename(container.id, new_name)
        return rt.records.reload(container)
