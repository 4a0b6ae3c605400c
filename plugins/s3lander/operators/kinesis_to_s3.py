"""KinesisToS3Operator: one micro-batch of a Kinesis stream -> S3, exactly once, partitioned by event time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from s3lander.hooks.kinesis_stream import DEFAULT_KINESIS_CONN_ID, KinesisStreamHook
from s3lander.landing.intervals import Interval, IntervalError
from s3lander.operators.base import LandingOperator
from s3lander.progress import Progress
from s3lander.stream.batching import BatchLimits, batch_id, get_boundary
from s3lander.stream.checkpoint import BatchPlan, Checkpoint, CheckpointError
from s3lander.stream.events import InvalidEvent, StreamRecord, enrich, error_row, parse_event
from s3lander.stream.reader import BatchReader, ReplayReader, prefetch
from s3lander.stream.routing import ERRORS_DATASET, Router, get_router, partition_hour

if TYPE_CHECKING:
    from airflow.sdk import Context

    from s3lander.landing.publisher import IntervalPublisher, ObjectStore
    from s3lander.landing.writer import PartWriter

CHECKPOINT_STATE = "checkpoint.json"
HOUR = timedelta(hours=1)


class StreamState:
    """The stream's durable state on S3: ``checkpoint.json`` and one ``batch-<id>.json`` ledger per batch."""

    def __init__(self, store: ObjectStore, bucket: str, state_key: Any, stream: str) -> None:
        self.store, self.bucket, self._key, self.stream = store, bucket, state_key, stream

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def checkpoint(self) -> Checkpoint:
        raw = self.store.get_bytes(self.bucket, self._key(CHECKPOINT_STATE))
        if raw is None:
            return Checkpoint(stream=self.stream)
        cp = Checkpoint.from_json(raw, source=self.uri(CHECKPOINT_STATE))
        if cp.stream != self.stream:
            raise CheckpointError(f"{self.uri(CHECKPOINT_STATE)} belongs to stream {cp.stream!r}, not {self.stream!r}")
        return cp

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.store.put_bytes(self.bucket, self._key(CHECKPOINT_STATE), checkpoint.to_json())

    def ledger(self, bid: str) -> BatchPlan | None:
        name = f"batch-{bid}.json"
        raw = self.store.get_bytes(self.bucket, self._key(name))
        return None if raw is None else BatchPlan.from_json(raw, source=self.uri(name))

    def save_ledger(self, plan: BatchPlan) -> None:
        self.store.put_bytes(self.bucket, self._key(f"batch-{plan.batch_id}.json"), plan.to_json())


