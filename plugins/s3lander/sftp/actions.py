"""What happens to a source file after a verified landing: archive, delete, or leave it.

Small strategy classes chosen by name from the source config (``post_action``). Each one
also handles the file's companions (marker, checksum sidecar), so the inbox is left clean.
"""

from __future__ import annotations

import posixpath
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from s3lander.sftp.config import SftpSource


def archive_path(archive_dir: str, day: date, rel_path: str, attempt: int = 0) -> str:
    """``<archive_dir>/YYYY-MM-DD/<rel_path>``; ``attempt`` n > 0 adds ``.n`` when the name is taken."""
    target = posixpath.join(archive_dir, day.isoformat(), rel_path)
    return target if attempt == 0 else f"{target}.{attempt}"


class PostAction:
    name: ClassVar[str] = ""

    def __init__(self, source: SftpSource) -> None:
        self.source = source

    async def apply(self, sftp: Any, rel_paths: list[str], day: date) -> list[str]:
        """Apply to the data file and its companions; returns what was done, for the log."""
        raise NotImplementedError


class LeaveAction(PostAction):
    name = "leave"

    async def apply(self, sftp: Any, rel_paths: list[str], day: date) -> list[str]:
        return []


class DeleteAction(PostAction):
    name = "delete"

    async def apply(self, sftp: Any, rel_paths: list[str], day: date) -> list[str]:
        done = []
        for rel in rel_paths:
            await sftp.remove(posixpath.join(self.source.inbox, rel))
            done.append(f"deleted {rel}")
        return done


class ArchiveAction(PostAction):
    name = "archive"

    async def apply(self, sftp: Any, rel_paths: list[str], day: date) -> list[str]:
        done = []
        for rel in rel_paths:
            src = posixpath.join(self.source.inbox, rel)
            for attempt in range(1000):
                target = archive_path(self.source.archive_dir, day, rel, attempt)
                if not await sftp.exists(target):
                    break
            await sftp.makedirs(posixpath.dirname(target), exist_ok=True)
            await sftp.rename(src, target)
            done.append(f"archived {rel} -> {target}")
        return done


POST_ACTIONS: dict[str, type[PostAction]] = {c.name: c for c in (ArchiveAction, DeleteAction, LeaveAction)}


def post_action_for(source: SftpSource) -> PostAction:
    return POST_ACTIONS[source.post_action](source)
