"""MySQL -> S3 against the real MariaDB and SeaweedFS servers: reruns, backfill, kill, schema
change, empty windows, exact types, key-range splitting, the threshold sensor/trigger, a DAG run."""

from __future__ import annotations

import asyncio
import datetime as dt
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from s3lander.operators.sql_to_s3 import (
    SourceSchemaError,
    SqlTableToS3Operator,
    plan_key_ranges,
    publish_key_ranges,
)
from s3lander.sql.tables import SplitConfig, TableConfig
from tests.integration.mysql.conftest import (
    START,
    ctx,
    list_keys,
    manifest,
    read_table,
    sql_rows,
    unique_source,
)

pytestmark = pytest.mark.integration
H = timedelta(hours=1)
ORDERS_CFG = TableConfig(name="orders", watermark="updated_at", primary_key=("orderNumber",))


def land(source: str, cfg: TableConfig, start: datetime, end: datetime, **kw: Any) -> dict[str, Any]:
    op = SqlTableToS3Operator(task_id=f"land_{cfg.name}", source=source, table=cfg.to_dict(), **kw)
    return op.execute(ctx(start, end, run_id=kw.pop("run_id", "manual__test")))


def source_keys(mariadb: Any, table: str, key: str, start: datetime, end: datetime) -> list[int]:
    rows = sql_rows(mariadb, f"SELECT {key} FROM {table} WHERE updated_at >= '{start:%Y-%m-%d %H:%M:%S}' "
                             f"AND updated_at < '{end:%Y-%m-%d %H:%M:%S}' ORDER BY 1")
    return [int(r[0]) for r in rows]


def test_rerun_three_times_gives_the_same_objects(seeded, s3):
    source, start = unique_source(), START + 10 * H
    objects = []
    for _ in range(3):
        out = land(source, ORDERS_CFG, start, start + H)
        m = manifest(s3, out["manifest"])
        prefix = out["manifest"].rsplit("/", 1)[0] + "/"
        objects.append(({f["key"]: f["sha256"] for f in m["files"]}, list_keys(s3, prefix), m["rows"]))
    assert objects[0] == objects[1] == objects[2]
    expected = source_keys(seeded, "orders", "orderNumber", start, start + H)
    assert objects[0][2] == len(expected) == 100
    landed = read_table(s3, m).column("orderNumber").to_pylist()
    assert sorted(landed) == expected


def test_backfill_48_hours_lands_every_row_once(seeded, s3):
    source = unique_source()
    landed: list[int] = []
    on_boundary = 0
    for hour in range(48):
        start = START + hour * H
        m = manifest(s3, land(source, ORDERS_CFG, start, start + H)["manifest"])
        assert m["extra"]["source_rows"] == m["rows"]
        t = read_table(s3, m)
        landed += t.column("orderNumber").to_pylist()
        on_boundary += sum(1 for ts in t.column("updated_at").to_pylist() if ts == start)
        assert all(start <= ts < start + H for ts in t.column("updated_at").to_pylist())
    expected = source_keys(seeded, "orders", "orderNumber", START, START + 48 * H)
    assert on_boundary == 48, "the seed puts one row exactly on every hour boundary"
    assert len(landed) == len(set(landed)), "a row landed twice (overlap)"
    assert sorted(landed) == expected, "rows missing (gap) or foreign"


@pytest.mark.parametrize("table,key", [("orders", ["orderNumber"]), ("orderdetails", ["orderNumber", "productCode"])])
def test_cursor_reader_lands_what_the_arrow_reader_lands(seeded, s3, table, key):
    """The DB-API fallback reader gives the same rows and exact types; with a row count that is a
    multiple of ``batch_rows`` it ends without a short batch, so the count starts after the loop."""
    start = START + 5 * H
    rows = len(source_keys(seeded, table, key[0], start, start + H)) if table == "orders" else None
    cfg = TableConfig(name=table, watermark="updated_at", primary_key=tuple(key), batch_rows=25)
    tables = {}
    for reader in ("connectorx", "cursor"):
        m = manifest(s3, land(unique_source(), cfg, start, start + H, reader=reader)["manifest"])
        assert m["rows"] == m["extra"]["source_rows"] > 0
        tables[reader] = read_table(s3, m).sort_by([(k, "ascending") for k in key])
    assert rows is None or tables["cursor"].num_rows == rows == 100  # 4 full batches, no short one
    assert tables["cursor"].schema == tables["connectorx"].schema
    assert tables["cursor"].equals(tables["connectorx"])


