"""Monitoring through the real binary: Prometheus `/metrics` on the plain metrics listener
and (for administrators and auditors only) on the HTTPS console; `/health/live` and
`/health/ready` on every listener, ready turning 503 with the reason while the spool is
gone; and the main counters over SNMP, through Debian's snmpd running
`portcullis snmp-pass-persist`, read with snmpget and snmpwalk."""

import json
import os
import smtplib
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, Gateway, free_port, require, wait_for
from peers.common import stop_process
from peers.prometheus import samples, value

BASE_OID = ".1.3.6.1.4.1.32473.25"


def get(url, token=None):
    """(status, content type, body) of a GET; the gateway's certificate is self-signed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx if url.startswith("https") else None) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(g):
    status, ctype, body = get(f"http://127.0.0.1:{g.metrics}/metrics")
    assert status == 200, body
    assert ctype.startswith("text/plain"), ctype
    return body


def send(g, rcpts, sender="someone@outside.test"):
    with smtplib.SMTP("127.0.0.1", g.smtp, timeout=30) as s:
        s.ehlo("client.test")
        s.mail(sender)
        accepted = []
        for r in rcpts:
            code, _ = s.rcpt(r)
            if code == 250:
                accepted.append(r)
        if accepted:
            code, _ = s.data(b"From: someone@outside.test\r\nTo: x@example.com\r\nSubject: metrics\r\n\r\nhello\r\n")
            assert code == 250
        return accepted


def make_token(g, name, role):
    out = g.cli("token", "create", "--account", "admin", "--name", name, "--role", role).stdout
    return out.strip().splitlines()[-1]


def test_counters_move_as_mail_flows(gateway, sink):
    g = gateway
    before = scrape(g)
    # One accepted message, one recipient refused (not our domain: relaying is refused).
    assert send(g, ["bob@example.com", "eve@elsewhere.test"]) == ["bob@example.com"]
    sink.wait_count(1)

    def moved():
        text = scrape(g)
        done = value(text, "portcullis_delivery_attempts_total", result="delivered") > \
            value(before, "portcullis_delivery_attempts_total", result="delivered")
        return text if done else None
    after = wait_for(moved, what="a delivery attempt counted")
    assert value(after, "portcullis_smtp_connections_total", listener="smtp") == \
        value(before, "portcullis_smtp_connections_total", listener="smtp") + 1
    assert value(after, "portcullis_messages_accepted_total", direction="inbound", verdict="deliver") == \
        value(before, "portcullis_messages_accepted_total", direction="inbound", verdict="deliver") + 1
    assert value(after, "portcullis_smtp_rejections_total", stage="rcpt", code="554") == \
        value(before, "portcullis_smtp_rejections_total", stage="rcpt", code="554") + 1
    # The checks and the spool's fsyncs were timed.
    assert value(after, "portcullis_check_duration_seconds_count", check="content") >= 1
    assert value(after, "portcullis_spool_fsync_duration_seconds_count", target="file") >= 1
    assert value(after, "portcullis_store_commit_duration_seconds_count") >= 1
    assert "# TYPE portcullis_check_duration_seconds histogram" in after
    assert "# HELP portcullis_messages_accepted_total" in after
    # The queue gauges are there (the message left: the queue is empty again).
    wait_for(lambda: value(scrape(g), "portcullis_queue_messages") == 0 and
             ("portcullis_queue_messages", frozenset()) in samples(scrape(g)), what="queue gauge")


def test_queue_gauges_count_waiting_mail(tmp_path):
    # A route where nothing listens: the message waits in the queue.
    g = Gateway(tmp_path / "gw", extra_config="[delivery]\nmin_backoff_secs = 60\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{free_port()}")
    g.start()
    try:
        assert send(g, ["bob@example.com"]) == ["bob@example.com"]
        def one_waiting():
            text = scrape(g)
            return text if value(text, "portcullis_queue_messages") == 1 else None
        text = wait_for(one_waiting, timeout=20, what="queue gauge at 1")
        assert value(text, "portcullis_queue_oldest_age_seconds") < 60
        wait_for(lambda: value(scrape(g), "portcullis_delivery_attempts_total", result="deferred") >= 1,
                 what="a deferred attempt counted")
    finally:
        g.stop()


def test_metrics_on_https_for_whole_gateway_roles(gateway):
    g = gateway
    url = f"https://127.0.0.1:{g.https}/metrics"
    status, ctype, body = get(url)
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    for role in ("admin", "auditor"):
        status, ctype, body = get(url, make_token(g, f"scrape-{role}", role))
        assert status == 200, body
        assert ctype.startswith("text/plain")
        assert "portcullis_smtp_connections_total" in body or "portcullis_queue_messages" in body
    status, _, body = get(url, make_token(g, "desk", "helpdesk"))
    assert status == 403, body
    assert "may not read the metrics" in json.loads(body)["error"]["message"]


def test_health_on_every_listener_and_ready_follows_the_spool(tmp_path):
    http = free_port()
    g = Gateway(tmp_path / "gw")
    # Plain HTTP beside the others (it redirects everything but the health checks).
    g.config.write_text(g.config.read_text().replace(
        f'metrics = "127.0.0.1:{g.metrics}"\n', f'metrics = "127.0.0.1:{g.metrics}"\nhttp = "127.0.0.1:{http}"\n'))
    g.start()
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{http}/health/live")[0] == 200, what="http listener")
        for base in (f"http://127.0.0.1:{g.metrics}", f"http://127.0.0.1:{http}", f"https://127.0.0.1:{g.https}"):
            status, ctype, body = get(base + "/health/live")
            assert (status, json.loads(body)) == (200, {"status": "live"}), base
            status, _, body = get(base + "/health/ready")
            assert (status, json.loads(body)) == (200, {"status": "ready"}), base
        # Everything else on plain HTTP still redirects to HTTPS.
        req = urllib.request.Request(f"http://127.0.0.1:{http}/messages")

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **kw):
                return None
        try:
            urllib.request.build_opener(NoRedirect).open(req, timeout=10)
            raise AssertionError("no redirect")
        except urllib.error.HTTPError as e:
            assert e.code == 301

        # The spool directory gone (moved away; as root, permissions would not stop a
        # write): not ready, and the reason says so; back in place: ready again.
        spool = g.dir / "data" / "spool"
        spool.rename(g.dir / "data" / "spool.away")
        try:
            for base in (f"http://127.0.0.1:{g.metrics}", f"https://127.0.0.1:{g.https}"):
                status, _, body = get(base + "/health/ready")
                answer = json.loads(body)
                assert status == 503, body
                assert answer["status"] == "unavailable"
                assert answer["reason"].startswith("spool: cannot write in"), answer
            assert get(f"http://127.0.0.1:{g.metrics}/health/live")[0] == 200
        finally:
            (g.dir / "data" / "spool.away").rename(spool)
        status, _, body = get(f"http://127.0.0.1:{g.metrics}/health/ready")
        assert status == 200, body
    finally:
        g.stop()


def test_ready_turns_503_when_the_store_is_gone(tmp_path):
    if os.environ.get("PORTCULLIS_TEST_STORE", "sqlite") != "postgres":
        # SQLite is a file the process holds open: nothing outside the process makes it
        # stop answering. The PostgreSQL run of the suite (ci/test) runs this test.
        pytest.skip("the store's server going away needs PostgreSQL (PORTCULLIS_TEST_STORE=postgres)")
    g = Gateway(tmp_path / "gw")
    g.start()
    try:
        assert get(f"http://127.0.0.1:{g.metrics}/health/ready")[0] == 200
        # Every connection of the gateway ended and no new one allowed: the store is gone
        # for this gateway as if its server had stopped.
        name = g.pg_url.rsplit("/", 1)[1].split("?")[0]
        admin = os.environ["PORTCULLIS_TEST_POSTGRES_URL"]
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin,
                        "-c", f"ALTER DATABASE {name} ALLOW_CONNECTIONS false",
                        "-c", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"],
                       check=True, capture_output=True, timeout=30)

        def unready():
            status, _, body = get(f"http://127.0.0.1:{g.metrics}/health/ready")
            return body if status == 503 else None
        body = wait_for(unready, timeout=20, what="ready to turn 503")
        assert json.loads(body)["reason"].startswith("store: "), body
        assert get(f"http://127.0.0.1:{g.metrics}/health/live")[0] == 200
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin,
                        "-c", f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"],
                       check=True, capture_output=True, timeout=30)
        wait_for(lambda: get(f"http://127.0.0.1:{g.metrics}/health/ready")[0] == 200, timeout=20,
                 what="ready again")
    finally:
        g.stop()


def snmp_env(state):
    env = dict(os.environ)
    # snmpd and the tools keep their state here, not in /var/lib/snmp; no MIB files read.
    env["SNMP_PERSISTENT_DIR"] = str(state)
    env["MIBS"] = ""
    return env


def snmp(tool, port, state, *oids):
    r = subprocess.run([require(tool), "-v2c", "-c", "portcullis-test", "-On", "-M", str(state),
                        "-t", "5", "-r", "1", f"127.0.0.1:{port}", *oids],
                       capture_output=True, text=True, timeout=60, env=snmp_env(state))
    assert r.returncode == 0, r.stderr
    return dict(line.split(" = ", 1) for line in r.stdout.splitlines() if " = " in line)


def test_snmp_pass_persist_through_snmpd(gateway, sink, tmp_path):
    g = gateway
    snmpd = require("snmpd")
    require("snmpget")
    work = tmp_path / "snmp"
    work.mkdir()
    port = free_port()
    conf = work / "snmpd.conf"
    conf.write_text(
        "rocommunity portcullis-test 127.0.0.1\n"
        f"pass_persist {BASE_OID} {BIN} --config {g.config} snmp-pass-persist\n")
    state = work / "state"  # snmpd writes a persistent snmpd.conf of its own there
    state.mkdir()
    log = open(work / "snmpd.log", "w")
    # -f: in the foreground; -C: no other configuration file; -Lo: log to stdout.
    proc = subprocess.Popen([snmpd, "-f", "-Lo", "-C", "-c", str(conf), "-p", str(state / "pid"),
                             "-M", str(state), f"udp:127.0.0.1:{port}"],
                            stdout=log, stderr=log, env=snmp_env(state))
    try:
        assert send(g, ["bob@example.com", "eve@elsewhere.test"]) == ["bob@example.com"]
        sink.wait_count(1)
        wait_for(lambda: value(scrape(g), "portcullis_delivery_attempts_total", result="delivered") >= 1,
                 what="the delivery counted")
        time.sleep(0.5)  # snmpd is up by now; the first get also waits for it (-t 5).
        got = snmp("snmpget", port, state, f"{BASE_OID}.1.0", f"{BASE_OID}.2.0", f"{BASE_OID}.3.0",
                   f"{BASE_OID}.4.0", f"{BASE_OID}.7.0", f"{BASE_OID}.10.0")
        assert got[f"{BASE_OID}.1.0"] == "INTEGER: 1", got  # up
        assert got[f"{BASE_OID}.2.0"] == "INTEGER: 1", got  # ready
        connections = int(value(scrape(g), "portcullis_smtp_connections_total"))
        assert connections >= 1
        assert got[f"{BASE_OID}.3.0"] == f"Counter64: {connections}", got  # SMTP connections
        assert got[f"{BASE_OID}.4.0"] == "Counter64: 1", got  # accepted inbound
        assert got[f"{BASE_OID}.7.0"] == "Counter64: 1", got  # permanent refusals (554 at RCPT)
        assert got[f"{BASE_OID}.10.0"] == "Counter64: 1", got  # delivered
        walked = snmp("snmpwalk", port, state, BASE_OID)
        assert list(walked) == [f"{BASE_OID}.{i}.0" for i in range(1, 13)], walked
        assert walked[f"{BASE_OID}.8.0"].startswith("Gauge32: "), walked
        # The gateway stopped: up turns 2 (after the handler's few seconds of cache).
        g.stop()
        time.sleep(5.5)
        got = snmp("snmpget", port, state, f"{BASE_OID}.1.0")
        assert got[f"{BASE_OID}.1.0"] == "INTEGER: 2", got
    finally:
        stop_process(proc)
        log.close()


@pytest.mark.parametrize("args", [["snmp-pass-persist", "--metrics-url", "http://127.0.0.1:1"]])
def test_snmp_handler_answers_the_protocol_without_a_gateway(tmp_path, args):
    r = subprocess.run([str(BIN), *args], input=f"PING\nget\n{BASE_OID}.1.0\nget\n{BASE_OID}.3.0\n"
                       f"getnext\n{BASE_OID}\nset\n{BASE_OID}.1.0\ninteger 1\n\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["PONG", f"{BASE_OID}.1.0", "integer", "2", "NONE",
                                     f"{BASE_OID}.1.0", "integer", "2", "not-writable"]
