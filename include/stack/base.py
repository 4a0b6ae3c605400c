"""Process plumbing shared by every local-stack service: free ports, start, wait, stop.

Every service runs as a child process in its own session (process group), bound to
127.0.0.1 on a free port, with its data and log under ``<state>/<service>/``. What a
running service needs to be found again (pid, ports, credentials) is kept in
``<state>/stack.json`` so that ``status`` and ``down`` work from another process.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """A service could not be started, found or stopped; the message says which and why."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, what: str, timeout: float, log: Path | None = None,
               proc: subprocess.Popen | None = None) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` (and the log tail) on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} while starting{_tail(log)}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - any failure of a readiness probe means "not yet"
            pass
        time.sleep(0.2)
    raise StackError(f"{what} was not ready after {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log}:\n" + "\n".join(text)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def signal_stop(pid: int) -> int | None:
    """SIGTERM the process group of ``pid``; return the group id (None if it is gone)."""
    if not pid_alive(pid):
        return None
    try:
        pgid = os.getpgid(pid)
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    return pgid


def wait_stopped(pid: int, pgid: int | None, *, timeout: float) -> None:
    """Wait up to ``timeout`` for ``pid`` to exit after ``signal_stop``, then SIGKILL its group."""
    if pgid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # reap it if it is our child
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, *, timeout: float = 20.0) -> None:
    """SIGTERM the process group of ``pid``, wait up to ``timeout``, then SIGKILL it."""
    wait_stopped(pid, signal_stop(pid), timeout=timeout)


def require_binary(name: str, *, package: str, extra_dirs: Sequence[str] = ()) -> str:
    """Find an executable or fail with the Debian package that provides it."""
    found = shutil.which(name, path=os.pathsep.join([*extra_dirs, os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if not found:
        raise StackError(f"'{name}' was not found: install the Debian package '{package}' "
                         f"(make sysdeps does it when run as root)")
    return found


def new_secret(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass
class ServiceState:
    """What ``stack.json`` keeps of one running service."""

    pid: int
    ports: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)


class Service(ABC):
    """One local service: a subclass says how to prepare, launch, probe and describe it."""

    #: short name used on the command line and in stack.json
    name: str = ""
    #: seconds to wait for readiness
    start_timeout: float = 60.0
    #: seconds to wait after SIGTERM before SIGKILL
    stop_timeout: float = 20.0

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / self.name
        self.log = self.dir / f"{self.name}.log"

    # --- what subclasses implement ---------------------------------------------------
    @abstractmethod
    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        """Create data dirs and configs; return (argv, ports, info) for the process."""

    @abstractmethod
    def ready(self, state: ServiceState) -> bool:
        """True when the service answers requests."""

    def after_start(self, state: ServiceState) -> None:
        """One-time set-up once ready (users, buckets, seed data)."""

    @abstractmethod
    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        """Airflow connections this service provides, conn_id -> connection JSON dict."""

    def env(self, state: ServiceState) -> dict[str, str]:
        """Extra environment values (paths, tokens) for clients of this service."""
        return {}

    def process_env(self) -> dict[str, str] | None:
        return None

    # --- shared behaviour ----------------------------------------------------------
    def start(self) -> ServiceState:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv, ports, info = self.prepare()
        logf = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.dir, start_new_session=True, env=self.process_env())
        logf.close()
        state = ServiceState(pid=proc.pid, ports=ports, info=info)
        try:
            wait_until(lambda: self.ready(state), what=f"{self.name} ({' '.join(argv[:1])})",
                       timeout=self.start_timeout, log=self.log, proc=proc)
            self.after_start(state)
        except BaseException:
            stop_pid(proc.pid, timeout=self.stop_timeout)
            raise
        return state

    def stop(self, state: ServiceState) -> None:
        stop_pid(state.pid, timeout=self.stop_timeout)


def conn_json(**fields: Any) -> str:
    """Serialize an Airflow connection as the JSON accepted in AIRFLOW_CONN_* values."""
    return json.dumps({k: v for k, v in fields.items() if v is not None}, sort_keys=True)