def test_empty_window_publishes_a_zero_row_manifest(seeded, s3):
    source, start = unique_source(), datetime(2030, 1, 1, tzinfo=timezone.utc)
    out = land(source, ORDERS_CFG, start, start + H)
    m = manifest(s3, out["manifest"])
    assert m["rows"] == 0 and m["files"] == [] and m["extra"]["source_rows"] == 0
    assert {c["name"] for c in m["schema"]} >= {"orderNumber", "updated_at"}


def test_types_land_exactly(mariadb, s3):
    import pyarrow as pa

    mariadb.admin_sql("""
DROP TABLE IF EXISTS type_probe;
CREATE TABLE type_probe (id INT PRIMARY KEY, amount DECIMAL(12,2), big DECIMAL(40,20), at6 DATETIME(6),
  j JSON, t TEXT, b BLOB, flag BIT(1), bits BIT(8), ti TINYINT(1), d DATE, tm TIME(6), updated_at DATETIME(6))
  DEFAULT CHARSET=utf8mb4;
INSERT INTO type_probe VALUES
 (1, 12345.67, 12345678901234567890.12345678901234567891, '2024-01-01 00:00:00.123456', '{"a": [1, 2]}',
  'emoji 😀 Łódź', X'00FF10', b'1', b'10101010', 1, '2024-02-29', '-12:34:56.789012', '2024-01-01 00:30:00'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-01 00:31:00');
""", database="classicmodels")
    cfg = TableConfig(name="type_probe", watermark="updated_at", primary_key=("id",))
    m = manifest(s3, land(unique_source(), cfg, START, START + H)["manifest"])
    t = read_table(s3, m)
    assert t.schema.field("amount").type == pa.decimal128(12, 2)
    assert t.schema.field("big").type == pa.decimal256(40, 20)
    assert t.schema.field("at6").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("flag").type == pa.bool_() and t.schema.field("ti").type == pa.int8()
    r1, r2 = t.sort_by("id").to_pylist()
    assert r1["amount"] == Decimal("12345.67")
    assert r1["big"] == Decimal("12345678901234567890.12345678901234567891")
    assert r1["at6"] == datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)
    assert r1["j"] == '{"a": [1, 2]}' and r1["t"] == "emoji 😀 Łódź" and r1["b"] == b"\x00\xff\x10"
    assert r1["flag"] is True and r1["bits"] == 170 and r1["ti"] == 1 and r1["d"] == dt.date(2024, 2, 29)
    assert r1["tm"] == -timedelta(hours=12, minutes=34, seconds=56, microseconds=789012)
    assert all(v is None for k, v in r2.items() if k not in ("id", "updated_at"))
    assert m["extra"]["source_types"]["amount"] == "decimal(12,2)"


def test_timestamp_watermark_is_read_and_counted_in_utc_whatever_the_server_zone(mariadb, s3):
    """A TIMESTAMP watermark on a server whose time zone is not UTC: the reader and the
    reconciling count (DB-API side) both run in UTC, so the window is the same for both."""
    from s3lander.hooks.sql_arrow import SqlArrowHook
    from s3lander.sql.queries import Query

    mariadb.admin_sql("""
SET time_zone = '+00:00';
DROP TABLE IF EXISTS tz_probe;
CREATE TABLE tz_probe (id INT PRIMARY KEY, updated_at TIMESTAMP(6) NOT NULL, KEY (updated_at));
INSERT INTO tz_probe SELECT seq, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 36 SECOND FROM seq_1_to_300;
""", database="classicmodels")
    mariadb.admin_sql("SET GLOBAL time_zone = '+02:00'")
    try:
        sql = SqlArrowHook(conn_id="mysql_source")
        zone = sql.scalar(Query("SELECT @@session.time_zone"))
        assert (zone.decode() if isinstance(zone, bytes) else zone) == "+00:00"
        cfg = TableConfig(name="tz_probe", watermark="updated_at", primary_key=("id",))
        m = manifest(s3, land(unique_source(), cfg, START, START + H)["manifest"])
    finally:
        mariadb.admin_sql("SET GLOBAL time_zone = 'SYSTEM'")
    t = read_table(s3, m)
    assert m["rows"] == m["extra"]["source_rows"] == 99  # 00:00:36 .. 00:59:24 UTC, 01:00:00 is the next hour
    assert min(t.column("updated_at").to_pylist()) == datetime(2024, 1, 1, 0, 0, 36, tzinfo=timezone.utc)


