"""What every DAG of the project shares: default_args, start date, the window-override params.

DAG files stay declarative: ``default_args=DEFAULT_ARGS``, ``params={**window_params(), ...}``.
Importing this module is cheap (no pyarrow, boto3, network).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(hours=2),
}


def window_params() -> dict[str, Any]:
    """Optional ``window_start``/``window_end`` overrides of the run's data interval (UTC, ISO-8601).

    Empty means the run's own data interval; a manual run's is the last complete interval.
    """
    from airflow.sdk import Param

    desc = ("Optional override of the window {} (UTC, e.g. 2024-01-01T00:00:00+00:00). "
            "Leave empty to use the run's data interval.")
    return {
        "window_start": Param(None, type=["null", "string"], format="date-time", title="Window start",
                              description=desc.format("start (inclusive)")),
        "window_end": Param(None, type=["null", "string"], format="date-time", title="Window end",
                            description=desc.format("end (exclusive)")),
    }
