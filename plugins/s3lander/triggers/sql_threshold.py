"""SqlRowThresholdTrigger: waits in the triggerer until a table has N rows past a watermark.

Counts ``COUNT(*) WHERE watermark > last`` every ``poke_seconds`` (the query runs in a
worker thread through the connection's Airflow DB-API hook, with bound parameters) and
fires once the count reaches ``threshold``. While it waits it holds no worker slot and no
source connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from s3lander.landing.intervals import as_utc
from s3lander.sql.queries import count_query, window_predicate


def count_new_rows(conn_id: str, table: str, watermark: str, since: str | None) -> int:
    """Rows of ``table`` with ``watermark > since`` (all rows when nothing landed yet)."""
    from airflow.sdk import BaseHook

    q = count_query(table, window_predicate(watermark, as_utc(since) if since else None, None,
                                            start_inclusive=False))
    row = BaseHook.get_connection(conn_id).get_hook().get_first(q.sql, parameters=q.params or None)
    return int(row[0]) if row else 0


class SqlRowThresholdTrigger(BaseTrigger):
    """Fires ``{"status": "ready", "count": n}`` once ``n >= threshold`` new rows exist."""

    def __init__(self, *, conn_id: str, table: str, watermark: str, since: str | None, threshold: int,
                 poke_seconds: float = 60.0) -> None:
        super().__init__()
        self.conn_id, self.table, self.watermark = conn_id, table, watermark
        self.since, self.threshold, self.poke_seconds = since, threshold, poke_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"conn_id": self.conn_id, "table": self.table, "watermark": self.watermark, "since": self.since,
                 "threshold": self.threshold, "poke_seconds": self.poke_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                n = await asyncio.to_thread(count_new_rows, self.conn_id, self.table, self.watermark, self.since)
            except Exception as e:  # noqa: BLE001 - the sensor turns it into a task failure with the message
                yield TriggerEvent({"status": "error", "message": f"{type(e).__name__}: {e}"})
                return
            self.log.info("%s: %s new row(s) after %s (threshold %s)", self.table, n, self.since, self.threshold)
            if n >= self.threshold:
                yield TriggerEvent({"status": "ready", "count": n, "since": self.since})
                return
            await asyncio.sleep(self.poke_seconds)
