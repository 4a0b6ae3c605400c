"""LandingOperator: what every ``<source>_to_s3`` operator shares (the run's window, the publisher)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from s3lander import settings
from s3lander.hooks.landing import LandingHook
from s3lander.landing.intervals import Interval, interval_from_context

if TYPE_CHECKING:
    from airflow.sdk import Context

    from s3lander.landing.publisher import IntervalPublisher


class LandingOperator(BaseOperator):
    """Base of the transfer operators: resolves the run's interval and builds publishers.

    :param source: source name, the second segment of every key (``raw/<source>/...``) (templated)
    :param aws_conn_id: connection of the landing bucket
    :param bucket: landing bucket (default ``$LANDING_BUCKET`` or ``landing``)
    """

    template_fields: Sequence[str] = ("source",)

    def __init__(self, *, source: str, aws_conn_id: str = settings.DEFAULT_AWS_CONN_ID, bucket: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.aws_conn_id = aws_conn_id
        self.bucket = bucket

    @cached_property
    def landing(self) -> LandingHook:
        return LandingHook(aws_conn_id=self.aws_conn_id, bucket=self.bucket, caller=type(self).__name__)

    def interval(self, context: Context) -> Interval:
        """The run's ``[start, end)``: the ``window_start``/``window_end`` params, else the data interval."""
        return interval_from_context(context)

    def publisher(self, context: Context, dataset: str, **kwargs: Any) -> IntervalPublisher:
        location = self.landing.location(self.source, dataset)
        return self.landing.publisher(location, self.interval(context), context["run_id"], **kwargs)
