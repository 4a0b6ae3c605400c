"""SqlRowThresholdSensor: wait until a table has N rows newer than its last landed watermark.

The last watermark is durable state on S3 (the landed dataset's ``_state/latest.json``,
written by the publisher), not an Airflow Variable, so it moves only when rows really landed.
Deferrable by default: the waiting happens in ``SqlRowThresholdTrigger`` in the triggerer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from s3lander import settings
from s3lander.hooks.landing import LandingHook
from s3lander.sql.tables import TableConfig
from s3lander.triggers.sql_threshold import SqlRowThresholdTrigger, count_new_rows

if TYPE_CHECKING:
    from airflow.sdk import Context


class SqlRowThresholdSensor(BaseSensorOperator):
    """Succeeds once ``table.threshold`` rows past the last landed watermark exist.

    :param conn_id: Airflow connection of the source database (templated)
    :param table: the table's settings, a ``TableConfig.to_dict()`` mapping (templated, mappable)
    :param source: landing source name (where the dataset's watermark state lives) (templated)
    :param dataset: landed dataset whose watermark counts (default the table's threshold dataset)
    :param poke_seconds: how often to count while waiting
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot
    """

    template_fields: Sequence[str] = ("conn_id", "table", "source", "dataset")

    def __init__(self, *, conn_id: str = "mysql_source", table: dict[str, Any], source: str,
                 dataset: str | None = None, aws_conn_id: str = settings.DEFAULT_AWS_CONN_ID,
                 bucket: str | None = None, poke_seconds: float = 60.0, deferrable: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", poke_seconds)
        super().__init__(**kwargs)
        self.conn_id, self.table, self.source, self.dataset = conn_id, table, source, dataset
        self.aws_conn_id, self.bucket = aws_conn_id, bucket
        self.poke_seconds, self.deferrable = poke_seconds, deferrable

    def _cfg(self) -> TableConfig:
        cfg = TableConfig.from_dict(self.table)
        if cfg.threshold is None or not cfg.watermark:
            raise ValueError(f"table {cfg.name!r} has no `threshold:` (and watermark) in its config")
        return cfg

    def last_watermark(self, cfg: TableConfig) -> str | None:
        hook = LandingHook(aws_conn_id=self.aws_conn_id, bucket=self.bucket, caller=type(self).__name__)
        location = hook.location(self.source, self.dataset or cfg.threshold_dataset)
        state = hook.store.get_json(location.bucket, location.state_key("latest.json"))
        return (state or {}).get("watermark")

    def poke(self, context: Context) -> bool:
        cfg = self._cfg()
        since = self.last_watermark(cfg)
        n = count_new_rows(self.conn_id, cfg.table_ref, cfg.watermark, since)
        self.log.info("%s: %s new row(s) after watermark %s (threshold %s)", cfg.name, n, since, cfg.threshold)
        return n >= cfg.threshold

    def execute(self, context: Context) -> Any:
        if not self.deferrable or self.poke(context):
            return super().execute(context) if not self.deferrable else None
        cfg = self._cfg()
        self.defer(trigger=SqlRowThresholdTrigger(conn_id=self.conn_id, table=cfg.table_ref,
                                                  watermark=cfg.watermark, since=self.last_watermark(cfg),
                                                  threshold=cfg.threshold, poke_seconds=self.poke_seconds),
                   method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        event = event or {}
        if event.get("status") != "ready":
            raise RuntimeError(f"threshold trigger failed: {event.get('message', event)}")
        self.log.info("Threshold reached: %s new row(s) after %s", event.get("count"), event.get("since"))
