"""SftpCompleteFilesSensor: waits, deferred, until an SFTP source has complete files to land."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from s3lander.sftp.config import SftpSource


def skip_unselected(context: Context, name: str) -> None:
    """Skip when the run's ``sources`` param lists other sources only."""
    from airflow.sdk.exceptions import AirflowSkipException

    wanted = (context.get("params") or {}).get("sources") or []
    if wanted and name not in wanted:
        raise AirflowSkipException(f"source {name!r} not selected (sources={wanted})")


class SftpCompleteFilesSensor(BaseSensorOperator):
    """Succeeds when the source's inbox holds complete files not landed yet; otherwise defers.

    The first look happens in the worker (so a run with files waiting goes straight on);
    then the task defers to :class:`~s3lander.triggers.sftp_files.SftpCompleteFilesTrigger`,
    which polls from the triggerer without holding a worker slot, until ``timeout`` seconds
    after the interval end. With ``soft_fail=True`` a timeout skips the run's landing instead
    of failing it (nothing was delivered); an interval whose window closed long ago (backfill,
    rerun) with nothing new is skipped at once, leaving what it published untouched.

    :param source_name: the source in ``include/config/sftp_sources.yaml`` (templated)
    :param source_config: a source given inline instead
    :param aws_conn_id: connection of the landing bucket (to read the ledger)
    """

    template_fields: Sequence[str] = ("source_name",)
    ui_color = "#e8f6f3"

    def __init__(self, *, source_name: str, source_config: dict[str, Any] | None = None,
                 aws_conn_id: str = "aws_default", bucket: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_name, self.source_config = source_name, source_config
        self.aws_conn_id, self.bucket = aws_conn_id, bucket

    @cached_property
    def src(self) -> SftpSource:
        from s3lander.operators.sftp_to_s3 import SftpToS3Operator

        return SftpToS3Operator(task_id="_resolve", source_name=self.source_name,
                                source_config=self.source_config).src

    def execute(self, context: Context) -> Any:
        from s3lander.hooks.landing import LandingHook
        from s3lander.hooks.sftp_fast import FastSftpHook, list_files
        from s3lander.landing.intervals import interval_from_context
        from s3lander.sftp.ledger import LEDGER_NAME, Ledger
        from s3lander.sftp.rules import SettleTracker, discover

        src = self.src
        skip_unselected(context, src.name)
        interval = interval_from_context(context)
        landing = LandingHook(aws_conn_id=self.aws_conn_id, bucket=self.bucket, caller=type(self).__name__)
        loc = landing.location(src.name, src.dataset)
        ledger = Ledger.from_json(landing.store.get_bytes(loc.bucket, loc.state_key(LEDGER_NAME)))

        async def look() -> tuple[list[Any], list[list[Any]]]:
            async with FastSftpHook(src.conn_id).pool(1) as pool:
                listing = await list_files(pool.primary, src.inbox, recursive=src.recursive)
            landed = [f for f in listing if ledger.already_landed(f.path, f.size, f.mtime)]
            fresh = [f for f in listing if f not in landed]
            found = discover(fresh, patterns=src.patterns, exclude=src.exclude, markers=src.markers,
                             checksums=src.checksums, tracker=SettleTracker(src.settle_seconds), now=time.time(),
                             not_after=interval.end.timestamp())
            return found.ready, [list(f.signature) for f in landed]

        ready, landed = asyncio.run(look())
        if ready:
            self.log.info("%d complete file(s) to land, e.g. %s", len(ready), [c.file.path for c in ready[:5]])
            return len(ready)
        from airflow.sdk.exceptions import AirflowSkipException

        from s3lander.triggers.sftp_files import SftpCompleteFilesTrigger

        # Wait at most until `timeout` after the interval end: a backfill or rerun of an old
        # interval finds everything delivered before its end already there, so it does not wait.
        remaining = interval.end.timestamp() + self.timeout - time.time()
        if remaining <= 0:
            raise AirflowSkipException(f"no complete new files in {src.inbox!r} for {interval}; its waiting window "
                                       f"closed {timedelta(seconds=int(-remaining))} ago")
        self.log.info("No complete new files in %s yet; deferring (up to %s)", src.inbox,
                      timedelta(seconds=int(remaining)))
        self.defer(trigger=SftpCompleteFilesTrigger(source=src.to_dict(), landed=landed,
                                                    not_after=interval.end.timestamp(),
                                                    poke_seconds=self.poke_interval),
                   method_name="execute_complete", timeout=timedelta(seconds=remaining))
        return None

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> int:
        from airflow.sdk.exceptions import AirflowException

        if not event or event.get("status") != "ready":
            raise AirflowException(f"waiting for SFTP files failed: {(event or {}).get('message', event)}")
        self.log.info("%d complete file(s) appeared, e.g. %s", event["files"], event["sample"][:5])
        return int(event["files"])

    def poke(self, context: Context) -> bool:  # the sensor never pokes: execute() looks once, then defers
        raise NotImplementedError
