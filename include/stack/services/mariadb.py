"""MariaDB server (MySQL protocol): the stand-in for Amazon RDS MySQL, seeded with classicmodels."""

from __future__ import annotations

import getpass
import subprocess
from typing import Any

from include.stack.base import HOST, Service, ServiceState, StackError, free_port, new_secret, require_binary

DATABASE = "classicmodels"
APP_USER = "lander"


class MariaDB(Service):
    name = "mariadb"
    start_timeout = 60.0
    stop_timeout = 30.0

    @property
    def socket_path(self) -> str:
        return str(self.dir / "mysqld.sock")

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        mariadbd = require_binary("mariadbd", package="mariadb-server")
        install_db = require_binary("mariadb-install-db", package="mariadb-server")
        datadir = self.dir / "data"
        user = getpass.getuser()
        if not (datadir / "mysql").exists():
            out = subprocess.run(
                [install_db, "--no-defaults", f"--datadir={datadir}", f"--user={user}",
                 "--auth-root-authentication-method=socket", "--skip-test-db"],
                capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise StackError(f"mariadb-install-db failed in {datadir}: {out.stderr[-2000:]}")
        port = free_port()
        argv = [
            mariadbd, "--no-defaults", f"--datadir={datadir}", f"--user={user}", f"--port={port}",
            f"--bind-address={HOST}", f"--socket={self.socket_path}", f"--pid-file={self.dir / 'mysqld.pid'}",
            "--skip-name-resolve", "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00", "--innodb-buffer-pool-size=256M", "--innodb-log-file-size=256M",
            "--innodb-flush-log-at-trx-commit=2", "--max-connections=200", "--skip-log-bin",
        ]
        info = {"host": HOST, "port": port, "database": DATABASE, "user": APP_USER,
                "password": new_secret(), "socket": self.socket_path, "os_user": user}
        return argv, {"mysql": port}, info

    def admin_sql(self, sql: str, database: str | None = None) -> str:
        """Run SQL as root over the private socket (root has no TCP login)."""
        client = require_binary("mariadb", package="mariadb-client")
        argv = [client, "--no-defaults", f"--socket={self.socket_path}", "-uroot",
                "--default-character-set=utf8mb4", "--batch", "--skip-column-names"]
        if database:
            argv.append(database)
        out = subprocess.run(argv, input=sql, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise StackError(f"SQL on the local MariaDB failed: {out.stderr.strip()}")
        return out.stdout

    def ready(self, state: ServiceState) -> bool:
        self.admin_sql("SELECT 1")
        return True

    def after_start(self, state: ServiceState) -> None:
        pw = state.info["password"].replace("'", "''")
        self.admin_sql(
            f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4;"
            f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
            f"ALTER USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
            f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{APP_USER}'@'127.0.0.1';"
            # the threshold sensor, reconciliation and the kill test read the process list
            f"GRANT PROCESS, CONNECTION ADMIN ON *.* TO '{APP_USER}'@'127.0.0.1';"
            "FLUSH PRIVILEGES;"
        )
        from include.sample_data import classicmodels

        classicmodels.create_schema(self.admin_sql)

    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        i = state.info
        return {"mysql_source": {"conn_type": "mysql", "host": i["host"], "port": i["port"],
                                 "schema": i["database"], "login": i["user"], "password": i["password"],
                                 "extra": {"charset": "utf8mb4"}}}
