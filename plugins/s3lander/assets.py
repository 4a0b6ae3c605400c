"""Airflow Assets for landed datasets: one per ``zone/source/dataset``, declared at parse time."""

from __future__ import annotations

from typing import Any

from s3lander import settings


def dataset_uri(source: str, dataset: str) -> str:
    return f"s3://{settings.landing_bucket()}/{settings.landing_zone()}/{source}/{dataset}/"


def dataset_asset(source: str, dataset: str) -> Any:
    """The Asset a publishing task lists in ``outlets`` (name ``zone.source.dataset``)."""
    from airflow.sdk import Asset

    return Asset(uri=dataset_uri(source, dataset), name=f"{settings.landing_zone()}.{source}.{dataset}",
                 group="landing")
