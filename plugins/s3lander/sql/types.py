"""Exact mapping of MySQL/MariaDB column types to Arrow types, from ``information_schema``.

The reader (connectorx) decides Arrow types from the wire, which is not always exact:
DECIMAL arrives as ``decimal128(38, 10)`` whatever its declaration, DATETIME without a
time zone, BIT as bytes, and a negative or >24 h TIME makes it fail. So the select list
and the target schema are derived here from the source's declared column types, and each
batch is cast to the target schema (a cast that would lose data raises).

=====================  ===============================  ==========================================
source type            select expression                Arrow type landed
=====================  ===============================  ==========================================
DECIMAL(p,s), p<=38    column (scale <= 10, p-s <= 28)  decimal128(p, s)
DECIMAL(p,s) other     CAST(col AS CHAR)                decimal128(p, s) / decimal256(p, s)
DATETIME(n)            column                           timestamp[us, tz=UTC] (values are UTC)
TIMESTAMP(n)           column (session time_zone UTC)   timestamp[us, tz=UTC]
DATE                   column                           date32
TIME(n)                microseconds as BIGINT           duration[us] (TIME spans -838..838 h)
BIT(1)                 CAST(col AS UNSIGNED)            bool
BIT(n)                 CAST(col AS UNSIGNED)            uint64
TINYINT(1)             column                           int8 (BOOLEAN may hold 2..127: kept exact)
JSON / TEXT / CHAR     column                           string (utf8mb4, 4-byte characters kept)
BLOB / BINARY          column                           binary
=====================  ===============================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s3lander.sql.identifiers import quote_identifier

_INTS = {
    ("tinyint", False): "int8", ("tinyint", True): "uint8",
    ("smallint", False): "int16", ("smallint", True): "uint16",
    ("mediumint", False): "int32", ("mediumint", True): "uint32",
    ("int", False): "int32", ("int", True): "uint32",
    ("integer", False): "int32", ("integer", True): "uint32",
    ("bigint", False): "int64", ("bigint", True): "uint64",
}
_STRINGS = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"}
_BINARIES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}


class UnsupportedType(ValueError):
    """A source column type the mapping does not know; the message names the column."""


@dataclass(frozen=True)
class SourceColumn:
    """One column as ``information_schema.COLUMNS`` describes it."""

    name: str
    data_type: str  # DATA_TYPE, e.g. "decimal"
    column_type: str  # COLUMN_TYPE, e.g. "decimal(10,2) unsigned"
    nullable: bool = True
    precision: int | None = None
    scale: int | None = None

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type.lower()


@dataclass(frozen=True)
class ColumnPlan:
    """How one column is selected and what Arrow type it lands as (type as Arrow prints it)."""

    name: str
    select: str
    arrow_type: str
    nullable: bool
    source_type: str


def _decimal_fits_reader(p: int, s: int) -> bool:
    # connectorx reads DECIMAL as decimal128(38, 10): exact only for scale <= 10 and p - s <= 28
    return s <= 10 and (p - s) <= 28


def plan_column(col: SourceColumn) -> ColumnPlan:
    """The select expression and the exact Arrow type of one source column."""
    q = quote_identifier(col.name, what="column")
    t = col.data_type.lower()
    ct = col.column_type.lower()
    select, arrow = q, None
    if t in ("decimal", "numeric"):
        p, s = int(col.precision or 10), int(col.scale or 0)
        arrow = f"decimal128({p}, {s})" if p <= 38 else f"decimal256({p}, {s})"
        if not _decimal_fits_reader(p, s):
            select = f"CAST({q} AS CHAR)"
    elif (t, col.unsigned) in _INTS:
        arrow = _INTS[(t, col.unsigned)]
    elif t == "year":
        arrow = "int16"
    elif t == "float":
        arrow = "float"
    elif t in ("double", "real"):
        arrow = "double"
    elif t in ("datetime", "timestamp"):
        arrow = "timestamp[us, tz=UTC]"
    elif t == "date":
        arrow = "date32[day]"
    elif t == "time":
        select = f"CAST(TIME_TO_SEC({q}) * 1000000 AS SIGNED)"
        arrow = "duration[us]"
    elif t == "bit":
        select = f"CAST({q} AS UNSIGNED)"
        arrow = "bool" if ct.startswith("bit(1)") else "uint64"
    elif t in _STRINGS or t.endswith("text"):
        arrow = "string"
    elif t in _BINARIES or t.endswith("blob"):
        arrow = "binary"
    if arrow is None:
        raise UnsupportedType(f"column {col.name!r} has type {col.column_type!r}, which has no exact Arrow mapping; "
                              "leave it out with `columns:` in the table config")
    if select != q:
        select = f"{select} AS {q}"
    return ColumnPlan(name=col.name, select=select, arrow_type=arrow, nullable=col.nullable,
                      source_type=col.column_type)


def arrow_type(name: str) -> Any:
    """A pyarrow DataType from the names ``plan_column`` produces."""
    import re

    import pyarrow as pa

    simple = {"int8": pa.int8(), "uint8": pa.uint8(), "int16": pa.int16(), "uint16": pa.uint16(),
              "int32": pa.int32(), "uint32": pa.uint32(), "int64": pa.int64(), "uint64": pa.uint64(),
              "float": pa.float32(), "double": pa.float64(), "string": pa.string(), "binary": pa.binary(),
              "bool": pa.bool_(), "date32[day]": pa.date32(), "duration[us]": pa.duration("us"),
              "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC")}
    if name in simple:
        return simple[name]
    m = re.fullmatch(r"decimal(128|256)\((\d+), (\d+)\)", name)
    if m:
        ctor = pa.decimal128 if m.group(1) == "128" else pa.decimal256
        return ctor(int(m.group(2)), int(m.group(3)))
    raise UnsupportedType(f"unknown Arrow type name {name!r}")


def arrow_schema(plans: list[ColumnPlan]) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(p.name, arrow_type(p.arrow_type), nullable=p.nullable) for p in plans])


def conform_batch(batch: Any, schema: Any) -> Any:
    """Cast a reader's batch to the exact target schema (safe casts: overflow or truncation raises)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if batch.schema.equals(schema):
        return batch
    if batch.num_columns != len(schema):
        raise ValueError(f"the reader returned {batch.num_columns} columns, expected {len(schema)}")
    arrays = []
    for arr, field in zip(batch.columns, schema):
        if arr.type.equals(field.type):
            arrays.append(arr)
            continue
        if pa.types.is_timestamp(field.type) and pa.types.is_timestamp(arr.type) and arr.type.tz is None:
            arrays.append(arr.cast(pa.timestamp("us")).cast(field.type))  # naive values are UTC
        elif pa.types.is_boolean(field.type) and pa.types.is_integer(arr.type):
            arrays.append(pc.not_equal(arr, 0))
        elif pa.types.is_duration(field.type) and pa.types.is_integer(arr.type):
            arrays.append(arr.cast(pa.int64()).cast(field.type))
        elif pa.types.is_large_binary(arr.type) or pa.types.is_large_string(arr.type):
            arrays.append(arr.cast(field.type))
        else:
            arrays.append(pc.cast(arr, field.type, safe=True))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
