"""Kinesis Data Streams served by moto's server mode (``moto_server``), data in memory.

There is no real open-source Kinesis server, so this is the one place the stack uses moto.
It listens on a free 127.0.0.1 port and provides the ``kinesis_default`` AWS connection
(``endpoint_url`` plus dummy keys generated at start: moto accepts any). The demo stream is
created once the server answers.
"""

from __future__ import annotations

from typing import Any

from include.stack.base import HOST, VENV_BIN, Service, ServiceState, free_port, new_secret, require_binary

DEMO_STREAM = "browsing-sessions"
DEMO_SHARDS = 2
REGION = "us-east-1"


class KinesisServer(Service):
    name = "kinesis"
    start_timeout = 60.0
    stop_timeout = 10.0

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        moto = require_binary("moto_server", package="moto[server] (PyPI, in requirements-dev.txt)",
                              extra_dirs=[str(VENV_BIN)])
        port = free_port()
        info = {"endpoint_url": f"http://{HOST}:{port}", "access_key": "moto" + new_secret(6),
                "secret_key": new_secret(24), "region": REGION, "stream": DEMO_STREAM}
        return [moto, "-H", HOST, "-p", str(port)], {"kinesis": port}, info

    def process_env(self) -> dict[str, str] | None:
        import os

        # keep moto's state in memory and its log quiet; never reach for real AWS metadata
        return {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false", "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self, state: ServiceState):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "kinesis", endpoint_url=state.info["endpoint_url"], region_name=state.info["region"],
            aws_access_key_id=state.info["access_key"], aws_secret_access_key=state.info["secret_key"],
            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=30,
                          max_pool_connections=16))

    def ready(self, state: ServiceState) -> bool:
        self.client(state).list_streams(Limit=1)
        return True

    def after_start(self, state: ServiceState) -> None:
        ensure_stream(self.client(state), state.info["stream"], shards=DEMO_SHARDS)

    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        extra = {"endpoint_url": state.info["endpoint_url"], "region_name": state.info["region"]}
        return {"kinesis_default": {"conn_type": "aws", "login": state.info["access_key"],
                                    "password": state.info["secret_key"], "extra": extra}}

    def env(self, state: ServiceState) -> dict[str, str]:
        return {"KINESIS_STREAM": state.info["stream"]}


def ensure_stream(client: Any, name: str, *, shards: int = DEMO_SHARDS, timeout: float = 30.0) -> None:
    """Create stream ``name`` with ``shards`` shards unless it exists; wait until it is ACTIVE."""
    from include.stack.base import wait_until

    if name not in client.list_streams().get("StreamNames", []):
        client.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", what=f"Kinesis stream {name}", timeout=timeout)
