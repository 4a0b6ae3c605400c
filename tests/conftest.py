"""Test-wide set-up: a private AIRFLOW_HOME, and session fixtures that own the real services.

Airflow reads its configuration at import, so the environment is set here, before any test
module imports it. Each service fixture starts its server on a free 127.0.0.1 port with a
private data dir (under one temporary state folder), exports the generated ``AIRFLOW_CONN_*``
values into ``os.environ`` and stops the server at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
_TMP = Path(tempfile.mkdtemp(prefix="s3lander-tests-"))
os.environ["AIRFLOW_HOME"] = str(_TMP / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_TMP / 'airflow' / 'airflow.db'}")
os.environ["STACK_STATE_DIR"] = str(_TMP / "stack")
for p in (str(REPO / "plugins"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)
(_TMP / "airflow").mkdir(parents=True, exist_ok=True)

from include.stack.base import ServiceState  # noqa: E402
from include.stack.cli import Stack  # noqa: E402


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The session's stack (services start on first use through the fixtures below)."""
    st = Stack(_TMP / "stack")
    yield st
    st.down()
    shutil.rmtree(_TMP, ignore_errors=True)


def start_service(stack: Stack, name: str) -> tuple[Any, ServiceState]:
    """Start ``name`` if needed, export the stack's connections, return (service, state)."""
    stack.up([name])
    os.environ.update(stack.environment())
    return stack.service(name)


@pytest.fixture(scope="session")
def s3(stack: Stack) -> Any:
    """SeaweedFS S3 with the landing bucket; returns a boto3 client bound to it."""
    svc, state = start_service(stack, "s3")
    return svc.client(state)


@pytest.fixture(scope="session")
def mariadb(stack: Stack) -> Any:
    """MariaDB with the classicmodels schema (empty tables); returns the service (``admin_sql``)."""
    svc, _ = start_service(stack, "mariadb")
    return svc


@pytest.fixture(scope="session")
def sshd(stack: Stack) -> tuple[Any, ServiceState]:
    """OpenSSH sshd with the partner account; returns (service, state) (``state.info['root']``)."""
    return start_service(stack, "sshd")


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated Airflow metadata DB in the private AIRFLOW_HOME (for ``dag.test()`` runs)."""
    from include.stack.airflow import migrate

    migrate({})  # the environment set at the top of this file
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