def test_killed_connection_fails_the_attempt_and_the_retry_lands_exact_rows(mariadb, s3, monkeypatch):
    from s3lander.hooks import sql_arrow

    mariadb.admin_sql("""
DROP TABLE IF EXISTS kill_probe;
CREATE TABLE kill_probe (id INT PRIMARY KEY, v VARCHAR(100), updated_at DATETIME(6), KEY (updated_at));
INSERT INTO kill_probe SELECT seq, REPEAT('x', 80), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 10 MICROSECOND
FROM seq_1_to_300000;""", database="classicmodels")
    # no primary key in the config: the window is read as one stream, one long statement to kill
    # (keyset chunks are short statements, each on its own connection: see the test below)
    cfg = TableConfig(name="kill_probe", watermark="updated_at", batch_rows=2000, max_rows=50_000)
    source = unique_source()
    real = sql_arrow.ConnectorxReader.batches
    killed: list[str] = []

    def kill_after_first_batch(self, query, batch_rows):
        for i, batch in enumerate(real(self, query, batch_rows)):
            if i == 1 and not killed:  # a part or more is on its way: kill from another session
                ids = sql_rows(mariadb, "SELECT ID FROM information_schema.PROCESSLIST "
                                        "WHERE INFO LIKE '%s3lander%kill_probe%' AND INFO NOT LIKE '%PROCESSLIST%'")
                assert ids, "the extract's connection was not found in the process list"
                for (cid,) in ids:
                    mariadb.admin_sql(f"KILL {cid}")
                killed.extend(cid for (cid,) in ids)
            yield batch

    monkeypatch.setattr(sql_arrow.ConnectorxReader, "batches", kill_after_first_batch)
    with pytest.raises(Exception, match="failed|wrote"):
        land(source, cfg, START, START + H)
    assert killed
    prefix = f"raw/{source}/kill_probe/dt=2024-01-01/hour=00/"
    assert manifest(s3, prefix + "_manifest.json") is None, "a partial interval was published"
    assert manifest(s3, f"raw/{source}/kill_probe/_state/latest.json") is None
    monkeypatch.setattr(sql_arrow.ConnectorxReader, "batches", real)
    m = manifest(s3, land(source, cfg, START, START + H)["manifest"])
    ids = read_table(s3, m).column("id").to_pylist()
    assert m["rows"] == 300_000 and sorted(ids) == list(range(1, 300_001))
    assert list_keys(s3, prefix) == sorted([f["key"] for f in m["files"]] + [prefix + "_manifest.json"])