class PartitionedOutput:
    """Routes rows to one part writer per (dataset, event hour), each publishing its own partition.

    Keys: ``raw/<source>/<dataset>/dt=YYYY-MM-DD/hour=HH/batch=<batch id>/part-NNNNN.<ext>``: the
    event hour is the partition, the batch folder scopes this run's parts and manifest in it,
    so micro-batches that share an hour never touch each other's objects.
    """

    def __init__(self, *, make_publisher: Any, formats: dict[str, Any], schemas: dict[str, Any],
                 max_rows: int, max_bytes: int, flush_rows: int) -> None:
        self.make_publisher, self.formats, self.schemas = make_publisher, formats, schemas
        self.max_rows, self.max_bytes, self.flush_rows = max_rows, max_bytes, flush_rows
        self.publishers: dict[tuple[str, datetime], IntervalPublisher] = {}
        self.writers: dict[tuple[str, datetime], PartWriter] = {}
        self.pending: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
        self.rows: dict[str, int] = {}

    def add(self, dataset: str, hour: datetime, row: dict[str, Any]) -> None:
        key = (dataset, hour)
        buf = self.pending.setdefault(key, [])
        buf.append(row)
        self.rows[dataset] = self.rows.get(dataset, 0) + 1
        if len(buf) >= self.flush_rows:
            self._flush(key)

    def _flush(self, key: tuple[str, datetime]) -> None:
        rows = self.pending.get(key)
        if not rows:
            return
        if key not in self.writers:
            dataset, hour = key
            pub = self.make_publisher(dataset, Interval(hour, hour + HOUR))
            self.publishers[key] = pub
            self.writers[key] = pub.part_writer(self._format(dataset), max_rows=self.max_rows,
                                                max_bytes=self.max_bytes, schema=self.schemas.get(dataset))
        self.writers[key].write(self._batch(key[0], rows))
        self.pending[key] = []

    def _format(self, dataset: str) -> Any:
        return self.formats.get(dataset) or self.formats["*"]

    def _batch(self, dataset: str, rows: list[dict[str, Any]]) -> Any:
        schema = self.schemas.get(dataset)
        if schema is None or self._format(dataset).name != "parquet":
            return rows
        import pyarrow as pa

        # column by column: several times faster than RecordBatch.from_pylist for nested rows
        return pa.RecordBatch.from_arrays([pa.array([r[f.name] for r in rows], type=f.type) for f in schema],
                                          schema=schema)

    def close(self) -> None:
        for key in sorted(self.pending):
            self._flush(key)
        for w in self.writers.values():
            w.close()

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()
        for p in self.publishers.values():
            p.close()

    def publish(self, *, extra: dict[str, Any], watermark: Any) -> list[str]:
        """Publish every partition (manifest last in each); return the manifests' S3 URIs."""
        from s3lander.landing.manifest import schema_of

        manifests = []
        for key in sorted(self.writers):
            writer, pub = self.writers[key], self.publishers[key]
            schema = writer.schema if writer.schema is not None else self.schemas.get(key[0])
            pub.publish(writer.files, fmt=self._format(key[0]).name,
                        schema=schema_of(schema) if schema is not None else [], watermark=watermark, extra=extra)
            manifests.append(f"s3://{pub.bucket}/{pub.manifest_key}")
        return manifests


