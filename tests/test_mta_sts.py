"""Outbound MTA-STS (RFC 8461) end to end: a DNS server on loopback publishes the
`_mta-sts` TXT record, the policy host and the MX of secure.test; an HTTPS server with a
certificate from a test CA serves the policy; the MX is a second Portcullis whose
certificate is either from the test CA (valid for the MX name) or self-signed. The
sending gateway trusts the test CA through `[delivery] extra_ca_file`."""

import http.server
import re
import smtplib
import ssl
import subprocess
import threading
import time

import pytest
from conftest import Gateway, Sink, dns_server, free_port, require, wait_for


def send(port, sender, rcpts, subject):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail(sender, rcpts, f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def openssl(*args):
    subprocess.run([require("openssl"), *args], check=True, capture_output=True, timeout=60)


class Pki:
    """A test CA and certificates: issued by it for a name, or self-signed."""

    def __init__(self, d):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca = d / "ca.pem"
        self.ca_key = d / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(self.ca_key), "-out", str(self.ca), "-days", "2",
                "-subj", "/CN=Portcullis Test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name):
        key, csr, cert, ext = (self.dir / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
        ext.write_text(f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
        return cert, key

    def self_signed(self, name):
        key, cert = self.dir / f"self-{name}.key", self.dir / f"self-{name}.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                "-addext", f"subjectAltName=DNS:{name}",
                "-addext", "basicConstraints=critical,CA:FALSE")
        return cert, key


class PolicyServer:
    """HTTPS on a free loopback port serving /.well-known/mta-sts.txt."""

    def __init__(self, cert, key, policy, content_type="text/plain"):
        self.policy = policy
        self.content_type = content_type
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.requests += 1
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                body = outer.policy.encode()
                self.send_response(200)
                self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def policy_text(mode, mx="mx.secure.test"):
    # CRLF and trailing blanks on purpose: the parser must be tolerant of both.
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}  \r\nmax_age: 86400\r\n"


ZONE = """
secure.test.          60 IN MX  10 mx.secure.test.
mx.secure.test.       60 IN A   127.0.0.1
mta-sts.secure.test.  60 IN A   127.0.0.1
_mta-sts.secure.test. 60 IN TXT "v=STSv1; id=20261101T000000;"
"""


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def dns():
    with dns_server(ZONE) as port:
        yield port


class Mx:
    """A second Portcullis as the MX of secure.test, with the given certificate; what it
    accepts goes to an smtp-sink."""

    def __init__(self, workdir, cert, key, port=None):
        self.sink = Sink(workdir / "sink").start()
        self.gw = Gateway(workdir / "mx", f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
        if port:
            self.gw.smtp = port
            text = self.gw.config.read_text()
            self.gw.config.write_text(
                "\n".join(f'smtp = "127.0.0.1:{port}"' if line.startswith("smtp =") else line
                          for line in text.splitlines()) + "\n")
        self.gw.cli("domain", "add", "secure.test", "--route", f"127.0.0.1:{self.sink.port}")
        self.gw.start()
        self.port = self.gw.smtp

    def stop(self):
        self.gw.stop()
        self.sink.stop()


def sender(tmp_path, dns, mx_port, pki, policy_port, name="gw"):
    g = Gateway(tmp_path / name,
                f'[dns]\nnameservers = ["127.0.0.1:{dns}"]\ntimeout_secs = 2\n'
                f"[delivery]\nmx_port = {mx_port}\nmta_sts_port = {policy_port}\n"
                f'extra_ca_file = "{pki.ca}"\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n')
    g.cli("network", "add", "127.0.0.0/8", "--comment", "test clients")
    return g


def queued_reply(g):
    return g.cli("queue", "list").stdout


def test_enforce_with_valid_certificate_delivers(tmp_path, dns, pki):
    policy = PolicyServer(*pki.issue("mta-sts.secure.test"), policy_text("enforce"))
    mx = Mx(tmp_path, *pki.issue("mx.secure.test"))
    g = sender(tmp_path, dns, mx.port, pki, policy.port).start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "over verified TLS")
        (msg,) = mx.sink.wait_count(1) and mx.sink.messages()
        assert msg["Subject"] == "over verified TLS"
        wait_for(lambda: g.queue_ids() == [], what="queue empty")
        log = g.log_text()
        assert "MTA-STS policy applies" in log and re.search(r'mode="?enforce', log), log
        assert "MTA-STS: certificate verified" in log, log
        assert policy.requests == 1
        # The policy is cached: a second message does not fetch it again.
        send(g.smtp, "me@example.net", ["friend@secure.test"], "second")
        mx.sink.wait_count(2)
        assert policy.requests == 1
        assert (g.dir / "data" / "spool" / "mta-sts.json").exists()
    finally:
        g.stop()
        mx.stop()
        policy.stop()


def test_enforce_refuses_untrusted_certificate_and_defers(tmp_path, dns, pki):
    policy = PolicyServer(*pki.issue("mta-sts.secure.test"), policy_text("enforce"))
    mx = Mx(tmp_path, *pki.self_signed("mx.secure.test"))
    g = sender(tmp_path, dns, mx.port, pki, policy.port).start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "must not leak")
        wait_for(lambda: "MTA-STS" in queued_reply(g), what="deferral naming MTA-STS")
        listing = queued_reply(g)
        assert "4.7.5" in listing, listing
        assert len(g.queue_ids()) == 1, "the message stays queued"
        # Retries (backoff 1-2 s) keep refusing; nothing reaches the MX's sink.
        time.sleep(3)
        assert mx.sink.files() == []
        log = g.log_text()
        assert "MTA-STS enforce: TLS or certificate failed" in log, log
        search = g.cli("log", "search", "--recipient", "friend@secure.test").stdout
        assert "deferred" in search and "delivered" not in search, search
    finally:
        g.stop()
        mx.stop()
        policy.stop()