def test_a_window_read_by_full_scan_comes_in_keyset_chunks_with_every_row_once(mariadb, s3, monkeypatch):
    """A window the server reads by full table scan is read in primary-key chunks of
    ``KEYSET_CHUNK_BATCHES`` batches, each read whole: 50,000 rows in chunks of 1,000-row batches,
    then one more (empty) read after the last full chunk; every row exactly once, reconciled."""
    from s3lander.hooks import sql_arrow
    from s3lander.operators.sql_to_s3 import KEYSET_CHUNK_BATCHES

    mariadb.admin_sql("""
DROP TABLE IF EXISTS chunk_probe;
CREATE TABLE chunk_probe (id BIGINT PRIMARY KEY, v VARCHAR(20), updated_at DATETIME(6), KEY (updated_at));
INSERT INTO chunk_probe SELECT seq * 3, CONCAT('v', seq),
  TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 50000 MICROSECOND FROM seq_1_to_50000;
ANALYZE TABLE chunk_probe;""", database="classicmodels")
    statements: list[str] = []
    real = sql_arrow.ConnectorxReader.read_all

    def recording(self, query, batch_rows):
        statements.append(query.sql)
        return real(self, query, batch_rows)

    counts: list[tuple[str, int]] = []
    real_scalar = sql_arrow.SqlArrowHook.scalar

    def recording_count(self, query):
        n = real_scalar(self, query)
        counts.append((query.sql.split(" WHERE ")[1], n))
        return n

    monkeypatch.setattr(sql_arrow.ConnectorxReader, "read_all", recording)
    monkeypatch.setattr(sql_arrow.SqlArrowHook, "scalar", recording_count)
    cfg = TableConfig(name="chunk_probe", watermark="updated_at", primary_key=("id",), batch_rows=1000)
    m = manifest(s3, land(unique_source(), cfg, START, START + H)["manifest"])
    chunk = KEYSET_CHUNK_BATCHES * 1000
    assert len(statements) == 50_000 // chunk + 1
    assert all(f"ORDER BY `id` LIMIT {chunk}" in q for q in statements)
    # the reconciling count ran in two key ranges split at the middle boundary of the full chunks
    full = 50_000 // chunk  # chunks read whole before the short (or empty) final read
    first = chunk * ((full + 1) // 2)
    assert sorted(counts) == [("`updated_at` >= %s AND `updated_at` < %s AND `id` <= %s", first),
                              ("`updated_at` >= %s AND `updated_at` < %s AND `id` > %s", 50_000 - first)]
    ids = read_table(s3, m).column("id").to_pylist()
    assert ids == [3 * i for i in range(1, 50_001)]  # in key order, none twice, none missing
    assert m["rows"] == m["extra"]["source_rows"] == 50_000
    assert [f["rows"] for f in m["files"]] == [50_000]


def test_keyset_chunks_land_what_one_stream_lands(mariadb, s3):
    """The same window with and without a primary key in the config: read in whole keyset chunks
    (connectorx's ``arrow`` read) or as one stream, it lands the same rows with the same types."""
    mariadb.admin_sql("""
DROP TABLE IF EXISTS path_probe;
CREATE TABLE path_probe (id INT PRIMARY KEY, amount DECIMAL(12,2), big DECIMAL(40,20), at6 DATETIME(6),
  j JSON, t TEXT, b BLOB, flag BIT(1), bits BIT(8), d DATE, tm TIME(6), f DOUBLE, updated_at DATETIME(6))
  DEFAULT CHARSET=utf8mb4;
INSERT INTO path_probe SELECT seq, seq / 100, seq / 7, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq MICROSECOND,
  IF(seq % 3 = 0, NULL, JSON_OBJECT('k', seq)), CONCAT('row ', seq, IF(seq % 5 = 0, ' 😀', '')), UNHEX(HEX(seq)),
  seq % 2, seq % 256, DATE'2024-01-01' + INTERVAL seq % 30 DAY, SEC_TO_TIME(CAST(seq AS SIGNED) - 2500), seq / 3,
  TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 700000 MICROSECOND FROM seq_1_to_5000;
ANALYZE TABLE path_probe;""", database="classicmodels")
    tables = {}
    for pk in ((), ("id",)):
        cfg = TableConfig(name="path_probe", watermark="updated_at", primary_key=pk, batch_rows=300)
        m = manifest(s3, land(unique_source(), cfg, START, START + H)["manifest"])
        assert m["rows"] == m["extra"]["source_rows"] == 5000
        tables[pk] = read_table(s3, m).sort_by("id")
    assert tables[()].schema == tables[("id",)].schema
    assert tables[()].equals(tables[("id",)])


def test_schema_change_is_recorded_and_a_dropped_watermark_fails_clearly(mariadb, s3):
    mariadb.admin_sql("""
DROP TABLE IF EXISTS schema_probe;
CREATE TABLE schema_probe (id INT PRIMARY KEY, qty SMALLINT, updated_at DATETIME(6));
INSERT INTO schema_probe VALUES (1, 5, '2024-01-01 00:10:00'), (2, 6, '2024-01-01 01:10:00');
""", database="classicmodels")
    cfg = TableConfig(name="schema_probe", watermark="updated_at", primary_key=("id",))
    source = unique_source()
    first = manifest(s3, land(source, cfg, START, START + H)["manifest"])
    assert "schema_change" not in first["extra"]
    mariadb.admin_sql("ALTER TABLE schema_probe ADD COLUMN note VARCHAR(20) NULL, MODIFY qty INT;",
                      database="classicmodels")
    second = manifest(s3, land(source, cfg, START + H, START + 2 * H)["manifest"])
    assert second["extra"]["schema_change"] == {
        "added": ["note"], "removed": [], "retyped": [{"column": "qty", "from": "int16", "to": "int32"}]}
    mariadb.admin_sql("ALTER TABLE schema_probe RENAME COLUMN updated_at TO modified_at;", database="classicmodels")
    with pytest.raises(SourceSchemaError, match="no watermark 'updated_at'.*dropped or renamed"):
        land(source, cfg, START + 2 * H, START + 3 * H)


def test_key_ranges_publish_one_manifest(seeded, s3):
    cfg = TableConfig(name="orderdetails", watermark="updated_at", primary_key=("orderNumber", "productCode"),
                      split=SplitConfig(column="orderNumber", parts=3))
    source, start = unique_source(), START + 5 * H
    context = ctx(start, start + H)
    ranges = plan_key_ranges(conn_id="mysql_source", table=cfg.to_dict(), context=context)
    assert len(ranges) == 3
    results = [SqlTableToS3Operator(task_id="r", source=source, table=cfg.to_dict(), key_range=r,
                                    publish=False).execute(context) for r in ranges]
    assert all(r["rows"] > 0 for r in results)
    out = publish_key_ranges(results=results, table=cfg.to_dict(), source=source, context=context)
    m = manifest(s3, out["manifest"])
    assert len(m["files"]) == 3 and {f["key"].rsplit("/", 1)[1][:9] for f in m["files"]} == {
        "part-r000", "part-r001", "part-r002"}
    expected = sql_rows(seeded, f"SELECT COUNT(*), COUNT(DISTINCT orderNumber, productCode) FROM orderdetails "
                                f"WHERE updated_at >= '{start:%Y-%m-%d %H}:00:00' "
                                f"AND updated_at < '{start + H:%Y-%m-%d %H}:00:00'")[0]
    t = read_table(s3, m)
    pairs = set(zip(t.column("orderNumber").to_pylist(), t.column("productCode").to_pylist()))
    assert m["rows"] == int(expected[0]) == len(pairs) == int(expected[1])
    with pytest.raises(Exception, match="do not cover"):
        publish_key_ranges(results=results[:2], table=cfg.to_dict(), source=source, context=context)


def test_threshold_trigger_waits_then_lands_only_new_rows(mariadb, s3):
    from s3lander.sensors.sql_threshold import SqlRowThresholdSensor
    from s3lander.triggers.sql_threshold import SqlRowThresholdTrigger

    mariadb.admin_sql("""
DROP TABLE IF EXISTS thr_probe;
CREATE TABLE thr_probe (id INT PRIMARY KEY, updated_at DATETIME(6), KEY (updated_at));
INSERT INTO thr_probe SELECT seq, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_50;
""", database="classicmodels")
    cfg = TableConfig(name="thr_probe", watermark="updated_at", primary_key=("id",), threshold=30)
    source = unique_source()
    sensor = SqlRowThresholdSensor(task_id="w", table=cfg.to_dict(), source=source, poke_seconds=0.2)
    assert sensor.poke({}) is True  # 50 new rows, nothing landed yet
    first = land(source, cfg, START, START + H, window="threshold")
    assert first["rows"] == 50 and first["watermark"] == "2024-01-01T00:00:50+00:00"
    assert sensor.poke({}) is False  # the watermark on S3 moved: 0 new rows

    trigger = SqlRowThresholdTrigger(conn_id="mysql_source", table="thr_probe", watermark="updated_at",
                                     since=sensor.last_watermark(cfg), threshold=30, poke_seconds=0.2)

    def add_rows() -> None:
        mariadb.admin_sql("INSERT INTO thr_probe SELECT 100 + seq, TIMESTAMP'2024-01-01 00:10:00' + INTERVAL seq "
                          "SECOND FROM seq_1_to_40;", database="classicmodels")

    async def wait() -> Any:
        gen = trigger.run()
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(1.0)
        assert not task.done(), "the trigger fired before the threshold was reached"
        await asyncio.to_thread(add_rows)
        return await asyncio.wait_for(task, 30)

    event = asyncio.run(wait())
    assert event.payload["status"] == "ready" and event.payload["count"] == 40
    second = land(source, cfg, START + H, START + 2 * H, window="threshold")
    m = manifest(s3, second["manifest"])
    assert sorted(read_table(s3, m).column("id").to_pylist()) == list(range(101, 141))
    assert m["watermark"] == "2024-01-01T00:10:40+00:00" and m["extra"]["watermark_from"] == first["watermark"]
    again = land(source, cfg, START + H, START + 2 * H, window="threshold")  # rerun: the same rows
    assert manifest(s3, again["manifest"])["files"] == m["files"]


def test_hourly_dag_run(seeded, s3, airflow_db):
    from include.runner import failed_tasks, run_dag

    run = run_dag("mysql_to_s3_hourly", interval_end=START + 12 * H)
    assert run.state == "success", failed_tasks(run)
    for table in ("orders", "orderdetails", "payments", "customers"):
        m = manifest(s3, f"raw/classicmodels/{table}/dt=2024-01-01/hour=11/_manifest.json")
        assert m is not None, table
        n = int(sql_rows(seeded, f"SELECT COUNT(*) FROM {table} WHERE updated_at >= '2024-01-01 11:00:00' "
                                 "AND updated_at < '2024-01-01 12:00:00'")[0][0])
        assert m["rows"] == n > 0, table
    assert len(manifest(s3, "raw/classicmodels/orderdetails/dt=2024-01-01/hour=11/_manifest.json")
               ["extra"]["key_ranges"]) == 3
    # each table's Asset got exactly one event from this run: the mapped tasks through the alias,
    # the key-range publisher through its own outlet
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from s3lander.assets import dataset_uri

    with create_session() as session:
        events = [e.asset.uri for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id)]
    assert sorted(events) == sorted(dataset_uri("classicmodels", t)
                                    for t in ("orders", "orderdetails", "payments", "customers"))


