"""KinesisStreamHook: the Kinesis side of the streaming pattern (list shards, iterators, GetRecords).

The boto3 client comes from the amazon provider's ``KinesisHook`` (every auth option of an
``aws`` connection works; ``endpoint_url`` in its extra points it at a local server). The
hook implements the reader's ``ShardSource``: it retries throttled calls with backoff and
turns an expired iterator into ``IteratorExpired`` so the reader resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from datetime import timezone
from functools import cached_property
from typing import Any

from s3lander.stream.checkpoint import ShardInfo
from s3lander.stream.events import StreamRecord
from s3lander.stream.reader import IteratorExpired, RecordsPage

log = logging.getLogger(__name__)

DEFAULT_KINESIS_CONN_ID = "kinesis_default"


class KinesisStreamHook:
    """Reads one Kinesis data stream.

    :param stream_name: the stream to read
    :param aws_conn_id: Airflow ``aws`` connection of the stream's account (``kinesis_default``)
    :param max_attempts: attempts of a throttled call (``ProvisionedThroughputExceeded``) before failing
    """

    def __init__(self, *, stream_name: str, aws_conn_id: str = DEFAULT_KINESIS_CONN_ID, max_attempts: int = 8,
                 backoff_s: float = 0.2) -> None:
        self.stream_name = stream_name
        self.aws_conn_id = aws_conn_id
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.calls = 0

    @cached_property
    def client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook
        from botocore.config import Config

        hook = KinesisHook(aws_conn_id=self.aws_conn_id)
        cfg = hook.config.merge(Config(retries={"max_attempts": 3, "mode": "standard"}, tcp_keepalive=True))
        return hook.get_client_type(region_name=hook.region_name, config=cfg)

    def _call(self, method: str, **kwargs: Any) -> Any:
        fn = getattr(self.client, method)
        throttled = (self.client.exceptions.ProvisionedThroughputExceededException,
                     self.client.exceptions.LimitExceededException)
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            self.calls += 1
            try:
                return fn(**kwargs)
            except throttled:
                if attempt == self.max_attempts:
                    raise
                log.warning("Kinesis %s on %s throttled (attempt %d); retrying in %.1f s", method,
                            self.stream_name, attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    # --- ShardSource --------------------------------------------------------------------
    def list_shards(self) -> list[ShardInfo]:
        """Every shard still in the stream, open and closed (parents within retention)."""
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = self._call("list_shards", **kwargs)
            shards.extend(ShardInfo.from_api(s) for s in page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def shard_iterator(self, shard_id: str, *, after: str | None = None, at: str | None = None) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id}
        if at is not None:
            kwargs.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=at)
        elif after is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        return self._call("get_shard_iterator", **kwargs)["ShardIterator"]

    def get_records(self, shard_id: str, iterator: str, limit: int) -> RecordsPage:
        try:
            resp = self._call("get_records", ShardIterator=iterator, Limit=limit)
        except self.client.exceptions.ExpiredIteratorException as e:
            raise IteratorExpired(str(e)) from e
        records = [StreamRecord(shard_id=shard_id, sequence=r["SequenceNumber"], partition_key=r["PartitionKey"],
                                arrival=r["ApproximateArrivalTimestamp"].astimezone(timezone.utc), data=r["Data"])
                   for r in resp.get("Records", [])]
        children = [ShardInfo(shard_id=c["ShardId"], parents=tuple(c.get("ParentShards", [])))
                    for c in resp.get("ChildShards", [])]
        return RecordsPage(records=records, next_iterator=resp.get("NextShardIterator"),
                           millis_behind=resp.get("MillisBehindLatest"), child_shards=children)

