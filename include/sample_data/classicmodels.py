"""classicmodels sample data: the schema and a deterministic generator.

The generator runs inside the server (``INSERT ... SELECT`` over MariaDB's sequence engine,
``seq_1_to_N``), so a million rows take seconds and no Python object per row. Values are
pseudo-random functions of the row number and a seed (CRC32), so the same call always
produces the same rows. ``updated_at`` is spread evenly over ``[start, end)``, including rows
that sit exactly on hour boundaries, which is what incremental extracts must land once.

CLI: ``python -m include.sample_data.classicmodels --orders 100000 --start 2024-01-01 --end 2024-01-03``
(uses the running local stack's MariaDB).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_SQL = Path(__file__).resolve().parents[1] / "sql" / "classicmodels.sql"
TABLES = ("productlines", "products", "offices", "employees", "customers", "orders", "orderdetails", "payments")

RunSql = Callable[..., str]


def create_schema(run_sql: RunSql, database: str = "classicmodels") -> None:
    run_sql(SCHEMA_SQL.read_text(), database=database)


def _ts(dt: datetime) -> str:
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def _spread(start: datetime, end: datetime, n: int) -> str:
    """SQL expression placing row ``seq`` (1..n) at start + (seq-1) * (end-start)/n."""
    span_us = int((end - start).total_seconds() * 1_000_000)
    step = max(span_us // max(n, 1), 1)
    return f"TIMESTAMP('{_ts(start)}') + INTERVAL ((seq - 1) * {step}) MICROSECOND"


def seed_dimensions(run_sql: RunSql, *, at: datetime, database: str = "classicmodels") -> None:
    """Fixed-size dimension tables (the lab's counts), idempotent (REPLACE)."""
    t = _ts(at)
    run_sql(f"""
REPLACE INTO productlines (productLine, textDescription, htmlDescription, image, updated_at)
SELECT ELT(seq, 'Classic Cars','Motorcycles','Planes','Ships','Trains','Trucks and Buses','Vintage Cars'),
       CONCAT('Line ', seq, ' – précision 🚗'), NULL, UNHEX(REPEAT('CAFE', seq)), TIMESTAMP('{t}')
FROM seq_1_to_7;
REPLACE INTO products (productCode, productName, productLine, productScale, productVendor, productDescription,
                       quantityInStock, buyPrice, MSRP, updated_at)
SELECT CONCAT('S', LPAD(seq, 4, '0')), CONCAT('Model ', seq),
       ELT(1 + MOD(seq, 7), 'Classic Cars','Motorcycles','Planes','Ships','Trains','Trucks and Buses','Vintage Cars'),
       ELT(1 + MOD(seq, 4), '1:10','1:18','1:24','1:700'), CONCAT('Vendor ', MOD(seq, 13)),
       CONCAT('Die-cast replica nº', seq, ' 🏁'), MOD(CRC32(seq), 9000),
       ROUND(10 + MOD(CRC32(CONCAT('b', seq)), 9000) / 100, 2), ROUND(20 + MOD(CRC32(CONCAT('m', seq)), 18000) / 100, 2),
       TIMESTAMP('{t}')
FROM seq_1_to_110;
REPLACE INTO offices (officeCode, city, phone, addressLine1, addressLine2, state, country, postalCode, territory, updated_at)
SELECT seq, ELT(seq,'San Francisco','Boston','NYC','Paris','Tokyo','Sydney','London'),
       CONCAT('+1 555 01', seq), CONCAT(seq, ' Main Street'), NULL, NULL,
       ELT(seq,'USA','USA','USA','France','Japan','Australia','UK'), CONCAT('9', LPAD(seq, 4, '0')),
       ELT(seq,'NA','NA','NA','EMEA','Japan','APAC','EMEA'), TIMESTAMP('{t}')
FROM seq_1_to_7;
REPLACE INTO employees (employeeNumber, lastName, firstName, extension, email, officeCode, reportsTo, jobTitle, updated_at)
SELECT 1000 + seq, CONCAT('Last', seq), CONCAT('First', seq), CONCAT('x', 100 + seq),
       CONCAT('e', seq, '@classicmodelcars.com'), 1 + MOD(seq, 7), IF(seq = 1, NULL, 1001),
       IF(seq = 1, 'President', 'Sales Rep'), TIMESTAMP('{t}')
FROM seq_1_to_23;
""", database=database)


def seed_facts(run_sql: RunSql, *, orders: int, start: datetime, end: datetime, seed: int = 42,
               first_order: int = 10100, customers: int = 122, database: str = "classicmodels") -> None:
    """``orders`` orders (1-4 lines each, one payment per 3 orders) and ``customers`` customers,
    with ``updated_at`` spread over ``[start, end)``. Re-running the same call replaces the same rows."""
    ts = _spread(start, end, orders)
    cts = _spread(start, end, customers)
    run_sql(f"""
REPLACE INTO customers (customerNumber, customerName, contactLastName, contactFirstName, phone, addressLine1,
                        addressLine2, city, state, postalCode, country, salesRepEmployeeNumber, creditLimit, updated_at)
SELECT 100 + seq, CONCAT('Customer ', seq, IF(MOD(seq, 5) = 0, ' Łódź 😀', '')), CONCAT('Last', seq),
       CONCAT('First', seq), CONCAT('555-', LPAD(seq, 4, '0')), CONCAT(seq, ' Road'),
       IF(MOD(seq, 3) = 0, NULL, 'Suite 1'), ELT(1 + MOD(seq, 5), 'NYC','Paris','Lyon','Boston','Madrid'),
       NULL, LPAD(MOD(CRC32(CONCAT({seed}, 'p', seq)), 99999), 5, '0'),
       ELT(1 + MOD(seq, 5), 'USA','France','France','USA','Spain'), 1002 + MOD(seq, 20),
       IF(MOD(seq, 7) = 0, NULL, ROUND(MOD(CRC32(CONCAT({seed}, 'c', seq)), 20000000) / 100, 2)), {cts}
FROM seq_1_to_{customers};
REPLACE INTO orders (orderNumber, orderDate, requiredDate, shippedDate, status, comments, customerNumber, updated_at)
SELECT {first_order - 1} + seq, DATE({ts}), DATE({ts}) + INTERVAL 7 DAY,
       IF(MOD(seq, 4) = 0, NULL, DATE({ts}) + INTERVAL 2 DAY),
       ELT(1 + MOD(CRC32(CONCAT({seed}, 's', seq)), 4), 'Shipped','In Process','On Hold','Cancelled'),
       IF(MOD(seq, 3) = 0, NULL, CONCAT('order ', seq, ' ✓ 🚚')),
       100 + 1 + MOD(CRC32(CONCAT({seed}, 'k', seq)), {customers}), {ts}
FROM seq_1_to_{orders};
REPLACE INTO orderdetails (orderNumber, productCode, quantityOrdered, priceEach, orderLineNumber, updated_at)
SELECT {first_order - 1} + s.seq, CONCAT('S', LPAD(1 + MOD(s.seq * 7 + l.seq * 13, 110), 4, '0')),
       1 + MOD(CRC32(CONCAT({seed}, 'q', s.seq, l.seq)), 99),
       ROUND(MOD(CRC32(CONCAT({seed}, 'e', s.seq, l.seq)), 20000) / 100, 2), l.seq,
       TIMESTAMP('{_ts(start)}') + INTERVAL ((s.seq - 1) * {_step(start, end, orders)}) MICROSECOND
FROM seq_1_to_{orders} s JOIN seq_1_to_4 l ON l.seq <= 1 + MOD(CRC32(CONCAT({seed}, 'n', s.seq)), 4);
REPLACE INTO payments (customerNumber, checkNumber, paymentDate, amount, updated_at)
SELECT 100 + 1 + MOD(CRC32(CONCAT({seed}, 'k', seq)), {customers}), CONCAT('CHK', {first_order - 1} + seq),
       DATE({ts}), ROUND(MOD(CRC32(CONCAT({seed}, 'a', seq)), 10000000) / 100, 2), {ts}
FROM seq_1_to_{orders} WHERE MOD(seq, 3) = 0;
""", database=database)


def _step(start: datetime, end: datetime, n: int) -> int:
    span_us = int((end - start).total_seconds() * 1_000_000)
    return max(span_us // max(n, 1), 1)


BENCH_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS {table} (
  id BIGINT NOT NULL PRIMARY KEY,
  customer_id INT NOT NULL,
  order_date DATE NOT NULL,
  status VARCHAR(15) NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  quantity INT NOT NULL,
  discount DECIMAL(5,2) NULL,
  comment VARCHAR(160) NULL,
  created_at DATETIME(6) NOT NULL,
  updated_at DATETIME(6) NOT NULL,
  KEY ix_{table}_updated_at (updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def seed_bench_table(run_sql: RunSql, *, rows: int, start: datetime, end: datetime, table: str = "bench_orders",
                     database: str = "classicmodels", chunk: int = 1_000_000) -> None:
    """A wide orders-like table of ``rows`` rows x 10 columns (about 220 bytes per row as client
    text), ``updated_at`` spread over ``[start, end)``; for the benchmark. Idempotent (REPLACE)."""
    if not table.isidentifier():
        raise ValueError(f"bad table name {table!r}")
    run_sql(BENCH_TABLE_SQL.format(table=table) + ";", database=database)
    step = _step(start, end, rows)
    for first in range(0, rows, chunk):
        n = min(chunk, rows - first)
        run_sql(f"""
REPLACE INTO {table}
SELECT {first} + seq, 1 + MOD(CRC32(seq + {first}), 50000), DATE(TIMESTAMP('{_ts(start)}') + INTERVAL
       (({first} + seq - 1) * {step}) MICROSECOND),
       ELT(1 + MOD(seq, 4), 'Shipped','In Process','On Hold','Cancelled'),
       ROUND(MOD(CRC32(CONCAT('a', seq + {first})), 10000000) / 100, 2), 1 + MOD(seq, 99),
       IF(MOD(seq, 5) = 0, NULL, ROUND(MOD(seq, 5000) / 100, 2)),
       CONCAT('order ', {first} + seq, ' ', REPEAT('lorem ipsum ', 1 + MOD(seq, 9)), IF(MOD(seq, 11) = 0, '😀', '')),
       TIMESTAMP('{_ts(start)}') + INTERVAL (({first} + seq - 1) * {step}) MICROSECOND,
       TIMESTAMP('{_ts(start)}') + INTERVAL (({first} + seq - 1) * {step}) MICROSECOND
FROM seq_1_to_{n};""", database=database)


def main(argv: list[str] | None = None) -> None:
    from include.stack.cli import running_mariadb

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--start", type=datetime.fromisoformat, default=datetime(2024, 1, 1))
    p.add_argument("--end", type=datetime.fromisoformat, default=datetime(2024, 1, 3))
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    svc = running_mariadb()
    seed_dimensions(svc.admin_sql, at=a.start)
    seed_facts(svc.admin_sql, orders=a.orders, start=a.start, end=a.end, seed=a.seed)
    print(f"seeded {a.orders} orders over [{a.start}, {a.end})")


if __name__ == "__main__":
    main()
