"""The demo music-catalogue REST API (``include/demo_api``) served by uvicorn on a free port.

A fresh OAuth2 client id and secret are generated per start and written to a 0600 config
file the server reads (never on its command line). The ``spotify_api`` http connection
carries them (login = client id, password = client secret); the secret is also the key of
the ``/admin`` endpoints tests use to switch faults on and off.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from typing import Any

from include.stack.base import HOST, REPO_ROOT, Service, ServiceState, free_port, new_secret


class DemoApi(Service):
    name = "api"
    start_timeout = 30.0
    stop_timeout = 10.0

    #: catalogue and server settings (include/demo_api/__main__.py DEFAULTS); subclasses or the bench may override
    options: dict[str, Any] = {}

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        port = free_port()
        client_id, secret = f"demo-{new_secret(6)}", new_secret()
        config = self.dir / "demo_api.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**self.options, "client_id": client_id, "client_secret": secret}, f)
        argv = [sys.executable, "-m", "include.demo_api", "--host", HOST, "--port", str(port), "--config", str(config)]
        info = {"host": HOST, "port": port, "client_id": client_id, "client_secret": secret,
                "base_url": f"http://{HOST}:{port}"}
        return argv, {"http": port}, info

    def process_env(self) -> dict[str, str] | None:
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path}

    def ready(self, state: ServiceState) -> bool:
        with urllib.request.urlopen(f"{state.info['base_url']}/health", timeout=1) as r:  # noqa: S310 - loopback
            return r.status == 200

    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        i = state.info
        return {"spotify_api": {"conn_type": "http", "host": i["host"], "port": i["port"], "schema": "http",
                                "login": i["client_id"], "password": i["client_secret"]}}

    def env(self, state: ServiceState) -> dict[str, str]:
        return {"DEMO_API_URL": state.info["base_url"]}

    # --- admin, for tests and the benchmark -----------------------------------------------------------
    @staticmethod
    def admin(state: ServiceState, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``/admin/<action>`` (stats, config, faults, reset, expire-tokens); return its JSON."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{state.info['base_url']}/admin/{action}", data=data,  # noqa: S310
                                     method="GET" if data is None and action == "stats" else "POST",
                                     headers={"X-Admin-Key": state.info["client_secret"],
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
            return json.loads(r.read())
