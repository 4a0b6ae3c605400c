"""Session fixture of the demo REST API (the "api" stack service) and helpers for the REST tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import start_service


class Api:
    """The running demo API: admin calls (faults, config, stats) for tests."""

    def __init__(self, svc: Any, state: Any) -> None:
        self.svc, self.state = svc, state

    def admin(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.svc.admin(self.state, action, body)

    def faults(self, *rules: dict[str, Any]) -> None:
        self.admin("faults", {"faults": list(rules)})

    def config(self, **settings: Any) -> None:
        self.admin("config", settings)

    def stats(self) -> dict[str, Any]:
        return self.admin("stats")["stats"]


@pytest.fixture(scope="session")
def api_service(stack: Any) -> Api:
    svc, state = start_service(stack, "api")
    return Api(svc, state)


@pytest.fixture
def api(api_service: Api) -> Iterator[Api]:
    """The demo API, reset (no faults, default limits, zeroed stats) before and after each test."""
    api_service.admin("reset")
    yield api_service
    api_service.admin("reset")
