"""Routing: which dataset, and which event-time partition, an event lands in.

Routers are small strategy classes chosen by name (``ROUTERS``); a new rule is a new class.
Every landed row also gets a partition hour: the UTC hour of its event timestamp for valid
events, the hour of the batch's interval start for error records (which may have no usable
event time).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

#: default dataset names (the third key segment: raw/<source>/<dataset>/)
USA_DATASET = "sessions_usa"
INTERNATIONAL_DATASET = "sessions_international"
ERRORS_DATASET = "sessions_errors"


class Router(ABC):
    """Maps a valid event to the name of the dataset it lands in."""

    name: ClassVar[str]

    @abstractmethod
    def route(self, event: dict[str, Any]) -> str: ...

    @abstractmethod
    def datasets(self) -> list[str]:
        """Every dataset this router can return (for outlets and docs)."""


class CountryRouter(Router):
    """Home-country sessions to one dataset, all others to another (the lab's USA vs international).

    Country names are compared case-insensitively after trimming, so ``"usa "`` is the USA.
    """

    name = "country"

    def __init__(self, *, home_countries: Iterable[str] = ("USA",), home_dataset: str = USA_DATASET,
                 other_dataset: str = INTERNATIONAL_DATASET) -> None:
        self.home = {c.strip().upper() for c in home_countries}
        if not self.home:
            raise ValueError("CountryRouter needs at least one home country")
        self.home_dataset, self.other_dataset = home_dataset, other_dataset

    def route(self, event: dict[str, Any]) -> str:
        return self.home_dataset if event["country"].strip().upper() in self.home else self.other_dataset

    def datasets(self) -> list[str]:
        return [self.home_dataset, self.other_dataset]


class SingleDatasetRouter(Router):
    """Every valid event to one dataset (no split)."""

    name = "single"

    def __init__(self, *, dataset: str = "sessions") -> None:
        self.dataset = dataset

    def route(self, event: dict[str, Any]) -> str:
        return self.dataset

    def datasets(self) -> list[str]:
        return [self.dataset]


ROUTERS: dict[str, type[Router]] = {cls.name: cls for cls in (CountryRouter, SingleDatasetRouter)}


def get_router(name: str, **options: Any) -> Router:
    try:
        return ROUTERS[name](**options)
    except KeyError:
        raise ValueError(f"unknown router {name!r}; choose one of {sorted(ROUTERS)}") from None


def partition_hour(ts: datetime) -> datetime:
    """The start of the UTC hour containing ``ts`` (the event-time partition)."""
    return ts.replace(minute=0, second=0, microsecond=0)
