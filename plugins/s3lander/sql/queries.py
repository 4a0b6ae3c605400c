"""SQL text and parameters of the extract: selects, counts and bounds over one window.

Every query is a ``Query(sql, params)``: identifiers validated and quoted
(``identifiers.py``), values as ``%s`` placeholders with a parameter tuple. The DB-API
hook binds them itself; the Arrow reader (connectorx, which takes no parameters) binds
them with ``bind_literals``, which renders only typed values (int, Decimal, datetime,
date, bytes, str as a hex literal), so no text from config or data ever becomes SQL.

Windows are half-open on the watermark column: ``wm >= start AND wm < end``, so a row
on a boundary timestamp belongs to exactly one window. Primary-key ranges are half-open
too: ``pk >= lo AND pk < hi`` (the last range is open at the top).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from s3lander.sql.identifiers import quote_identifier


@dataclass(frozen=True)
class Query:
    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Predicate:
    """A WHERE clause fragment with its parameters ("" = all rows)."""

    sql: str = ""
    params: tuple[Any, ...] = ()

    def __and__(self, other: Predicate) -> Predicate:
        parts = [p for p in (self.sql, other.sql) if p]
        return Predicate(" AND ".join(parts), self.params + other.params)

    def where(self) -> str:
        return f" WHERE {self.sql}" if self.sql else ""


def naive_utc(ts: dt.datetime) -> dt.datetime:
    """DATETIME columns hold UTC wall-clock values: compare them with naive UTC datetimes."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return ts


def window_predicate(watermark: str, start: dt.datetime | None, end: dt.datetime | None, *,
                     start_inclusive: bool = True) -> Predicate:
    """``start <= wm < end`` (or ``start < wm <= end`` with ``start_inclusive=False``, the threshold
    window after the last landed watermark); a missing bound is open."""
    col = quote_identifier(watermark, what="watermark column")
    parts, params = [], []
    if start is not None:
        parts.append(f"{col} {'>=' if start_inclusive else '>'} %s")
        params.append(naive_utc(start))
    if end is not None:
        parts.append(f"{col} {'<' if start_inclusive else '<='} %s")
        params.append(naive_utc(end))
    return Predicate(" AND ".join(parts), tuple(params))


@dataclass(frozen=True)
class KeyRange:
    """``lo <= column < hi`` of one split; ``None`` bounds are open."""

    index: int
    column: str
    lo: int | None
    hi: int | None
    count: int = field(default=1, compare=False)  # how many ranges the split has

    def predicate(self) -> Predicate:
        col = quote_identifier(self.column, what="split column")
        parts, params = [], []
        if self.lo is not None:
            parts.append(f"{col} >= %s")
            params.append(self.lo)
        if self.hi is not None:
            parts.append(f"{col} < %s")
            params.append(self.hi)
        return Predicate(" AND ".join(parts), tuple(params))

    @property
    def stem(self) -> str:
        """Part-name stem of this range (``part-r003-00000.parquet``): distinct per range."""
        return f"part-r{self.index:03d}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "column": self.column, "lo": self.lo, "hi": self.hi, "count": self.count}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyRange:
        return cls(index=int(d["index"]), column=d["column"], lo=d.get("lo"), hi=d.get("hi"),
                   count=int(d.get("count", 1)))


