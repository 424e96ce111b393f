"""Postfix's smtp-sink as the downstream server of the tests."""

import email
import subprocess
import time
from pathlib import Path

from peers.common import free_port, require, wait_for, wait_port


class Sink:
    """Postfix's smtp-sink as a downstream server, dumping each message to a file. Also a
    context manager: started on entry, stopped on exit."""

    def __init__(self, workdir, port=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None

    def start(self, extra=()):
        # -u root: smtp-sink drops privileges to this user; -d: one file per message.
        cmd = [require("smtp-sink"), "-u", "root", "-d", str(self.dir) + "/%Y%m%d%H%M%S.", *extra,
               f"127.0.0.1:{self.port}", "256"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def files(self):
        return sorted(p for p in self.dir.iterdir() if p.is_file())

    def messages(self):
        return [email.message_from_bytes(p.read_bytes()) for p in self.files()]

    def wait_count(self, n, timeout=20.0):
        wait_for(lambda: len(self.files()) >= n, timeout,
                 f"{n} messages at the sink (have {len(self.files())})")
        # smtp-sink writes a dump while the message streams in: wait until the files
        # stop growing before anyone reads them.
        def sizes():
            return [p.stat().st_size for p in self.files()]
        before = sizes()
        while True:
            time.sleep(0.2)
            after = sizes()
            if after == before:
                return self.files()
            before = after
