"""SftpCompleteFilesTrigger: polls an SFTP inbox in the triggerer until complete new files appear.

Runs in the triggerer's event loop (asyncssh is asyncio-native), so waiting for a partner's
delivery holds no worker slot. It fires when at least one file matches the source's
patterns, is complete (marker present, or size and mtime settled), was modified before the
run's interval end, and is not one of the files the sensor already knew to be landed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class SftpCompleteFilesTrigger(BaseTrigger):
    """:param source: the source's settings (``SftpSource.to_dict()``)
    :param landed: ``[path, size, mtime]`` of inbox files the ledger already holds (ignored)
    :param not_after: epoch seconds; files modified at or after it belong to a later interval
    :param poke_seconds: seconds between listings
    """

    def __init__(self, *, source: dict[str, Any], landed: list[list[Any]] | None = None,
                 not_after: float | None = None, poke_seconds: float = 30.0) -> None:
        super().__init__()
        self.source, self.landed, self.not_after, self.poke_seconds = source, landed or [], not_after, poke_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"source": self.source, "landed": self.landed, "not_after": self.not_after,
                 "poke_seconds": self.poke_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from s3lander.hooks.sftp_fast import FastSftpHook, SftpError, SftpPool, list_files
        from s3lander.sftp.config import SftpSource
        from s3lander.sftp.rules import SettleTracker, discover

        src = SftpSource.from_dict(self.source["name"], {k: v for k, v in self.source.items()
                                                          if k not in {"name", "extra"}})
        landed = {(p, int(s), float(m)) for p, s, m in self.landed}
        tracker = SettleTracker(src.settle_seconds)
        target = await FastSftpHook(src.conn_id).atarget()
        while True:
            try:
                async with SftpPool(target, 1) as pool:
                    while True:
                        listing = await list_files(pool.primary, src.inbox, recursive=src.recursive)
                        found = discover([f for f in listing if f.signature not in landed], patterns=src.patterns,
                                         exclude=src.exclude, markers=src.markers, checksums=src.checksums,
                                         tracker=tracker, now=time.time(), not_after=self.not_after)
                        if found.ready:
                            yield TriggerEvent({"status": "ready", "files": len(found.ready),
                                                "sample": [c.file.path for c in found.ready[:20]]})
                            return
                        self.log.info("%s: %d complete new file(s), %d still settling; next look in %.0f s",
                                      src.name, 0, len(found.waiting), self.poke_seconds)
                        await asyncio.sleep(self.poke_seconds)
            except SftpError as e:
                if "host key" in str(e):
                    yield TriggerEvent({"status": "error", "message": str(e)})
                    return
                self.log.warning("%s: listing failed, retrying in %.0f s: %s", src.name, self.poke_seconds, e)
                await asyncio.sleep(self.poke_seconds)
