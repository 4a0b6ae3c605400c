"""Type mapping from information_schema to exact Arrow types, and the batch conforming casts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from s3lander.sql.types import SourceColumn, UnsupportedType, arrow_schema, conform_batch, plan_column


@pytest.mark.parametrize("data_type,column_type,prec,scale,arrow,select", [
    ("decimal", "decimal(12,2)", 12, 2, "decimal128(12, 2)", "`c`"),
    ("decimal", "decimal(38,20)", 38, 20, "decimal128(38, 20)", "CAST(`c` AS CHAR) AS `c`"),
    ("decimal", "decimal(65,30)", 65, 30, "decimal256(65, 30)", "CAST(`c` AS CHAR) AS `c`"),
    ("datetime", "datetime(6)", None, None, "timestamp[us, tz=UTC]", "`c`"),
    ("timestamp", "timestamp(3)", None, None, "timestamp[us, tz=UTC]", "`c`"),
    ("time", "time(6)", None, None, "duration[us]", "CAST(TIME_TO_SEC(`c`) * 1000000 AS SIGNED) AS `c`"),
    ("bit", "bit(1)", None, None, "bool", "CAST(`c` AS UNSIGNED) AS `c`"),
    ("bit", "bit(12)", None, None, "uint64", "CAST(`c` AS UNSIGNED) AS `c`"),
    ("tinyint", "tinyint(1)", None, None, "int8", "`c`"),
    ("int", "int(10) unsigned", None, None, "uint32", "`c`"),
    ("longtext", "longtext", None, None, "string", "`c`"),
    ("json", "json", None, None, "string", "`c`"),
    ("mediumblob", "mediumblob", None, None, "binary", "`c`"),
    ("date", "date", None, None, "date32[day]", "`c`"),
])
def test_plan_column(data_type, column_type, prec, scale, arrow, select):
    p = plan_column(SourceColumn("c", data_type, column_type, True, prec, scale))
    assert (p.arrow_type, p.select) == (arrow, select)


def test_unknown_type_names_the_column():
    with pytest.raises(UnsupportedType, match="column 'shape'.*geometry"):
        plan_column(SourceColumn("shape", "geometry", "geometry"))


def test_conform_restores_exact_types_from_the_reader():
    plans = [plan_column(SourceColumn(*a)) for a in [
        ("amount", "decimal", "decimal(10,2)", True, 10, 2), ("big", "decimal", "decimal(40,20)", True, 40, 20),
        ("at", "datetime", "datetime(6)", False), ("flag", "bit", "bit(1)", True), ("tm", "time", "time", True),
        ("b", "blob", "blob", True)]]
    schema = arrow_schema(plans)
    batch = pa.RecordBatch.from_arrays([
        pa.array([Decimal("1.5"), None], pa.decimal128(38, 10)), pa.array(["1.00000000000000000001", None]),
        pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 1), dt.datetime(2024, 1, 2)], pa.timestamp("us")),
        pa.array([1, 0], pa.uint32()), pa.array([-1_000_000, None], pa.int64()),
        pa.array([b"\x00", None], pa.large_binary())], names=[p.name for p in plans])
    out = conform_batch(batch, schema)
    assert out.schema.equals(schema)
    row = out.to_pylist()[0]
    assert row["amount"] == Decimal("1.50") and row["big"] == Decimal("1.00000000000000000001")
    assert row["at"] == dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc)
    assert row["flag"] is True and row["tm"] == -dt.timedelta(seconds=1) and row["b"] == b"\x00"


def test_conform_refuses_a_lossy_cast():
    schema = arrow_schema([plan_column(SourceColumn("a", "decimal", "decimal(4,2)", True, 4, 2))])
    batch = pa.RecordBatch.from_arrays([pa.array([Decimal("123.45")], pa.decimal128(38, 10))], names=["a"])
    with pytest.raises(pa.ArrowInvalid):
        conform_batch(batch, schema)
