"""Start, wait for, stop and report the local stack: ``python -m include.stack up|down|status|env``.

One state folder (default ``.state/`` in the repo, or ``$STACK_STATE_DIR``) holds every
service's data, logs and ``stack.json``; ``airflow.env`` in it carries the generated
``AIRFLOW_CONN_*`` values (mode 0600), which is the only place credentials live.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from include.stack.base import REPO_ROOT, Service, ServiceState, StackError, pid_alive, signal_stop, wait_stopped

#: name -> "module:Class", imported on demand so the CLI starts fast
SERVICES: dict[str, str] = {
    "s3": "include.stack.services.seaweedfs:SeaweedFS",
    "mariadb": "include.stack.services.mariadb:MariaDB",
    "sshd": "include.stack.services.sshd:Sshd",
    "api": "include.stack.services.demo_api:DemoApi",
    "kinesis": "include.stack.services.kinesis:KinesisServer",
    "airflow-postgres": "include.stack.airflow:MetadataPostgres",
    "airflow-api-server": "include.stack.airflow:ApiServer",
    "airflow-scheduler": "include.stack.airflow:Scheduler",
    "airflow-dag-processor": "include.stack.airflow:DagProcessor",
    "airflow-triggerer": "include.stack.airflow:Triggerer",
}
#: the services ``up`` starts when none are named (the Airflow processes are separate: ``make up``)
DEFAULT_SERVICES: tuple[str, ...] = tuple(n for n in SERVICES if not n.startswith("airflow-"))


def default_state_dir() -> Path:
    return Path(os.environ.get("STACK_STATE_DIR") or REPO_ROOT / ".state").resolve()


def service_class(name: str) -> type[Service]:
    try:
        module, cls = SERVICES[name].split(":")
    except KeyError:
        raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None
    import importlib

    return getattr(importlib.import_module(module), cls)


class Stack:
    """The set of local services living in one state folder."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.state_dir / "stack.json"
        self.env_file = self.state_dir / "airflow.env"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with open(self.state_dir / "stack.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            states = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
            yield states
            self.state_file.write_text(json.dumps(states, indent=2, sort_keys=True))
            self._write_env(states)

    def service(self, name: str) -> tuple[Service, ServiceState]:
        states = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        if name not in states or not pid_alive(states[name]["pid"]):
            raise StackError(f"service {name!r} is not running in {self.state_dir}: run 'make stack-up' first")
        return service_class(name)(self.state_dir), ServiceState(**states[name])

    def up(self, names: Sequence[str] = DEFAULT_SERVICES) -> dict[str, ServiceState]:
        started: dict[str, ServiceState] = {}
        with self._locked() as states:
            for name in names:
                svc = service_class(name)(self.state_dir)
                if name in states and pid_alive(states[name]["pid"]):
                    started[name] = ServiceState(**states[name])
                    continue
                state = svc.start()
                states[name] = asdict(state)
                started[name] = state
                print(f"started {name} (pid {state.pid}, ports {state.ports})", file=sys.stderr)
        return started

    def down(self, names: Sequence[str] | None = None) -> None:
        """Stop services: all are signalled first (dependants first), then each is waited for,
        so the shutdown takes as long as the slowest service, not the sum of them."""
        with self._locked() as states:
            order = [n for n in reversed(list(names or states)) if n in states]
            signalled = [(n, signal_stop(states[n]["pid"])) for n in order]
            for name, pgid in signalled:
                wait_stopped(states[name]["pid"], pgid, timeout=service_class(name).stop_timeout)
                del states[name]

    def status(self) -> dict[str, dict[str, Any]]:
        states = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        return {name: {"running": pid_alive(s["pid"]), "pid": s["pid"], "ports": s["ports"]}
                for name, s in states.items()}

    def environment(self) -> dict[str, str]:
        """AIRFLOW_CONN_* and service env values of every running service."""
        states = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        return self._env_from(states)

    def _env_from(self, states: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {"STACK_STATE_DIR": str(self.state_dir)}
        for name, raw in states.items():
            svc, state = service_class(name)(self.state_dir), ServiceState(**raw)
            for conn_id, conn in svc.connections(state).items():
                env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn, sort_keys=True)
            env.update(svc.env(state))
        return env

    def _write_env(self, states: dict[str, Any]) -> None:
        lines = [f"{k}={shlex.quote(v)}" for k, v in sorted(self._env_from(states).items())]
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")


def running_mariadb(state_dir: Path | None = None):  # type: ignore[no-untyped-def]
    svc, _ = Stack(state_dir).service("mariadb")
    return svc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.stack", description=__doc__.splitlines()[0])
    p.add_argument("--state", type=Path, default=None, help="state folder (default .state/ or $STACK_STATE_DIR)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start services (all by default) and wait until ready")
    up.add_argument("services", nargs="*", default=list(DEFAULT_SERVICES))
    down = sub.add_parser("down", help="stop services (all by default)")
    down.add_argument("services", nargs="*")
    sub.add_parser("status", help="print what runs")
    sub.add_parser("env", help="print the AIRFLOW_CONN_* values as shell assignments")
    a = p.parse_args(argv)
    stack = Stack(a.state)
    try:
        if a.cmd == "up":
            stack.up(a.services)
            print(f"stack is up; connections in {stack.env_file}")
        elif a.cmd == "down":
            stack.down(a.services or None)
        elif a.cmd == "status":
            print(json.dumps(stack.status(), indent=2))
        elif a.cmd == "env":
            for k, v in sorted(stack.environment().items()):
                print(f"export {k}={shlex.quote(v)}")
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
