"""The stack CLI owns start, status, env and stop of the services, in its own state folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from include.stack.base import pid_alive

pytestmark = pytest.mark.integration


def cli(state, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "include.stack", "--state", str(state), *args],
                          capture_output=True, text=True, check=False, timeout=300)


def test_up_status_env_down(tmp_path):
    state = tmp_path / "st"
    up = cli(state, "up", "sshd", "mariadb")
    assert up.returncode == 0, up.stderr
    status = json.loads(cli(state, "status").stdout)
    assert set(status) == {"sshd", "mariadb"} and all(s["running"] for s in status.values())
    env = cli(state, "env").stdout
    assert "AIRFLOW_CONN_SFTP_PARTNER=" in env and "AIRFLOW_CONN_MYSQL_SOURCE=" in env
    assert oct((state / "airflow.env").stat().st_mode)[-3:] == "600"  # credentials file is private
    pids = [s["pid"] for s in status.values()]
    assert cli(state, "down").returncode == 0
    assert not any(pid_alive(p) for p in pids)
    assert json.loads(cli(state, "status").stdout) == {}


def test_unknown_service_is_a_clear_error(tmp_path):
    out = cli(tmp_path / "st", "up", "nosuch")
    assert out.returncode == 1 and "unknown service 'nosuch'" in out.stderr
