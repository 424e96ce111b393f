"""Debian's clamd on a loopback port with a database of our own: the EICAR test file's
signature, by hash and in a body."""

import hashlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from peers.common import free_port, require

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class Clamd:
    def __init__(self, tmp):
        binary = require("clamd")
        self.dir = Path(f"/tmp/pc-clamd-{time.monotonic_ns()}")
        self.dir.mkdir()
        (self.dir / "test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature\n")
        # The hash matches the file alone; a body signature finds it inside a text part too.
        (self.dir / "test.ndb").write_text(f"Eicar-Test-Signature-Body:0:*:{EICAR.hex()}\n")
        self.port = free_port()
        conf = self.dir / "clamd.conf"
        conf.write_text(f"Foreground yes\nTCPSocket {self.port}\nTCPAddr 127.0.0.1\n"
                        f"DatabaseDirectory {self.dir}\nTemporaryDirectory {self.dir}\n"
                        f"PidFile {self.dir}/clamd.pid\nSelfCheck 0\nMaxThreads 4\n")
        self.log = open(self.dir / "clamd.log", "w")
        self.proc = subprocess.Popen([binary, "--config-file", str(conf)], stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not self.ping():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("clamd did not start: " + (self.dir / "clamd.log").read_text())
            time.sleep(0.2)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