@pytest.mark.parametrize("path", ["stream", "keyset"])
def test_a_row_arriving_mid_extract_fails_reconciliation_and_publishes_nothing(mariadb, s3, monkeypatch, path):
    """A row committed with an old watermark after the read passed its place is not read, and the
    count after the read catches it. One stream: any new row (the statement's snapshot is taken);
    keyset chunks: a row whose key is below the chunks already read."""
    from s3lander.hooks import sql_arrow
    from s3lander.operators.sql_to_s3 import ReconciliationError

    mariadb.admin_sql("""
DROP TABLE IF EXISTS late_probe;
CREATE TABLE late_probe (id INT PRIMARY KEY, v VARCHAR(40), updated_at DATETIME(6), KEY (updated_at));
INSERT INTO late_probe SELECT seq, REPEAT('v', 40), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND
FROM seq_1_to_5000;
ANALYZE TABLE late_probe;
""", database="classicmodels")
    late_id = 999999 if path == "stream" else 0
    cfg = TableConfig(name="late_probe", watermark="updated_at", primary_key=("id",) if path == "keyset" else (),
                      batch_rows=500)
    method = "batches" if path == "stream" else "read_all"
    real = getattr(sql_arrow.ConnectorxReader, method)
    reads: list[int] = []

    def late_row_after_the_first_read(self, query, batch_rows):
        out = real(self, query, batch_rows)
        if not reads:  # a late row with an old timestamp, committed by another session mid-extract
            out = list(out)
            mariadb.admin_sql(f"INSERT INTO late_probe VALUES ({late_id}, 'late', '2024-01-01 00:00:00.5')",
                              database="classicmodels")
        reads.append(1)
        return iter(out) if path == "stream" else out

    monkeypatch.setattr(sql_arrow.ConnectorxReader, method, late_row_after_the_first_read)
    source = unique_source()
    with pytest.raises(ReconciliationError, match="wrote 3599 rows but the source counts 3600"):
        land(source, cfg, START, START + H)
    assert reads and (path == "stream" or len(reads) > 1), "the window was not read the way this test is about"
    assert manifest(s3, f"raw/{source}/late_probe/dt=2024-01-01/hour=00/_manifest.json") is None
    monkeypatch.setattr(sql_arrow.ConnectorxReader, method, real)
    assert land(source, cfg, START, START + H)["rows"] == 3600  # seconds 1..3599 and the late row