class KinesisToS3Operator(LandingOperator):
    """Land one micro-batch of a Kinesis data stream on S3, exactly once.

    Reads every shard after its checkpoint up to the batch boundary (the run's interval end on
    the records' arrival time, or the shard tips with ``boundary="drain"``) and the count/byte
    limits, enriches and validates each event, routes valid events by country and bad records
    to the errors dataset with the reason, writes parts partitioned by event hour, and publishes
    them through the landing contract. The per-shard checkpoint (``_state/checkpoint.json`` in
    ``raw/<source>/<stream>/``) advances only after everything the batch covers is published;
    a rerun of a batch replays exactly its recorded ranges (see ``s3lander.stream.checkpoint``).

    :param stream_name: Kinesis stream (templated)
    :param kinesis_conn_id: Airflow ``aws`` connection of the stream (``kinesis_default``)
    :param boundary: ``arrival`` (records that arrived before the interval end) or ``drain`` (to the tips) (templated)
    :param max_records: stop the batch after this many records; the rest waits for the next run (templated)
    :param max_bytes: stop the batch after this many bytes of record data (templated)
    :param part_max_rows: roll to a new part after this many rows (templated)
    :param part_max_bytes: roll to a new part after about this many bytes (templated)
    :param file_format: ``parquet`` or ``jsonl.gz`` for the session datasets; errors are always ``jsonl.gz``
    :param router: routing strategy name (``country``: USA vs international; ``single``)
    :param router_options: options of the router (e.g. ``{"home_countries": ["USA"]}``)
    :param errors_dataset: dataset of malformed records
    :param per_shard_chunk: records taken from one shard per round-robin turn (GetRecords asks for up to 10,000)
    :param prefetch_chunks: chunks read ahead on a background thread while earlier ones are landed
    :param event_driven: the run has no data interval (asset-triggered): use a 1-second batch window
        at the run's ``run_after`` as the batch identity, and drain the shards
    """

    template_fields: Sequence[str] = ("source", "stream_name", "boundary", "max_records", "max_bytes",
                                      "part_max_rows", "part_max_bytes", "file_format")
    ui_color = "#ffd8a8"

    def __init__(self, *, stream_name: str, source: str = "ecommerce",
                 kinesis_conn_id: str = DEFAULT_KINESIS_CONN_ID, boundary: str = "arrival",
                 max_records: int | str = 500_000, max_bytes: int | str = 256 * 1024 * 1024,
                 part_max_rows: int | str = 1_000_000, part_max_bytes: int | str = 64 * 1024 * 1024,
                 file_format: str = "parquet", router: str = "country", router_options: dict[str, Any] | None = None,
                 errors_dataset: str = ERRORS_DATASET, per_shard_chunk: int = 1000, flush_rows: int = 5000,
                 event_driven: bool = False, prefetch_chunks: int = 4, **kwargs: Any) -> None:
        super().__init__(source=source, **kwargs)
        self.stream_name = stream_name
        self.kinesis_conn_id = kinesis_conn_id
        self.boundary = boundary
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.part_max_rows = part_max_rows
        self.part_max_bytes = part_max_bytes
        self.file_format = file_format
        self.router_name = router
        self.router_options = router_options or {}
        self.errors_dataset = errors_dataset
        self.per_shard_chunk = per_shard_chunk
        self.flush_rows = flush_rows
        self.event_driven = event_driven
        self.prefetch_chunks = prefetch_chunks

    @cached_property
    def kinesis(self) -> KinesisStreamHook:
        return KinesisStreamHook(stream_name=self.stream_name, aws_conn_id=self.kinesis_conn_id)

    @cached_property
    def router(self) -> Router:
        return get_router(self.router_name, **self.router_options)

    def datasets(self) -> list[str]:
        return [*self.router.datasets(), self.errors_dataset]

    def interval(self, context: Context) -> Interval:
        try:
            return super().interval(context)
        except IntervalError:
            run = context.get("dag_run")
            if not self.event_driven or run is None or getattr(run, "run_after", None) is None:
                raise
            end = run.run_after.astimezone(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
            return Interval(end - timedelta(seconds=1), end)

    def stream_state(self) -> StreamState:
        loc = self.landing.location(self.source, self.stream_name)
        return StreamState(self.landing.store, loc.bucket, loc.state_key, self.stream_name)

    def execute(self, context: Context) -> dict[str, Any]:
        interval = self.interval(context)
        bid = batch_id(interval)
        state = self.stream_state()
        shards = self.kinesis.list_shards()
        # A claim left by a run that failed for good (its retries exhausted, never cleared) would
        # hold its records back forever: publish it first, exactly as its own run would have.
        for other, orphan in sorted(state.checkpoint().pending.items()):
            if other != bid:
                self.log.warning("Batch %s (run %s) was claimed but never published: publishing it first",
                                 other, orphan.run_id)
                self._land_batch(context, state, ReplayReader(self.kinesis, orphan, shards), orphan)

        plan = state.ledger(bid) or state.checkpoint().pending.get(bid)
        if plan is not None:
            self.log.info("Batch %s of stream %s was planned before (%s, %d records): replaying exactly its ranges",
                          bid, self.stream_name, plan.status, plan.records)
            return self._land_batch(context, state, ReplayReader(self.kinesis, plan, shards), plan)
        boundary_name = "drain" if self.event_driven else self.boundary
        limits = BatchLimits.from_params(max_records=self.max_records, max_bytes=self.max_bytes,
                                         per_shard_chunk=self.per_shard_chunk)
        self.log.info("Batch %s of stream %s: reading %d shard(s) after the checkpoint, boundary %s, "
                      "limits %d records / %d bytes", bid, self.stream_name, len(shards), boundary_name,
                      limits.max_records, limits.max_bytes)
        reader = BatchReader(self.kinesis, shards, state.checkpoint(), boundary=get_boundary(boundary_name, interval),
                             limits=limits)
        return self._land_batch(context, state, reader, None, interval=interval)

    def _land_batch(self, context: Context, state: StreamState, reader: BatchReader | ReplayReader,
                    plan: BatchPlan | None, *, interval: Interval | None = None) -> dict[str, Any]:
        """Read, write parts, claim (a new plan), publish, write the ledger, advance the checkpoint."""
        interval = plan.interval if plan is not None else interval
        assert interval is not None
        bid = batch_id(interval)
        output = self._output(context, bid)
        progress = Progress(f"stream {self.stream_name} batch {bid}", unit="records", logger=self.log)
        errors = 0
        chunks = prefetch(reader, depth=self.prefetch_chunks)
        try:
            for chunk in chunks:
                errors += self._land(chunk, output, processed_at=interval.end,
                                     batch_hour=partition_hour(interval.start))
                progress.add(len(chunk), nbytes=sum(r.size for r in chunk))
            output.close()
        except BaseException:
            chunks.close()  # stop the reading thread
            output.abort()
            raise
        progress.done()

        if plan is None:
            assert isinstance(reader, BatchReader)
            plan = reader.plan(bid, interval, run_id=context["run_id"])
            if reader.limited:
                self.log.info("Batch %s stopped at the %s limit; the rest waits for the next run", bid, reader.limited)
            # Claim BEFORE publishing: from here a rerun replays these exact ranges.
            state.save_checkpoint(state.checkpoint().claim(plan))
        extra = {"stream": self.stream_name, "batch_id": bid, "batch_interval": plan.interval.to_dict(),
                 "boundary": plan.boundary, "shard_ranges": {k: v.to_dict() for k, v in sorted(plan.ranges.items())}}
        manifests = output.publish(extra=extra, watermark=bid)
        plan.status, plan.outputs = "published", sorted(manifests)
        state.save_ledger(plan)
        state.save_checkpoint(state.checkpoint().advance(plan))
        summary = {"batch_id": bid, "records": plan.records, "errors": errors, "rows": dict(output.rows),
                   "manifests": plan.outputs, "checkpoint": state.uri(CHECKPOINT_STATE)}
        self.log.info("Published batch %s: %s", bid, json.dumps(summary, sort_keys=True))
        return summary

    def _output(self, context: Context, bid: str) -> PartitionedOutput:
        from s3lander.landing.formats import get_format
        from s3lander.stream.events import session_schema

        run_id = context["run_id"]

        def make_publisher(dataset: str, hour: Interval) -> IntervalPublisher:
            location = self.landing.location(self.source, dataset)
            return self.landing.publisher(location, hour, run_id, subpartition=f"batch={bid}")

        sessions = get_format(self.file_format)
        schemas = {ds: session_schema() for ds in self.router.datasets()} if sessions.name == "parquet" else {}
        return PartitionedOutput(make_publisher=make_publisher,
                                 formats={"*": sessions, self.errors_dataset: get_format("jsonl.gz")},
                                 schemas=schemas, max_rows=int(self.part_max_rows),
                                 max_bytes=int(self.part_max_bytes), flush_rows=self.flush_rows)

    def _land(self, chunk: list[StreamRecord], output: PartitionedOutput, *, processed_at: datetime,
              batch_hour: datetime) -> int:
        """Validate, enrich and route one chunk; return how many records were errors.

        Valid events land in their event hour; error records (which may have no usable event
        time) in the hour of the batch's interval start.
        """
        errors = 0
        for rec in chunk:
            try:
                event = parse_event(rec.data)
            except InvalidEvent as e:
                errors += 1
                output.add(self.errors_dataset, batch_hour, error_row(rec, str(e), processed_at))
                continue
            output.add(self.router.route(event), partition_hour(event["event_timestamp"]),
                       enrich(event, rec, processed_at))
        return errors