def split_key_range(column: str, lo: int | None, hi: int | None, parts: int) -> list[KeyRange]:
    """Cover every value of ``column`` with ``parts`` contiguous half-open ranges over
    ``[lo, hi]`` (the observed MIN and MAX): the first range is open at the bottom and the
    last at the top, so rows outside the observed bounds still land exactly once."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    if lo is None or hi is None or parts == 1 or hi <= lo:
        return [KeyRange(0, column, None, None, 1)]
    span = hi - lo + 1
    parts = min(parts, span)
    cuts = [lo + (span * i) // parts for i in range(1, parts)]
    bounds: list[int | None] = [None, *cuts, None]
    return [KeyRange(i, column, bounds[i], bounds[i + 1], parts) for i in range(parts)]


def select_query(table: str, select_list: Sequence[str], where: Predicate, *, label: str = "",
                 order_by: str | None = None, limit: int | None = None, force_primary: bool = False) -> Query:
    """``SELECT <cols> FROM <table> WHERE ...``; ``label`` becomes a leading comment (it shows in
    the process list, so operators can tell which task a query belongs to). ``order_by`` (a
    column), ``limit`` and ``force_primary`` (``FORCE INDEX (PRIMARY)``) serve keyset chunks."""
    comment = f"/* s3lander {label} */ " if label else ""
    hint = " FORCE INDEX (PRIMARY)" if force_primary else ""
    order = f" ORDER BY {quote_identifier(order_by, what='key column')}" if order_by else ""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    tail = f" LIMIT {limit}" if limit is not None else ""
    return Query(f"{comment}SELECT {', '.join(select_list)} FROM {quote_identifier(table, what='table')}{hint}"
                 f"{where.where()}{order}{tail}", where.params)


@dataclass(frozen=True)
class KeysetChunks:
    """One window read as consecutive chunks of at most ``rows`` rows, in the order of an integer
    primary key: ``WHERE <window> AND key > <last key read> ORDER BY key LIMIT rows``.

    Each chunk is a primary-key range scan (the index is forced: with ``ORDER BY ... LIMIT`` an
    optimizer may otherwise sort the whole window for every chunk), so a window that the
    server would read with a full table scan costs the same read in pieces, and the reader
    never holds more than one chunk ahead of the writer. The key is unique, so no row is read
    twice or skipped between chunks."""

    table: str
    select_list: tuple[str, ...]
    where: Predicate
    key: str
    rows: int
    label: str = ""

    def query(self, after: Any = None) -> Query:
        """The chunk after key value ``after`` (``None``: the first chunk)."""
        where = self.where
        if after is not None:
            where = where & Predicate(f"{quote_identifier(self.key, what='key column')} > %s", (after,))
        return select_query(self.table, self.select_list, where, label=self.label, order_by=self.key,
                            limit=self.rows, force_primary=True)


    def count_queries(self, boundaries: Sequence[Any], parts: int) -> list[Query]:
        """``COUNT(*)`` of the whole window in up to ``parts`` consecutive key ranges, split at the
        chunk boundaries (``boundaries``: the last key of each chunk but the final one, ascending),
        so that each range covers about as many chunks. The first range is open below and the last
        open above: together they count every row of the window, whatever was read. Each counts
        through the primary key, the access path of the chunks themselves."""
        if parts < 1:
            raise ValueError(f"parts must be >= 1, got {parts}")
        n = min(parts, len(boundaries) + 1)
        splits = [boundaries[(len(boundaries) + 1) * i // n - 1] for i in range(1, n)]
        k = quote_identifier(self.key, what="key column")
        queries = []
        for i in range(n):
            where = self.where
            if i > 0:
                where = where & Predicate(f"{k} > %s", (splits[i - 1],))
            if i < n - 1:
                where = where & Predicate(f"{k} <= %s", (splits[i],))
            queries.append(count_query(self.table, where, force_primary=True))
        return queries


def count_query(table: str, where: Predicate, *, force_primary: bool = False) -> Query:
    hint = " FORCE INDEX (PRIMARY)" if force_primary else ""
    return Query(f"SELECT COUNT(*) FROM {quote_identifier(table, what='table')}{hint}{where.where()}",
                 where.params)


def bounds_query(table: str, column: str, where: Predicate) -> Query:
    c = quote_identifier(column, what="column")
    return Query(f"SELECT MIN({c}), MAX({c}) FROM {quote_identifier(table, what='table')}{where.where()}",
                 where.params)


def max_query(table: str, column: str, where: Predicate) -> Query:
    c = quote_identifier(column, what="column")
    return Query(f"SELECT MAX({c}) FROM {quote_identifier(table, what='table')}{where.where()}", where.params)


def columns_query(table: str) -> Query:
    """The table's columns in ordinal order (schema.table or the connection's database)."""
    schema, _, name = table.rpartition(".")
    sql = ("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE "
           "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = " + ("%s" if schema else "DATABASE()") +
           " AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION")
    return Query(sql, (schema, name) if schema else (name,))


class BindError(ValueError):
    """A parameter of a type that cannot be rendered safely as a literal."""


def render_literal(value: Any) -> str:
    """A MySQL literal for a typed value, for readers that take no bind parameters."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise BindError(f"cannot bind non-finite decimal {value!r}")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP'{naive_utc(value).strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, (bytes, bytearray)):
        return f"X'{bytes(value).hex()}'" if value else "''"
    if isinstance(value, str):
        return f"_utf8mb4 X'{value.encode().hex()}'" if value else "''"
    raise BindError(f"cannot bind a value of type {type(value).__name__}")


def bind_literals(query: Query) -> str:
    """The query with each ``%s`` replaced by the literal of its parameter (count checked)."""
    pieces = query.sql.split("%s")
    if len(pieces) - 1 != len(query.params):
        raise BindError(f"query has {len(pieces) - 1} placeholders but {len(query.params)} parameters")
    out = [pieces[0]]
    for value, rest in zip(query.params, pieces[1:]):
        out += [render_literal(value), rest]
    return "".join(out)
