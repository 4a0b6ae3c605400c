"""docker-compose.yaml, checked without a Docker engine: it parses, it is the official Airflow shape
(CeleryExecutor, PostgreSQL, Redis, api-server, scheduler, dag-processor, triggerer, workers),
every service is runnable and observable, and every connection id the DAGs use is defined for
the workers, pointing at a service of the file.

The connection ids are discovered from the code and the configs (each task's ``*conn_id``
attributes, mapped tasks' partial arguments, and every ``conn_id`` in ``include/config/*.yaml``),
so a new DAG or source cannot silently miss its connection in compose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
#: compose's ${VAR:-default} / ${VAR:?err} / ${VAR} interpolation
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?(?::?\?[^}]*)?\}")
AIRFLOW_COMMANDS = {"api-server", "scheduler", "dag-processor", "triggerer", "celery worker"}
SOURCES = {"mysql", "minio", "sftp", "demo-api", "kinesis"}


def _interpolate(value: str) -> str:
    """Substitute defaults the way ``docker compose`` does with an empty environment."""
    return _VAR.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE.exists(), f"{COMPOSE} is missing"
    return yaml.safe_load(COMPOSE.read_text())  # safe_load resolves the <<: merge keys


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _command(svc: dict[str, Any]) -> str:
    cmd = svc.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _one_shots(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait for to *complete* (init jobs), not to be healthy."""
    out = set()
    for svc in services.values():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, dict):
            out |= {n for n, d in deps.items() if (d or {}).get("condition") == "service_completed_successfully"}
    return out


def _by_command(services: dict[str, dict[str, Any]], command: str) -> list[str]:
    return [n for n, s in services.items() if _command(s).strip() == command]


def test_official_airflow_shape(services: dict[str, dict[str, Any]]) -> None:
    for command in AIRFLOW_COMMANDS:
        assert _by_command(services, command), f"no service runs 'airflow {command}'"
    env = services[_by_command(services, "celery worker")[0]]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlparse(_interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])).hostname in services
    assert services[urlparse(_interpolate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])).hostname]["image"].startswith(
        "postgres")
    assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname in services
    assert services[urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname]["image"].startswith("redis")
    api = _by_command(services, "api-server")[0]
    assert urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname == api
    # one JWT secret for every process (task tokens are signed by one and checked by another)
    secrets = {_interpolate(services[n]["environment"].get("AIRFLOW__API_AUTH__JWT_SECRET", ""))
               for c in AIRFLOW_COMMANDS for n in _by_command(services, c)}
    assert len(secrets) == 1 and "" not in secrets, secrets
    assert set(services) >= SOURCES, f"missing sources: {SOURCES - set(services)}"


def test_every_service_is_runnable_and_observable(compose: dict[str, Any],
                                                  services: dict[str, dict[str, Any]]) -> None:
    one_shots = _one_shots(services)
    problems = []
    declared_volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        if not (svc.get("image") or svc.get("build")):
            problems.append(f"{name}: neither image nor build")
        if name not in one_shots and not svc.get("healthcheck", {}).get("test"):
            problems.append(f"{name}: long-running but no healthcheck")
        for vol in svc.get("volumes") or []:
            src = _interpolate(vol).split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith((".", "/")):
                path = (REPO / src).resolve() if src.startswith(".") else Path(src)
                if path.name not in ("logs", "config") and not path.exists():
                    problems.append(f"{name}: bind mount {src} does not exist in the repo")
            elif src not in declared_volumes:
                problems.append(f"{name}: volume {src!r} is not declared under volumes:")
        deps = svc.get("depends_on") or {}
        for dep, cond in (deps.items() if isinstance(deps, dict) else []):
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
            elif (cond or {}).get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name}: waits for {dep} to be healthy, which has no healthcheck")
    for name in [*_by_command(services, "api-server"), *SOURCES]:
        if not services[name].get("ports"):
            problems.append(f"{name}: no published port")
    for name in ("postgres", "mysql", "minio", "sftp"):
        if not services[name].get("volumes"):
            problems.append(f"{name}: no volume for its data")
    assert not problems, "\n".join(problems)


def test_mysql_is_seeded_with_the_sample_schema(services: dict[str, dict[str, Any]]) -> None:
    mysql = services["mysql"]
    assert mysql["image"].startswith("mysql:8")
    seeds = [v for v in mysql["volumes"] if "/docker-entrypoint-initdb.d/" in v]
    assert any(v.startswith("./include/sql/classicmodels.sql:") for v in seeds), seeds
    assert mysql["environment"]["MYSQL_DATABASE"] == "classicmodels"


def test_pools_the_dags_use_are_created(services: dict[str, dict[str, Any]]) -> None:
    pools = REPO / "include" / "config" / "pools.json"
    if pools.exists():
        init = [s for s in services.values() if "pools import" in _command(s)]
        assert init and "include/config/pools.json" in _command(init[0])


# --- connection ids --------------------------------------------------------------------------
def _yaml_conn_ids(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if str(k).endswith("conn_id") and isinstance(v, str):
                out.add(v)
            else:
                out |= _yaml_conn_ids(v)
    elif isinstance(node, list):
        for v in node:
            out |= _yaml_conn_ids(v)
    return out


def used_conn_ids() -> set[str]:
    """Every connection id a DAG task or a source config of the repo refers to."""
    from airflow.dag_processing.dagbag import DagBag

    ids: set[str] = set()
    for path in sorted((REPO / "include" / "config").glob("*.y*ml")):
        ids |= _yaml_conn_ids(yaml.safe_load(path.read_text()))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    for dag in bag.dags.values():
        for task in dag.tasks:
            attrs = {k: getattr(task, k, None) for k in dir(task) if k.endswith("conn_id") and not k.startswith("_")}
            attrs.update({k: v for k, v in (getattr(task, "partial_kwargs", None) or {}).items()
                          if k.endswith("conn_id")})
            ids |= {v for v in attrs.values() if isinstance(v, str) and v}
    return ids


def test_conn_id_discovery_finds_the_known_sources() -> None:
    ids = used_conn_ids()
    assert "aws_default" in ids  # every landing task writes through it
    assert len(ids) >= 2, ids


def test_every_connection_a_dag_uses_is_defined_for_the_workers(services: dict[str, dict[str, Any]]) -> None:
    ids = used_conn_ids()
    workers = _by_command(services, "celery worker")
    assert workers
    problems = []
    for worker in workers:
        env = services[worker]["environment"]
        for conn_id in sorted(ids):
            var = f"AIRFLOW_CONN_{conn_id.upper()}"
            if var not in env:
                problems.append(f"{worker}: {var} missing (conn id {conn_id!r} is used by the DAGs/configs)")
                continue
            conn = json.loads(_interpolate(env[var]))
            if not conn.get("conn_type"):
                problems.append(f"{var}: no conn_type")
            host = conn.get("host") or urlparse((conn.get("extra") or {}).get("endpoint_url", "")).hostname
            if host and host not in services:
                problems.append(f"{var}: host {host!r} is not a service of the compose file")
    assert not problems, "\n".join(problems)


def test_sftp_host_keys_are_verified(services: dict[str, dict[str, Any]]) -> None:
    env = services[_by_command(services, "celery worker")[0]]["environment"]
    extra = json.loads(_interpolate(env["AIRFLOW_CONN_SFTP_PARTNER"]))["extra"]
    assert extra.get("no_host_key_check") is False
    assert extra.get("known_hosts") or extra.get("host_key")
