"""The binary under test: one portcullis instance with its own data directory and ports,
and a second instance playing a TLS MX host."""

import os
import subprocess
import time
from pathlib import Path

from peers.common import BIN, free_port, stop_process, wait_port
from peers.sink import Sink


class Gateway:
    """One portcullis instance with its own data directory and ports."""

    def __init__(self, workdir, extra_config=""):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.smtp = free_port()
        self.submission = free_port()
        self.submissions = free_port()
        self.https = free_port()
        self.metrics = free_port()
        self.smtp_host = "127.0.0.1"
        self.config = self.dir / "portcullis.toml"
        # A test that stops a gateway waits 10 s before SIGKILL: the drain at SIGTERM gets
        # less than that, unless the test sets its own.
        if "shutdown_grace_secs" not in extra_config:
            grace = "shutdown_grace_secs = 5\n"
            extra_config = (extra_config.replace("[limits]\n", "[limits]\n" + grace, 1)
                            if "[limits]\n" in extra_config else extra_config + "\n[limits]\n" + grace)
        self.config.write_text(
            f"""hostname = "gw.test"
data_dir = "{self.dir / 'data'}"
[listen]
smtp = "127.0.0.1:{self.smtp}"
submission = "127.0.0.1:{self.submission}"
submissions = "127.0.0.1:{self.submissions}"
https = "127.0.0.1:{self.https}"
metrics = "127.0.0.1:{self.metrics}"
[log]
level = "info,portcullis_queue=debug"
""" + extra_config + (
            "" if "[dns]" in extra_config else
            # Never ask the machine's resolver from a test: a loopback port where no DNS
            # server runs makes every lookup a temporary failure.
            f"\n[dns]\nnameservers = [\"127.0.0.1:{free_port()}\"]\ntimeout_secs = 1\n") + (
            # Mail authentication needs DNS; tests of it turn it on with a DNS server.
            "" if "[auth]" in extra_config else "\n[auth]\nenabled = false\n") + (
            "" if "[store]" in extra_config else self._store_config())
        )
        self.proc = None
        self.log = self.dir / "serve.log"

    # PORTCULLIS_TEST_STORE=postgres (with PORTCULLIS_TEST_POSTGRES_URL, a role that may create
    # databases) runs every gateway on a PostgreSQL database of its own instead of SQLite.
    _databases = 0

    def _store_config(self):
        self.pg_url = None
        if os.environ.get("PORTCULLIS_TEST_STORE", "sqlite") != "postgres":
            return ""
        admin = os.environ["PORTCULLIS_TEST_POSTGRES_URL"]
        Gateway._databases += 1
        name = f"gw_{os.getpid()}_{Gateway._databases}_{time.monotonic_ns() % 10**9}"
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin, "-c", f"CREATE DATABASE {name}"],
                       check=True, capture_output=True, timeout=30)
        base, _, query = admin.partition("?")
        self.pg_url = base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")
        return f'\n[store]\nurl = "{self.pg_url}"\n'

    def sql(self, query):
        """Rows of a query run on this gateway's store, whichever engine it is (integers as int)."""
        if self.pg_url is None:
            import sqlite3
            with sqlite3.connect(self.dir / "data" / "portcullis.db", timeout=10) as c:
                return c.execute(query).fetchall()
        r = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", self.pg_url, "-c", query],
                           check=True, capture_output=True, text=True, timeout=30)
        as_value = lambda v: int(v) if v.lstrip("-").isdigit() else v
        return [tuple(as_value(v) for v in line.split("\t")) for line in r.stdout.splitlines() if line]

    def listen_smtp(self, host, port):
        """Listen for SMTP on host:port instead (before start)."""
        self.smtp_host, self.smtp = host, port
        text = self.config.read_text()
        self.config.write_text(
            "\n".join(f'smtp = "{host}:{port}"' if line.startswith("smtp =") else line
                      for line in text.splitlines()) + "\n")

    def cli(self, *args, input=None, check=True):
        if not BIN.exists():
            raise RuntimeError(f"{BIN} not built: run cargo build first")
        r = subprocess.run([str(BIN), "--config", str(self.config), *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"portcullis {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def start(self):
        # free_port() hands out a port that another worker may take before we bind it (two
        # suites run side by side in CI): a gateway that could not listen gets new ports.
        for attempt in range(3):
            logf = open(self.log, "a")
            self.proc = subprocess.Popen([str(BIN), "--config", str(self.config), "serve"],
                                         stdout=logf, stderr=logf)
            try:
                wait_port(self.smtp, proc=self.proc, host=self.smtp_host)
                wait_port(self.submissions, proc=self.proc)
                return self
            except RuntimeError as e:
                log = self.log.read_text(errors="replace")[-2000:]
                if self.proc.poll() is None or "cannot listen" not in log or attempt == 2:
                    raise RuntimeError(f"{e}; serve.log ends:\n{log}") from None
                self._new_ports()

    def _new_ports(self):
        """Other free ports for the listeners (only those on the default loopback host)."""
        text = self.config.read_text()
        for key in ("smtp", "submission", "submissions", "https", "metrics"):
            old = getattr(self, key)
            if key == "smtp" and self.smtp_host != "127.0.0.1":
                continue
            new = free_port()
            text = text.replace(f'{key} = "127.0.0.1:{old}"', f'{key} = "127.0.0.1:{new}"')
            setattr(self, key, new)
        self.config.write_text(text)

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def kill9(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def queue_ids(self):
        out = self.cli("queue", "list", "--json").stdout
        import json
        return [m["id"] for m in json.loads(out)]

    def log_text(self):
        return self.log.read_text(errors="replace")


class Mx:
    """A second Portcullis as an MX host with the given certificate, listening for SMTP on
    `ip:port` (a free port on 127.0.0.1 by default) and relaying `domains` to `sink`; when
    no sink is given, to an smtp-sink of its own (`self.sink`)."""

    def __init__(self, workdir, cert, key, port=None, ip="127.0.0.1", domains=("secure.test",),
                 sink=None):
        self.own_sink = sink is None and bool(domains)
        self.sink = Sink(workdir / "sink").start() if self.own_sink else sink
        self.gw = Gateway(workdir / "mx", f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
        if port or ip != "127.0.0.1":
            self.gw.listen_smtp(ip, port or self.gw.smtp)
        for d in domains:
            self.gw.cli("domain", "add", d, "--route", f"127.0.0.1:{self.sink.port}")
        self.gw.start()
        self.ip, self.port = ip, self.gw.smtp

    def stop(self):
        self.gw.stop()
        if self.own_sink:
            self.sink.stop()