def test_testing_mode_delivers_despite_bad_certificate(tmp_path, dns, pki):
    policy = PolicyServer(*pki.issue("mta-sts.secure.test"), policy_text("testing"))
    mx = Mx(tmp_path, *pki.self_signed("mx.secure.test"))
    g = sender(tmp_path, dns, mx.port, pki, policy.port).start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "testing mode")
        mx.sink.wait_count(1)
        wait_for(lambda: g.queue_ids() == [], what="queue empty")
        log = g.log_text()
        assert re.search(r'mode="?testing', log), log
        assert "MTA-STS testing: TLS or certificate failed" in log, log
    finally:
        g.stop()
        mx.stop()
        policy.stop()


def test_enforce_skips_mx_not_in_policy(tmp_path, dns, pki):
    policy = PolicyServer(*pki.issue("mta-sts.secure.test"),
                          policy_text("enforce", mx="*.elsewhere.test"))
    mx = Mx(tmp_path, *pki.issue("mx.secure.test"))
    g = sender(tmp_path, dns, mx.port, pki, policy.port).start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "wrong mx")
        wait_for(lambda: "does not match" in queued_reply(g), what="deferral for MX mismatch")
        assert mx.sink.files() == []
        assert "host skipped by TLS policy" in g.log_text()
    finally:
        g.stop()
        mx.stop()
        policy.stop()


def test_policy_not_text_plain_is_ignored(tmp_path, dns, pki):
    # A policy served with another media type is no policy: delivery is opportunistic,
    # so even a self-signed MX gets the message.
    policy = PolicyServer(*pki.issue("mta-sts.secure.test"), policy_text("enforce"),
                          content_type="text/html")
    mx = Mx(tmp_path, *pki.self_signed("mx.secure.test"))
    g = sender(tmp_path, dns, mx.port, pki, policy.port).start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "no valid policy")
        mx.sink.wait_count(1)
        assert "not text/plain" in g.log_text()
    finally:
        g.stop()
        mx.stop()
        policy.stop()


def test_cached_policy_survives_restart_without_policy_server(tmp_path, dns, pki):
    policy = PolicyServer(*pki.issue("mta-sts.secure.test"), policy_text("enforce"))
    good = Mx(tmp_path / "good", *pki.issue("mx.secure.test"))
    g = sender(tmp_path, dns, good.port, pki, policy.port)
    g.start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "learn the policy")
        good.sink.wait_count(1)
        wait_for(lambda: g.queue_ids() == [], what="queue empty")
    finally:
        g.stop()
        policy.stop()
        port = good.port
        good.stop()
    # Same MX port, now with a self-signed certificate; the policy server is gone.
    bad = Mx(tmp_path / "bad", *pki.self_signed("mx.secure.test"), port=port)
    g.start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "after restart")
        wait_for(lambda: "MTA-STS" in queued_reply(g), what="deferral from the cached policy")
        assert bad.sink.files() == []
        assert "source=cached" in g.log_text()
    finally:
        g.stop()
        bad.stop()
