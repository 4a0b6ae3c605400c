"""The whole product as a user runs it: ``make up`` (stack + Airflow) and a real Chromium.

One module-scoped stack per e2e module: the data services, a private PostgreSQL metadata DB
and the four Airflow processes, in a private state folder, with the api-server on a free port.
MariaDB gets the classicmodels demo day (2024-01-01). Chromium is Debian's ``/usr/bin/chromium``
driven by Playwright (its own browser download is not used).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from include.stack.base import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEMO_DAY = (datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc))


@dataclass
class AirflowUp:
    """A running ``make up``: where the UI is, the login, and a REST client."""

    url: str
    user: str
    password: str
    state_dir: Path
    info: dict[str, Any] = field(default_factory=dict)
    _token: str | None = None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the public REST API (``/api/v2/...``) as the admin user."""
        if self._token is None:
            self._token = self._post_json("/auth/token", {"username": self.user, "password": self.password},
                                          auth=False)["access_token"]
        return self._post_json(path, body, method=method)

    def _post_json(self, path: str, body: Any, *, method: str = "POST", auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - our own http:// api-server
            self.url.replace("localhost", "127.0.0.1") + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path} -> {e.code}: {e.read()[:2000]!r}") from None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed ``dag_id`` into the metadata DB."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            except AssertionError:
                time.sleep(2)
        errors = self.api("GET", "/api/v2/importErrors")
        raise AssertionError(f"DAG {dag_id} did not appear in {timeout:.0f} s; import errors: {errors}")

    def s3(self) -> Any:
        from include.stack.cli import Stack

        svc, state = Stack(self.state_dir).service("s3")
        return svc.client(state)


@pytest.fixture(scope="module")
def airflow_up() -> Iterator[AirflowUp]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' (make sysdeps)")
    from include.sample_data.demo_seed import prepare_mariadb
    from include.stack import airflow
    from include.stack.cli import Stack

    state = Path(tempfile.mkdtemp(prefix="s3lander-e2e-"))
    state.chmod(0o755)  # the PostgreSQL server runs as the postgres user when we are root
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_PORT", str(free_port()))
    # the unit/integration tiers' private SQLite must not leak into the stack's Airflow
    mp.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    try:
        info = airflow.up(state)
        prepare_mariadb(Stack(state), *DEMO_DAY)
        yield AirflowUp(url=info["url"], user=info["user"], password=info["password"], state_dir=state, info=info)
    finally:
        mp.undo()
        airflow.down(state)
        if os.environ.get("E2E_KEEP_STATE") != "1":
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Any, airflow_up: AirflowUp) -> Iterator[Any]:
    """A signed-in page (the simple auth manager's login form)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(airflow_up.url + "/")
    pg.fill("input[name=username]", airflow_up.user)
    pg.fill("input[name=password]", airflow_up.password)
    pg.click("button[type=submit]")
    pg.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
    yield pg
    ctx.close()
