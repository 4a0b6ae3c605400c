"""OpenSSH ``sshd`` serving SFTP for a key-authenticated partner account.

The partner account is the OS user running the stack (creating system users would need
root). Its SFTP session starts in ``<state>/sshd/sftp-root`` (``internal-sftp -d``), so the
source config uses paths relative to it (``inbox/...``), as with a Transfer Family home
directory. A ``known_hosts`` file is written so clients verify the host key.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from typing import Any

from include.stack.base import HOST, Service, ServiceState, StackError, free_port, port_open, require_binary


class Sshd(Service):
    name = "sshd"
    start_timeout = 30.0

    def prepare(self) -> tuple[list[str], dict[str, int], dict[str, Any]]:
        sshd = require_binary("sshd", package="openssh-server")
        keygen = require_binary("ssh-keygen", package="openssh-client")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        host_key, client_key = self.dir / "ssh_host_ed25519_key", self.dir / "partner_ed25519"
        for key in (host_key, client_key):
            if not key.exists():
                out = subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)],
                                     capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise StackError(f"ssh-keygen failed for {key}: {out.stderr}")
        root = self.dir / "sftp-root"
        (root / "inbox").mkdir(parents=True, exist_ok=True)
        (root / "archive").mkdir(exist_ok=True)
        authorized = self.dir / "authorized_keys"
        authorized.write_text((self.dir / "partner_ed25519.pub").read_text())
        authorized.chmod(0o600)
        port, user = free_port(), getpass.getuser()
        config = self.dir / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", f"ListenAddress {HOST}", f"HostKey {host_key}", f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}", "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "PermitRootLogin prohibit-password",
            f"AllowUsers {user}", "X11Forwarding no", "AllowTcpForwarding no", "PrintMotd no",
            "MaxStartups 100:30:200", "MaxSessions 64", "LogLevel INFO",
            f"Subsystem sftp internal-sftp -d {root}", f"ForceCommand internal-sftp -d {root}", "",
        ]))
        host_pub = (self.dir / "ssh_host_ed25519_key.pub").read_text().split()
        known_hosts = self.dir / "known_hosts"
        known_hosts.write_text(f"[{HOST}]:{port} {host_pub[0]} {host_pub[1]}\n")
        info = {"host": HOST, "port": port, "user": user, "key_file": str(client_key), "root": str(root),
                "known_hosts": str(known_hosts), "host_key": f"{host_pub[0]} {host_pub[1]}"}
        return [sshd, "-D", "-e", "-f", str(config)], {"ssh": port}, info

    def ready(self, state: ServiceState) -> bool:
        return port_open(state.ports["ssh"])

    def connections(self, state: ServiceState) -> dict[str, dict[str, Any]]:
        i = state.info
        # host_key pins the server key; no_host_key_check=false makes the hook verify it.
        extra = {"key_file": i["key_file"], "host_key": i["host_key"], "no_host_key_check": False,
                 "allow_host_key_change": False, "compress": False, "known_hosts": i["known_hosts"]}
        return {"sftp_partner": {"conn_type": "sftp", "host": i["host"], "port": i["port"], "login": i["user"],
                                 "extra": extra}}

    def env(self, state: ServiceState) -> dict[str, str]:
        return {"SFTP_PARTNER_ROOT": state.info["root"], "SFTP_KNOWN_HOSTS": state.info["known_hosts"]}
