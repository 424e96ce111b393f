"""Shared harness for the integration tests: starts the real `portcullis` binary and
real peers (Postfix's smtp-sink, swaks, msmtp, Postfix itself) on loopback with free
ports and temporary directories. A missing peer is an error, never a skip."""

import email
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import contextlib

import pytest
from dnslib import RCODE, RR
from dnslib.server import BaseResolver, DNSServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("PORTCULLIS_BIN", ROOT / "target" / "debug" / "portcullis"))


def require(tool):
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not path:
        raise RuntimeError(f"{tool} is not installed: run ./ci/test, which installs the test peers")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Zone(BaseResolver):
    """An authoritative answerer for a zone given as text: NXDOMAIN for unknown names,
    NODATA for known names without the asked type."""

    def __init__(self, text):
        self.rrs = RR.fromZone(text)

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        known = False
        for rr in self.rrs:
            if rr.rname == q.qname:
                known = True
                if rr.rtype == q.qtype:
                    reply.add_answer(rr)
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextlib.contextmanager
def dns_server(zone_text):
    """A DNS server on a loopback port (UDP and TCP) serving the zone; yields the port."""
    port = free_port()
    zone = Zone(zone_text)
    udp = DNSServer(zone, port=port, address="127.0.0.1")
    tcp = DNSServer(zone, port=port, address="127.0.0.1", tcp=True)
    udp.start_thread()
    tcp.start_thread()
    try:
        yield port
    finally:
        udp.stop()
        tcp.stop()


class Sink:
    """Postfix's smtp-sink as a downstream server, dumping each message to a file."""

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


class Gateway:
    """One portcullis instance with its own data directory and ports."""

    def __init__(self, workdir, extra_config=""):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.smtp = free_port()
        self.submission = free_port()
        self.submissions = free_port()
        self.config = self.dir / "portcullis.toml"
        self.config.write_text(
            f"""hostname = "gw.test"
data_dir = "{self.dir / 'data'}"
[listen]
smtp = "127.0.0.1:{self.smtp}"
submission = "127.0.0.1:{self.submission}"
submissions = "127.0.0.1:{self.submissions}"
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

    def cli(self, *args, input=None, check=True):
        if not BIN.exists():
            raise RuntimeError(f"{BIN} not built: run cargo build first")
        r = subprocess.run([str(BIN), "--config", str(self.config), *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"portcullis {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([str(BIN), "--config", str(self.config), "serve"],
                                     stdout=logf, stderr=logf)
        wait_port(self.smtp, proc=self.proc)
        wait_port(self.submissions, proc=self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
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


@pytest.fixture
def sink(tmp_path):
    s = Sink(tmp_path / "sink").start()
    yield s
    s.stop()


@pytest.fixture
def gateway(tmp_path, sink):
    """A running gateway accepting example.com, routed to the sink; alice@example.com
    may authenticate with password 'correct horse'."""
    g = Gateway(tmp_path / "gw", extra_config="[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.cli("user", "add", "alice@example.com", input="correct horse\n")
    g.start()
    yield g
    g.stop()
