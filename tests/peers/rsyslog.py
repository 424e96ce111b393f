"""Rsyslog as the syslog collector: a private rsyslogd (its own configuration, work
directory and pid file in a temporary directory) listening on free loopback ports for
UDP (imudp), TCP (imtcp, octet-counted or newline framing) and TLS (imtcp with the gtls
driver and a certificate of the test CA), writing what it receives to a file, one line
per message: PRI, APP-NAME, MSGID and STRUCTURED-DATA as rsyslog parsed them, a tab,
then the message as it arrived."""

import subprocess
import time

from peers.common import free_port, require, stop_process, wait_for, wait_port


class Rsyslog:
    def __init__(self, d, pki=None, udp=None, tcp=None, tls=None):
        """Ports: given (to start on a port a client already aims at) or free ones;
        with `pki`, a TLS input too, its certificate issued for `localhost`."""
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.udp = udp or free_port()
        self.tcp = tcp or free_port()
        self.tls = (tls or free_port()) if pki else None
        self.out = d / "received.log"
        self.proc = None
        tls_global = tls_input = ""
        if pki:
            cert, key = pki.issue("localhost")
            tls_global = (f'global(DefaultNetstreamDriverCAFile="{pki.ca}" '
                          f'DefaultNetstreamDriverCertFile="{cert}" '
                          f'DefaultNetstreamDriverKeyFile="{key}")\n')
            tls_input = (f'input(type="imtcp" port="{self.tls}" address="127.0.0.1" '
                         'streamDriver.name="gtls" streamDriver.mode="1" '
                         'streamDriver.authMode="anon")\n')
        (d / "work").mkdir(exist_ok=True)
        self.conf = d / "rsyslog.conf"
        self.conf.write_text(
            f'global(workDirectory="{d / "work"}")\n'
            + tls_global
            + 'module(load="imudp")\nmodule(load="imtcp")\n'
            + f'input(type="imudp" port="{self.udp}" address="127.0.0.1")\n'
            + f'input(type="imtcp" port="{self.tcp}" address="127.0.0.1")\n'
            + tls_input
            + 'template(name="parsed" type="string" '
              'string="%pri% %app-name% %msgid% %structured-data%\\t%rawmsg%\\n")\n'
            + f'action(type="omfile" file="{self.out}" template="parsed" flushOnTXEnd="on" '
              'asyncWriting="off")\n')

    def start(self):
        rsyslogd = require("rsyslogd")
        self.log = open(self.dir / "rsyslogd.log", "a")
        self.proc = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=self.log, stderr=self.log)
        wait_port(self.tcp, proc=self.proc)
        if self.tls:
            wait_port(self.tls, proc=self.proc)
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def lines(self):
        return self.out.read_text(errors="replace").splitlines() if self.out.exists() else []

    def wait_line(self, *needles, timeout=20):
        """The first received line holding every needle."""
        return wait_for(lambda: next((l for l in self.lines() if all(n in l for n in needles)),
                                     None),
                        timeout=timeout, what=f"a syslog line with {needles}: {self.lines()[-5:]}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
