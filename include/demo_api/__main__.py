"""``python -m include.demo_api --port N [--config file.json] [--albums N] ...``: serve the demo API.

Settings come from a JSON config file (written mode 0600 by the stack service, so the
client secret never appears in a process list), overridable on the command line or with
``DEMO_API_*`` environment variables.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from include.demo_api.app import Settings, create_app
from include.demo_api.catalogue import Catalogue

DEFAULTS = {"seed": 42, "albums": 40, "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-03T00:00:00+00:00",
            "token_ttl": 3600.0, "rate_limit": 0, "rate_window": 1.0, "retry_after_format": "seconds",
            "max_limit": 50, "client_id": "", "client_secret": ""}


def settings_from(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m include.demo_api", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--config", type=Path, help="JSON file with any of: " + ", ".join(DEFAULTS))
    for k, v in DEFAULTS.items():
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(v), default=None)
    a = p.parse_args(argv)
    cfg = dict(DEFAULTS)
    if a.config:
        cfg.update(json.loads(a.config.read_text()))
    for k, v in DEFAULTS.items():
        env = os.environ.get(f"DEMO_API_{k.upper()}")
        if env is not None:
            cfg[k] = type(v)(env)
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    if not cfg["client_id"] or not cfg["client_secret"]:
        p.error("client_id and client_secret are required (config file or DEMO_API_CLIENT_ID/_SECRET)")
    cfg["host"], cfg["port"] = a.host, a.port
    return cfg


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    cfg = settings_from(argv)
    catalogue = Catalogue(seed=cfg["seed"], albums=cfg["albums"], start=cfg["start"], end=cfg["end"])
    settings = Settings(client_id=cfg["client_id"], client_secret=cfg["client_secret"], token_ttl=cfg["token_ttl"],
                        rate_limit=cfg["rate_limit"], rate_window=cfg["rate_window"],
                        retry_after_format=cfg["retry_after_format"], max_limit=cfg["max_limit"])
    app = create_app(catalogue, settings)
    # httptools + uvloop and no access log: the server must never be the benchmark's bottleneck
    uvicorn.run(app, host=cfg["host"], port=cfg["port"], http="httptools", loop="uvloop", access_log=False,
                log_level="warning", timeout_keep_alive=30)


if __name__ == "__main__":
    main()
