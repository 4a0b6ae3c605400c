"""Table config validation (include/config/mysql_tables.yaml) and its round trip to mapped tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from s3lander.sql.tables import (
    SplitConfig,
    TableConfig,
    TableConfigError,
    load_source_config,
    parse_duration,
    parse_size,
    parse_source_config,
)


def base(**tables):
    return {"conn_id": "mysql_source", "source": "classicmodels", "defaults": {"threshold": 10},
            "tables": tables or {"orders": {"watermark": "updated_at"}}}


def test_the_shipped_config_is_valid():
    cfg = load_source_config("mysql_tables.yaml")
    assert {t.name for t in cfg.by_mode("incremental")} == {"orders", "orderdetails", "payments", "customers"}
    assert {t.name for t in cfg.by_mode("snapshot")} == {"products", "productlines", "employees", "offices"}
    assert cfg.table("orderdetails").split == SplitConfig("orderNumber", 3)
    assert cfg.table("orders").threshold == 1000 and cfg.table("payments").threshold is None
    assert cfg.pool == "mysql_source"


def test_round_trip_through_a_dict():
    t = TableConfig(name="orders", watermark="updated_at", primary_key=("id",), lookback=timedelta(minutes=15),
                    split=SplitConfig("id", 4), columns=("id", "updated_at"), threshold=5)
    assert TableConfig.from_dict(t.to_dict()) == t


@pytest.mark.parametrize("entry,message", [
    ({"mode": "incremental"}, "needs `watermark:`"),
    ({"watermark": "updated at"}, "watermark.*not a valid SQL identifier"),
    ({"watermark": "w", "mode": "cdc"}, "mode: 'cdc' is not one of"),
    ({"watermark": "w", "format": "csv"}, "format: 'csv'"),
    ({"watermark": "w", "lookback": "5 minutes"}, "lookback: '5 minutes' is not a duration"),
    ({"watermark": "w", "max_bytes": "lots"}, "max_bytes"),
    ({"watermark": "w", "max_rows": 0}, "max_rows: 0 must be a positive integer"),
    ({"watermark": "w", "split": {"column": "id"}}, "split must be"),
    ({"watermark": "w", "columns": ["id"]}, "columns must include 'w'"),
    ({"watermark": "w", "wat": 1}, "unknown key"),
    ({"mode": "snapshot", "threshold": 3}, "threshold.*needs a `watermark:`"),
])
def test_bad_entries_name_the_file_and_key(entry, message):
    with pytest.raises(TableConfigError, match=message) as e:
        parse_source_config(base(orders=entry), path="mysql_tables.yaml")
    assert "mysql_tables.yaml" in str(e.value)


def test_bad_table_name_and_missing_keys():
    with pytest.raises(TableConfigError, match="table name"):
        parse_source_config(base(**{"orders; drop": {"watermark": "w"}}))
    with pytest.raises(TableConfigError, match="missing top-level key 'conn_id'"):
        parse_source_config({"source": "x", "tables": {}})


def test_threshold_true_takes_the_default():
    cfg = parse_source_config(base(orders={"watermark": "w", "threshold": True}, other={"watermark": "w"}))
    assert cfg.table("orders").threshold == 10 and cfg.table("other").threshold is None
    assert [t.name for t in cfg.with_threshold()] == ["orders"]


def test_durations_and_sizes():
    assert parse_duration("15m", what="x") == timedelta(minutes=15) and parse_duration(0, what="x") == timedelta(0)
    assert parse_size("128MiB", what="x") == 128 * 1024**2 and parse_size(1000, what="x") == 1000
