"""Debian's OpenSSH server as an SFTP peer: its own sshd_config, host key and
authorized_keys in a temporary directory, on a free loopback port, started and stopped by
the test; and an ssh_config for the client that trusts exactly that host key."""

import getpass
import os
import subprocess
from pathlib import Path

from peers.common import free_port, require, stop_process, wait_port


class Sshd:
    def __init__(self, workdir):
        self.dir = Path(workdir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.proc = None
        keygen = require("ssh-keygen")
        self.host_key = self.dir / "host_key"
        self.client_key = self.dir / "client_key"
        for key in (self.host_key, self.client_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                           capture_output=True, timeout=30)
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        self.config = self.dir / "sshd_config"
        # StrictModes off: the temporary directory's owner and modes are pytest's.
        self.config.write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.dir / 'sshd.pid'}
AuthorizedKeysFile {self.dir / 'authorized_keys'}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
""")
        host_pub = (self.dir / "host_key.pub").read_text().split()
        (self.dir / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.client_config = self.dir / "ssh_config"
        self.client_config.write_text(f"""Host *
    UserKnownHostsFile {self.dir / 'known_hosts'}
    StrictHostKeyChecking yes
    IdentityFile {self.client_key}
    IdentitiesOnly yes
""")

    def start(self):
        sshd = require("sshd")
        # sshd must be started by its absolute path (it re-executes itself) and wants its
        # privilege-separation directory even when it is not the system's instance.
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen([os.path.abspath(sshd), "-D", "-e", "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "sshd.log", "ab"))
        wait_port(self.port, proc=self.proc)
        return self

    def url(self, path):
        """An sftp:// URL for an absolute path on this server."""
        return f"sftp://{self.user}@127.0.0.1:{self.port}/{path}"

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
