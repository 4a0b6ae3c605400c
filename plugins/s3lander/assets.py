"""Airflow Assets for landed datasets: one per ``zone/source/dataset``.

A task that publishes one known dataset lists ``dataset_asset(source, dataset)`` in its
``outlets``. A mapped task publishes a different dataset per map index, but outlets are shared
by all its instances and Airflow emits an event for every declared outlet on success; so a
mapped task declares ``landing_alias(name)`` instead and each instance emits exactly the
dataset it published with ``emit_dataset_event`` (the alias resolves to the real Asset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from s3lander import settings


def dataset_uri(source: str, dataset: str) -> str:
    """``s3://bucket/zone/source/dataset``: without a trailing slash, the form Airflow normalises S3
    asset URIs to, so declared outlets and emitted events name the same Asset."""
    return f"s3://{settings.landing_bucket()}/{settings.landing_zone()}/{source}/{dataset}"


def dataset_asset(source: str, dataset: str) -> Any:
    """The Asset a publishing task lists in ``outlets`` (name ``zone.source.dataset``)."""
    from airflow.sdk import Asset

    return Asset(uri=dataset_uri(source, dataset), name=f"{settings.landing_zone()}.{source}.{dataset}",
                 group="landing")


def landing_alias(name: str) -> Any:
    """The AssetAlias a mapped publishing task lists in ``outlets``."""
    from airflow.sdk import AssetAlias

    return AssetAlias(name=f"landing:{name}", group="landing")


def emit_dataset_event(context: Mapping[str, Any], alias: str, source: str, dataset: str,
                       extra: dict[str, Any] | None = None) -> None:
    """Record that this task instance published ``source/dataset`` (through the alias ``alias``)."""
    context["outlet_events"][landing_alias(alias)].add(dataset_asset(source, dataset), extra=extra or {})
