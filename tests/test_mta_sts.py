"""Outbound MTA-STS (RFC 8461) end to end: a DNS server on loopback publishes the
`_mta-sts` TXT record, the policy host and the MX of secure.test; an HTTPS server with a
certificate from a test CA serves the policy; the MX is a second Portcullis whose
certificate is either from the test CA (valid for the MX name) or self-signed. The
sending gateway trusts the test CA through `[delivery] extra_ca_file`."""

import re
import time

import pytest

from peers import Gateway, dns_server, send, wait_for
from peers.gateway import Mx
from peers.https import PolicyServer, policy_text


ZONE = """
secure.test.          60 IN MX  10 mx.secure.test.
mx.secure.test.       60 IN A   127.0.0.1
mta-sts.secure.test.  60 IN A   127.0.0.1
_mta-sts.secure.test. 60 IN TXT "v=STSv1; id=20261101T000000;"
"""


@pytest.fixture
def dns():
    with dns_server(ZONE) as port:
        yield port


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
