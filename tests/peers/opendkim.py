"""The OpenDKIM milter, signing, on a loopback TCP socket."""

import subprocess

from peers.common import free_port, require, wait_port


class OpenDkim:
    """The OpenDKIM milter in signing mode on a loopback TCP socket."""

    def __init__(self, workdir, key, selector, algorithm, canonicalization):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / "opendkim.conf"
        self.conf.write_text(f"""Syslog no
Background no
Mode s
Socket inet:{self.port}@127.0.0.1
Domain odk.test
Selector {selector}
KeyFile {key}
SignatureAlgorithm {algorithm}
Canonicalization {canonicalization}
SignHeaders From,To,Subject,Date,Message-ID
InternalHosts 127.0.0.1
PidFile {self.dir / 'opendkim.pid'}
UserID root
RequireSafeKeys no
""")
        self.proc = None

    def start(self):
        self.log = open(self.dir / "opendkim.log", "w")
        self.proc = subprocess.Popen([require("opendkim"), "-f", "-x", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, timeout=10, proc=self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"opendkim: {e}: {(self.dir / 'opendkim.log').read_text()}") from None
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.log.close()
