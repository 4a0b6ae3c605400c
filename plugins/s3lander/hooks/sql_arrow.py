"""SqlArrowHook: a SQL source read as bounded Arrow record batches, plus the small queries
(introspection, counts, bounds) the extract needs.

Two read paths, chosen by name (``READERS``):

- ``connectorx`` (default): the Rust reader fills Arrow buffers straight from the MySQL
  binary protocol and streams them in ``batch_rows`` batches. No Python object per row:
  measured 3-8x faster than a DB-API cursor loop, with memory bounded by a few batches.
  connectorx takes no bind parameters, so values are rendered by ``bind_literals`` (typed
  values only; see ``s3lander.sql.queries``).
- ``cursor``: any Airflow DB-API hook, server-side cursor where the driver has one
  (mysqlclient ``SSCursor``), ``fetchmany`` into Arrow batches. Slower; parameters bound by
  the driver. The fallback for sources connectorx cannot read.

The DB-API side (counts, bounds, ``information_schema``) always goes through a DB-API
connection of the connection's Airflow hook (``MySqlHook.get_conn()`` for ``mysql``), with real
bind parameters. The cursor is used directly rather than through ``DbApiHook.get_first()``:
that path reports hook lineage for every statement, and its first call imports Airflow's ORM
asset models and the hook-lineage collector (measured: 0.16 s and a few MB per task for three
metadata queries, against 5 ms for the queries themselves).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from s3lander.sql.queries import KeysetChunks, Query, bind_literals, columns_query
from s3lander.sql.types import SourceColumn

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


#: statements run first on every DB-API connection, by connection type: TIMESTAMP values read
#: and compared in UTC, as the readers do (``pre_execution_query`` / ``CursorReader``)
SESSION_SETUP: dict[str, tuple[str, ...]] = {
    "mysql": ("SET time_zone = '+00:00'",),
    "mariadb": ("SET time_zone = '+00:00'",),
}


class SourceReadError(RuntimeError):
    """The source failed mid-read (connection killed, server gone, conversion panic)."""


class BatchReader:
    """Streams a query's rows as Arrow record batches of exactly ``batch_rows`` rows, except the
    final batch, which is shorter (possibly empty). The operator relies on that: the first short
    batch tells it that every row has been read (it then starts the reconciling count)."""

    name: ClassVar[str]

    def __init__(self, hook: SqlArrowHook) -> None:
        self.hook = hook

    def batches(self, query: Query, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


class ConnectorxReader(BatchReader):
    name = "connectorx"
    SCHEMES: ClassVar[dict[str, str]] = {"mysql": "mysql", "mariadb": "mysql", "postgres": "postgresql"}

    def url(self) -> str:
        from urllib.parse import quote

        c = self.hook.connection
        scheme = self.SCHEMES.get(c.conn_type)
        if scheme is None:
            raise SourceReadError(f"connection {c.conn_id!r} of type {c.conn_type!r} has no connectorx reader; "
                                  "use reader='cursor'")
        auth = quote(c.login or "", safe="")
        if c.password:
            auth += ":" + quote(c.password, safe="")
        port = f":{c.port}" if c.port else ""
        return f"{scheme}://{auth}@{c.host}{port}/{quote(c.schema or '', safe='')}"

    def batches(self, query: Query, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Starts the query at once (connectorx's own thread reads from here on), then iterates: a
        keyset reader opens the next chunk while the last batch of the current one is written."""
        import connectorx as cx

        sql = bind_literals(query)
        try:
            reader = cx.read_sql(self.url(), sql, return_type="arrow_stream", batch_size=batch_rows,
                                 pre_execution_query=["SET time_zone = '+00:00'"])
        except BaseException as e:
            raise self._error(e) from e
        return self._iterate(reader)

    def _iterate(self, reader: Any) -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except BaseException as e:
            raise self._error(e) from e

    def _error(self, e: BaseException) -> BaseException:
        """pyo3's PanicException is a BaseException: turn it into a task failure."""
        if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return e
        return SourceReadError(f"reading from {self.hook.conn_id!r} failed: {type(e).__name__}: {e}")


