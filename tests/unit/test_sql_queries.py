"""Pure SQL logic: identifiers, window predicates, key-range splits, literal binding."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from s3lander.sql.identifiers import IdentifierError, quote_identifier
from s3lander.sql.queries import (
    BindError,
    KeyRange,
    Predicate,
    Query,
    bind_literals,
    count_query,
    render_literal,
    select_query,
    split_key_range,
    window_predicate,
)

UTC = dt.timezone.utc


@pytest.mark.parametrize("name", ["orders", "order_details", "_x", "a$b", "db.orders"])
def test_valid_identifiers_are_backquoted(name):
    assert quote_identifier(name) == ".".join(f"`{p}`" for p in name.split("."))


@pytest.mark.parametrize("name", ["", "1abc", "a b", "x`; DROP TABLE t; --", "a.b.c", "o'rders", "a" * 65, None])
def test_bad_identifiers_are_refused_with_the_name(name):
    with pytest.raises(IdentifierError, match="not a valid SQL identifier|more than one"):
        quote_identifier(name, what="table")


def test_window_predicate_is_half_open_with_naive_utc_params():
    p = window_predicate("updated_at", dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                         dt.datetime(2024, 1, 1, 1, tzinfo=UTC))
    assert p.sql == "`updated_at` >= %s AND `updated_at` < %s"
    assert p.params == (dt.datetime(2024, 1, 1, 0), dt.datetime(2024, 1, 1, 1))


def test_threshold_predicate_excludes_the_landed_watermark():
    p = window_predicate("wm", dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC),
                         start_inclusive=False)
    assert p.sql == "`wm` > %s AND `wm` <= %s"


def test_select_and_count_share_the_predicate():
    p = window_predicate("updated_at", dt.datetime(2024, 1, 1, tzinfo=UTC), None)
    s = select_query("orders", ["`a`", "`b`"], p & KeyRange(0, "id", 5, 9).predicate(), label="raw.x.orders")
    assert s.sql == ("/* s3lander raw.x.orders */ SELECT `a`, `b` FROM `orders` "
                     "WHERE `updated_at` >= %s AND `id` >= %s AND `id` < %s")
    assert s.params == (dt.datetime(2024, 1, 1), 5, 9)
    assert count_query("orders", p) == Query("SELECT COUNT(*) FROM `orders` WHERE `updated_at` >= %s", p.params)


@pytest.mark.parametrize("lo,hi,parts", [(1, 100, 3), (10, 11, 5), (0, 1_000_003, 7), (5, 5, 4), (-50, 50, 4)])
def test_key_ranges_cover_every_key_exactly_once(lo, hi, parts):
    ranges = split_key_range("id", lo, hi, parts)
    assert ranges[0].lo is None and ranges[-1].hi is None
    assert [r.index for r in ranges] == list(range(len(ranges))) and all(r.count == len(ranges) for r in ranges)
    for key in range(lo - 3, hi + 4):
        owners = [r for r in ranges if (r.lo is None or key >= r.lo) and (r.hi is None or key < r.hi)]
        assert len(owners) == 1, key
    assert len({r.stem for r in ranges}) == len(ranges)


def test_empty_window_gives_one_open_range():
    assert split_key_range("id", None, None, 4) == [KeyRange(0, "id", None, None, 1)]
    assert KeyRange(0, "id", None, None).predicate().sql == ""


def test_key_range_round_trips_through_xcom():
    r = KeyRange(2, "id", 10, 20, 3)
    assert KeyRange.from_dict(r.to_dict()) == r and r.stem == "part-r002"


@pytest.mark.parametrize("value,literal", [
    (None, "NULL"), (42, "42"), (-7, "-7"), (True, "TRUE"), (Decimal("12.50"), "12.50"),
    (dt.datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC), "TIMESTAMP'2024-01-01 00:00:00.000005'"),
    (dt.date(2024, 2, 29), "DATE'2024-02-29'"), (b"\x00'", "X'0027'"),
    ("x'; DROP TABLE t; --", "_utf8mb4 X'78273b2044524f50205441424c4520743b202d2d'"),
])
def test_literals_never_carry_text_into_sql(value, literal):
    assert render_literal(value) == literal


def test_bind_checks_the_placeholder_count_and_types():
    assert bind_literals(Query("a = %s AND b < %s", (1, dt.date(2024, 1, 1)))) == "a = 1 AND b < DATE'2024-01-01'"
    with pytest.raises(BindError, match="2 placeholders but 1"):
        bind_literals(Query("a = %s AND b < %s", (1,)))
    with pytest.raises(BindError, match="float"):
        render_literal(1.5)
    with pytest.raises(BindError, match="non-finite"):
        render_literal(Decimal("NaN"))


def test_keyset_chunks_query_orders_by_the_key_after_the_last_one_with_the_primary_index():
    from s3lander.sql.queries import KeysetChunks

    where = Predicate("`updated_at` >= %s", (dt.datetime(2024, 1, 1),))
    chunks = KeysetChunks(table="orders", select_list=("`id`", "`v`"), where=where, key="id", rows=8000,
                          label="orders 2024-01-01T00 part")
    first, later = chunks.query(), chunks.query(41)
    assert first.sql == ("/* s3lander orders 2024-01-01T00 part */ SELECT `id`, `v` FROM `orders` FORCE INDEX (PRIMARY)"
                         " WHERE `updated_at` >= %s ORDER BY `id` LIMIT 8000")
    assert later.sql.endswith("WHERE `updated_at` >= %s AND `id` > %s ORDER BY `id` LIMIT 8000")
    assert later.params == (dt.datetime(2024, 1, 1), 41)
    assert "`id` > 41 ORDER BY" in bind_literals(later)


def _count_ranges(boundaries, parts):
    from s3lander.sql.queries import KeysetChunks

    where = Predicate("`updated_at` >= %s", ("w",))
    chunks = KeysetChunks(table="orders", select_list=("`id`",), where=where, key="id", rows=10)
    return chunks.count_queries(boundaries, parts)


def test_keyset_count_ranges_split_at_chunk_boundaries_and_cover_the_whole_window():
    q = _count_ranges([10, 20, 30, 40, 50], 2)  # six chunks: three per range
    assert [x.sql.split(" WHERE ")[1] for x in q] == ["`updated_at` >= %s AND `id` <= %s",
                                                      "`updated_at` >= %s AND `id` > %s"]
    assert [x.params for x in q] == [("w", 30), ("w", 30)]
    assert all(x.sql.startswith("SELECT COUNT(*) FROM `orders` FORCE INDEX (PRIMARY) WHERE") for x in q)
    three = _count_ranges([10, 20, 30, 40, 50], 3)  # two chunks per range, the middle one closed
    assert [x.params for x in three] == [("w", 20), ("w", 20, 40), ("w", 40)]
    assert three[1].sql.endswith("`id` > %s AND `id` <= %s")


def test_keyset_count_ranges_never_outnumber_the_chunks_and_one_range_is_the_whole_window():
    assert [x.params for x in _count_ranges([7], 4)] == [("w", 7), ("w", 7)]
    (whole,) = _count_ranges([], 2)  # one chunk read: no boundary to split at
    assert whole.sql == "SELECT COUNT(*) FROM `orders` FORCE INDEX (PRIMARY) WHERE `updated_at` >= %s"
    assert whole.params == ("w",)
    with pytest.raises(ValueError, match="parts"):
        _count_ranges([1], 0)


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_select_query_refuses_a_limit_that_is_not_a_positive_integer(limit):
    with pytest.raises(ValueError, match="limit"):
        select_query("orders", ["`id`"], Predicate(), limit=limit)