def _keyed_probe_table(mariadb, name: str) -> TableConfig:
    """20,000 rows over the first ~33 minutes of 2024 with an integer key: read in keyset chunks."""
    mariadb.admin_sql(f"""
DROP TABLE IF EXISTS {name};
CREATE TABLE {name} (id INT PRIMARY KEY, v VARCHAR(40), updated_at DATETIME(6), KEY (updated_at));
INSERT INTO {name} SELECT seq, REPEAT('v', 40), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 100000 MICROSECOND
FROM seq_1_to_20000;
ANALYZE TABLE {name};""", database="classicmodels")
    return TableConfig(name=name, watermark="updated_at", primary_key=("id",), batch_rows=500)

def test_an_s3_failure_while_reading_ahead_fails_the_task_and_stops_the_reader(mariadb, s3, monkeypatch):
    """The S3 side starts on its own thread while the source is read: its error is the task's,
    nothing is published, and the read-ahead thread does not outlive the task."""
    import threading
    import time

    from s3lander.hooks import sql_arrow
    from s3lander.landing.publisher import IntervalPublisher

    cfg = _keyed_probe_table(mariadb, "s3fail_probe")

    reads: list[int] = []
    real = sql_arrow.ConnectorxReader.read_all

    def counting(self, query, batch_rows):
        reads.append(1)
        return real(self, query, batch_rows)

    def failing_begin(self):
        time.sleep(0.5)  # the reader is reading ahead meanwhile
        raise RuntimeError("S3 is down")

    monkeypatch.setattr(sql_arrow.ConnectorxReader, "read_all", counting)
    monkeypatch.setattr(IntervalPublisher, "begin", failing_begin)
    source = unique_source()
    with pytest.raises(RuntimeError, match="S3 is down"):
        land(source, cfg, START, START + H)
    assert reads, "the window was not read ahead in keyset chunks"
    assert not [t.name for t in threading.enumerate() if t.name in ("sql-read-ahead", "s3-begin")]
    assert list_keys(s3, f"raw/{source}/") == []