class CursorReader(BatchReader):
    name = "cursor"

    def batches(self, query: Query, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        conn = self.hook.dbapi.get_conn()
        try:
            cursor = self._server_side_cursor(conn)
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute(query.sql, query.params)
            names = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(batch_rows):
                cols = list(zip(*rows))
                yield pa.RecordBatch.from_arrays([pa.array(c) for c in cols], names=names)
            cursor.close()
        except Exception as e:
            raise SourceReadError(f"reading from {self.hook.conn_id!r} failed: {type(e).__name__}: {e}") from e
        finally:
            conn.close()

    @staticmethod
    def _server_side_cursor(conn: Any) -> Any:
        try:
            from MySQLdb.cursors import SSCursor

            if conn.__class__.__module__.startswith("MySQLdb"):
                return conn.cursor(SSCursor)
        except ImportError:
            pass
        return conn.cursor()


READERS: dict[str, type[BatchReader]] = {r.name: r for r in (ConnectorxReader, CursorReader)}


class SqlArrowHook:
    """A SQL connection seen as Arrow batches; the DB-API hook comes from the connection type.

    :param conn_id: Airflow connection of the source database (``mysql`` type for RDS MySQL)
    :param reader: ``connectorx`` (default) or ``cursor`` (see the module docstring)
    """

    def __init__(self, *, conn_id: str, reader: str = "connectorx") -> None:
        if reader not in READERS:
            raise ValueError(f"unknown reader {reader!r}; choose one of {sorted(READERS)}")
        self.conn_id = conn_id
        self.reader_name = reader

    @cached_property
    def connection(self) -> Any:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(self.conn_id)

    @cached_property
    def dbapi(self) -> Any:
        """The connection's Airflow DB-API hook (``MySqlHook`` for ``mysql``)."""
        return self.connection.get_hook()

    @cached_property
    def reader(self) -> BatchReader:
        return READERS[self.reader_name](self)

    def _fetch(self, query: Query, *, many: bool) -> Any:
        """Run one query on a connection of its own (closed after), parameters bound by the driver.

        One connection per call, as ``DbApiHook.get_first`` does: calls may come from another
        thread (the reconciling ``COUNT(*)`` runs beside the last part's upload)."""
        from contextlib import closing

        with closing(self.dbapi.get_conn()) as conn, closing(conn.cursor()) as cur:
            for statement in SESSION_SETUP.get(self.connection.conn_type, ()):
                cur.execute(statement)  # counts and bounds see the values the reader reads
            cur.execute(query.sql, query.params or None)
            return cur.fetchall() if many else cur.fetchone()

    def first(self, query: Query) -> tuple[Any, ...] | None:
        row = self._fetch(query, many=False)
        return tuple(row) if row is not None else None

    def scalar(self, query: Query) -> Any:
        row = self.first(query)
        return row[0] if row else None

    def columns(self, table: str) -> list[SourceColumn]:
        rows = self._fetch(columns_query(table), many=True)
        return [SourceColumn(name=r[0], data_type=str(r[1]), column_type=_text(r[2]), nullable=r[3] == "YES",
                             precision=r[4], scale=r[5]) for r in rows]

    def batches(self, query: Query, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        return self.reader.batches(query, schema, batch_rows)

    def full_scan(self, query: Query) -> bool:
        """Whether the server reads ``query`` with a full table scan (``EXPLAIN`` type ``ALL``): the
        window is a large share of the table, so primary-key keyset chunks cost the same read."""
        from contextlib import closing

        with closing(self.dbapi.get_conn()) as conn, closing(conn.cursor()) as cur:
            cur.execute("EXPLAIN " + query.sql, query.params or None)
            names = [str(d[0]).lower() for d in cur.description or ()]
            rows = cur.fetchall()
        if "type" not in names or len(rows) != 1:
            return False
        return _text(rows[0][names.index("type")]).upper() == "ALL"

    def keyset_batches(self, chunks: KeysetChunks, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The window in keyset chunks (see ``KeysetChunks``): at most one chunk is read ahead of
        the caller, whatever the window's size. ``chunks.rows`` is a multiple of ``batch_rows``,
        so every batch is full except the final one (the contract of ``BatchReader``); the empty
        batch that ends a full chunk is not passed on."""
        if chunks.rows % batch_rows:
            raise ValueError(f"chunk rows {chunks.rows} must be a multiple of batch_rows {batch_rows}")
        stream: Iterator[pa.RecordBatch] | None = iter(self.batches(chunks.query(), schema, batch_rows))
        last: pa.RecordBatch | None = None
        while stream is not None:
            following, got = None, 0
            for batch in stream:
                if not batch.num_rows:
                    continue
                got += batch.num_rows
                if got >= chunks.rows and following is None:  # chunk complete: read the next one meanwhile
                    after = batch.column(chunks.key)[batch.num_rows - 1].as_py()
                    following = iter(self.batches(chunks.query(after), schema, batch_rows))
                last = batch
                yield batch
            stream = following
        if last is not None and last.num_rows == batch_rows:  # end with a short batch: every row is read
            yield last.slice(0, 0)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)
