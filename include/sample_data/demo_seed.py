"""Demo data for ``make demo``: each ``prepare_*`` puts one source's data in place for a day."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from include.sample_data import classicmodels


def prepare_mariadb(stack: Any, start: datetime, end: datetime) -> None:
    """classicmodels: the dimension tables, and 5,000 orders spread over [start, end)."""
    svc, _ = stack.service("mariadb")
    classicmodels.seed_dimensions(svc.admin_sql, at=start)
    classicmodels.seed_facts(svc.admin_sql, orders=5000, start=start, end=end)
