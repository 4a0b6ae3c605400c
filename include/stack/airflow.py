"""Airflow itself on the local stack: ``make up`` / ``make down``.

``up`` starts the data services (MariaDB, SeaweedFS, sshd, ...), a private PostgreSQL as the
metadata DB (SQLite when PostgreSQL is not installed, or ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``
to use another), migrates it and imports ``include/config/pools.json``, then the api-server (UI on
http://localhost:8080, or ``$AIRFLOW_PORT``), scheduler, dag-processor and triggerer with the
LocalExecutor and the simple auth manager, and prints the login. Connections reach every Airflow
process as ``AIRFLOW_CONN_*`` environment values; the secrets all processes must share (JWT
secret, API secret key, Fernet key) and the admin password are generated once under
``<state>/airflow/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from include.stack.base import (
    HOST,
    REPO_ROOT,
    Service,
    ServiceState,
    StackError,
    free_port,
    new_secret,
    port_open,
    require_binary,
)

ADMIN_USER = "admin"


def shared_secrets(home: Path) -> dict[str, str]:
    """Secrets every Airflow process must share, generated once into ``<home>/secrets.json`` (0600).

    The api-server signs task tokens with the JWT secret and the workers' execution API calls
    are checked against it: each process generating its own would fail every task with 403.
    """
    path = home / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet

    secrets = {"jwt_secret": new_secret(32), "api_secret_key": new_secret(32),
               "fernet_key": Fernet.generate_key().decode()}
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secrets, f)
    return secrets


def airflow_env(home: Path, *, port: int | None = None) -> dict[str, str]:
    """The environment every Airflow process of the local stack runs with.

    ``AIRFLOW_PORT`` picks the UI port, ``AIRFLOW__CORE__DAGS_FOLDER`` another DAGs folder and
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` another metadata DB (e.g. PostgreSQL); the default
    is SQLite in ``<home>/airflow.db``.
    """
    port = port or int(os.environ.get("AIRFLOW_PORT", "8080"))
    secrets = shared_secrets(home)
    sql_conn = (os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or _stack_metadata_url(home.parent)
                or f"sqlite:///{home / 'airflow.db'}")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",  # task processes at once (2 cores)
        "AIRFLOW__CORE__FERNET_KEY": secrets["fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__API__SECRET_KEY": secrets["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt_secret"],
        # workers talk to the api-server over loopback by address: "localhost" may resolve to ::1
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)]),
    }
    if sql_conn.startswith("sqlite"):
        # SQLite takes one writer at a time: keep the LocalExecutor pool small
        env["AIRFLOW__CORE__PARALLELISM"] = "2"
    return env


def _stack_metadata_url(state_dir: Path) -> str | None:
    """The URL of the stack's own PostgreSQL metadata DB when it runs in ``state_dir``."""
    path = state_dir / "stack.json"
    states = json.loads(path.read_text()) if path.exists() else {}
    pg = states.get(MetadataPostgres.name)
    return pg["info"]["url"] if pg else None


class MetadataPostgres(Service):
    """A private PostgreSQL server as Airflow's metadata DB (``make up`` uses it when installed).

    SQLite takes one writer at a time: with the api-server, scheduler, dag-processor and triggerer
    all writing, a backfill created while the scheduler creates runs can fail the scheduler loop.
    Airflow is tested on PostgreSQL, so the local stack runs on it too (loopback, a generated
    password, data under ``<state>/airflow-postgres``). As root, the server runs as the
    ``postgres`` system user (PostgreSQL refuses root).
    """

    name = "airflow-postgres"
    start_timeout = 60.0
    database = "airflow"

    def _bin(self, name: str) -> str:
        import glob

        return require_binary(name, package="postgresql",
                              extra_dirs=sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))

    def _as_owner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return [require_binary("setpriv", package="util-linux"), "--reuid=postgres", "--regid=postgres",
                "--init-groups", "--"]

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        import shutil

        data = self.dir / "data"
        pw_path = self.dir / "password"
        if not pw_path.exists():
            pw_path.write_text(new_secret(24))
        password = pw_path.read_text().strip()
        owner = self._as_owner()
        if owner:  # the server's user must reach and own its directory
            for parent in self.dir.parents:
                if parent.exists() and not parent.stat().st_mode & 0o001:
                    raise StackError(f"{parent} is not searchable by the postgres user (mode "
                                     f"{oct(parent.stat().st_mode & 0o777)}); use another --state folder")
            for path in [self.dir, *self.dir.rglob("*")]:
                shutil.chown(path, "postgres", "postgres")
            pw_path.chmod(0o600)
        if not (data / "PG_VERSION").exists():
            out = subprocess.run([*owner, self._bin("initdb"), "-D", str(data), "-U", self.database,
                                  f"--pwfile={pw_path}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise StackError(f"initdb failed in {data}: {out.stderr[-2000:]}")
        port = free_port()
        argv = [*owner, self._bin("postgres"), "-D", str(data), "-h", HOST, "-p", str(port), "-k", str(self.dir),
                "-c", "synchronous_commit=off", "-c", "max_connections=200", "-c", "log_min_messages=warning"]
        url = f"postgresql+psycopg2://{self.database}:{password}@{HOST}:{port}/{self.database}"
        return argv, {"postgres": port}, {"url": url, "password": password}

    def _connect(self, state: ServiceState, dbname: str):  # type: ignore[no-untyped-def]
        import psycopg2

        return psycopg2.connect(host=HOST, port=state.ports["postgres"], user=self.database,
                                password=state.info["password"], dbname=dbname, connect_timeout=2)

    def ready(self, state: ServiceState) -> bool:
        self._connect(state, "postgres").close()
        return True

    def after_start(self, state: ServiceState) -> None:
        conn = self._connect(state, "postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        conn.close()

    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        return {}


def postgres_available() -> bool:
    try:
        MetadataPostgres(Path("/nonexistent"))._bin("initdb")
        import psycopg2  # noqa: F401
    except (StackError, ImportError):
        return False
    return True


def migrate(env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env={**os.environ, **env},
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise StackError(f"airflow db migrate failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    pools = REPO_ROOT / "include" / "config" / "pools.json"
    if pools.exists():  # pools the DAGs use (e.g. a cap on source-database connections)
        out = subprocess.run([sys.executable, "-m", "airflow", "pools", "import", str(pools)],
                             env={**os.environ, **env}, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise StackError(f"airflow pools import {pools} failed:\n{out.stderr[-2000:]}")


class _AirflowProcess(Service):
    """One long-running ``airflow <command>`` process."""

    command: tuple[str, ...] = ()
    start_timeout = 120.0
    stop_timeout = 10.0  # a stopping scheduler waits for running tasks; the local stack need not

    @property
    def home(self) -> Path:
        return self.state_dir / "airflow"

    def process_env(self) -> dict[str, str]:
        from include.stack.cli import Stack

        return {**os.environ, **Stack(self.state_dir).environment(), **airflow_env(self.home)}

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        return [sys.executable, "-m", "airflow", *self.command], {}, {}

    def ready(self, state: ServiceState) -> bool:
        return True

    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        return {}


class ApiServer(_AirflowProcess):
    name = "airflow-api-server"
    command = ("api-server",)

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        port = int(airflow_env(self.home)["AIRFLOW__API__PORT"])
        if port_open(port):
            raise StackError(f"port {port} is taken: stop what runs there or set AIRFLOW_PORT")
        pw_file = self.home / "passwords.json"
        if not pw_file.exists():
            pw_file.write_text(json.dumps({ADMIN_USER: new_secret(9)}))
            pw_file.chmod(0o600)
        argv, _, _ = super().prepare()
        return argv, {"http": port}, {"url": f"http://localhost:{port}"}

    def ready(self, state: ServiceState) -> bool:
        with urllib.request.urlopen(f"http://{HOST}:{state.ports['http']}/api/v2/monitor/health", timeout=2) as r:
            return r.status == 200


class Scheduler(_AirflowProcess):
    name = "airflow-scheduler"
    command = ("scheduler",)


class DagProcessor(_AirflowProcess):
    name = "airflow-dag-processor"
    command = ("dag-processor",)


class Triggerer(_AirflowProcess):
    name = "airflow-triggerer"
    command = ("triggerer",)


AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


def up(state_dir: Path | None = None) -> dict[str, Any]:
    from include.stack.cli import DEFAULT_SERVICES, Stack

    stack = Stack(state_dir)
    stack.up(DEFAULT_SERVICES)
    home = stack.state_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        if postgres_available():
            stack.up([MetadataPostgres.name])
        else:
            print("warning: PostgreSQL (Debian package 'postgresql') is not installed: Airflow's metadata DB "
                  "is SQLite, which takes one writer at a time (fine for trying it, flaky under backfills)",
                  file=sys.stderr)
    migrate(airflow_env(home))
    stack.up(AIRFLOW_SERVICES)
    api, state = stack.service("airflow-api-server")
    password = json.loads((home / "passwords.json").read_text())[ADMIN_USER]
    return {"url": state.info["url"], "user": ADMIN_USER, "password": password, "home": str(home),
            "env_file": str(stack.env_file)}


def down(state_dir: Path | None = None) -> None:
    from include.stack.cli import Stack

    Stack(state_dir).down()  # every process signalled at once: each takes seconds to shut down


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.stack.airflow", description=__doc__.splitlines()[0])
    p.add_argument("cmd", choices=["up", "down"])
    p.add_argument("--state", type=Path, default=None)
    a = p.parse_args(argv)
    try:
        if a.cmd == "up":
            info = up(a.state)
            print(f"\nAirflow is up: {info['url']}\n  login: {info['user']} / {info['password']}\n"
                  f"  AIRFLOW_HOME={info['home']}\n  connections: {info['env_file']}\n  stop it all: make down")
        else:
            down(a.state)
            print("stopped")
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