def test_no_part_is_opened_before_the_interval_is_unpublished(mariadb, s3, monkeypatch):
    """``begin()`` (which removes the interval's manifest) runs on its own thread beside the first
    reads; a slow one must still finish before the first part is opened, whatever the reader has
    read by then."""
    import time

    from s3lander.landing.publisher import IntervalPublisher

    cfg = _keyed_probe_table(mariadb, "begin_probe")
    events: list[str] = []
    real_begin, real_open = IntervalPublisher.begin, IntervalPublisher.open_sink

    def slow_begin(self):
        if not self._begun:
            time.sleep(1.0)
            events.append("begun")
        return real_begin(self)

    def recording_open(self, name, *args, **kwargs):
        events.append(f"open {name}")
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(IntervalPublisher, "begin", slow_begin)
    monkeypatch.setattr(IntervalPublisher, "open_sink", recording_open)
    source = unique_source()
    first = manifest(s3, land(source, cfg, START, START + H)["manifest"])
    assert events[0] == "begun" and events[1].startswith("open part-")
    events.clear()
    again = manifest(s3, land(source, cfg, START, START + H)["manifest"])  # a rerun: unpublish, rewrite
    assert events[0] == "begun" and events[1].startswith("open part-")
    assert again["files"] == first["files"] and again["rows"] == 20000
