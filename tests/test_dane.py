"""Outbound DANE (RFC 7672) end to end: the test signs a small zone for secure.test with
ldns-signzone (ECDSA P-256, NSEC), serves it with its signatures from a DNS server on
loopback, and gives the sending gateway the zone's key as its trust anchor
(`[delivery] dnssec_trust_anchor`). The MX is a second Portcullis with a self-signed
certificate: DANE-EE authenticates it by its key, whatever its name or issuer."""

import time

import pytest

from peers import Gateway, send, wait_for
from peers.dns import SignedDns, signed_zone
from peers.gateway import Mx
from peers.pki import Pki, spki_der, spki_sha256


def dane_sender(tmp_path, dns_port, mx_port, anchor):
    g = Gateway(tmp_path / "gw",
                f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\ntimeout_secs = 2\n'
                f"[delivery]\nmx_port = {mx_port}\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n"
                f'dnssec_trust_anchor = "{anchor}"\n')
    g.cli("network", "add", "127.0.0.0/8", "--comment", "test clients")
    return g


def setup(tmp_path, pki, tlsa_for, tamper=False, prepare=None, alias=False):
    """An MX with a self-signed certificate; TLSA 3 1 1 for `tlsa_for`'s key."""
    cert, key = pki.self_signed("mx.secure.test")
    mx = Mx(tmp_path, cert, key)
    published = {"mx": cert, "impostor": pki.self_signed("impostor.test")[0]}.get(tlsa_for)
    text, anchor = signed_zone(tmp_path / "zone", mx.port, published and spki_sha256(published),
                               alias)
    dns = SignedDns(text, tamper_tlsa=tamper)
    g = dane_sender(tmp_path, dns.port, mx.port, anchor)
    if prepare:
        prepare(g, mx)
    return mx, dns, g.start()


def test_dane_ee_match_delivers_to_self_signed_mx(tmp_path, pki):
    mx, dns, g = setup(tmp_path, pki, "mx")
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "authenticated by DANE")
        (msg,) = mx.sink.wait_count(1) and mx.sink.messages()
        assert msg["Subject"] == "authenticated by DANE"
        log = g.log_text()
        assert "DANE: 1 usable TLSA records" in log, log
        assert "DANE: certificate authenticated by TLSA" in log, log
    finally:
        g.stop()
        dns.stop()
        mx.stop()


@pytest.mark.parametrize("tlsa_for", ["mx", "impostor"])
def test_dane_for_an_mx_that_is_an_alias(tmp_path, pki, tlsa_for):
    """RFC 7672 §2.2.2: the MX name is a CNAME; the TLSA records are found at the name
    it expands to. A matching key delivers, a wrong one defers: DANE applied either way."""
    mx, dns, g = setup(tmp_path, pki, tlsa_for, alias=True)
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "through an alias")
        if tlsa_for == "mx":
            (msg,) = mx.sink.wait_count(1) and mx.sink.messages()
            assert msg["Subject"] == "through an alias"
            assert "DANE: certificate authenticated by TLSA" in g.log_text()
        else:
            wait_for(lambda: "DANE" in g.cli("queue", "list").stdout, what="deferral naming DANE")
            time.sleep(2)
            assert mx.sink.files() == [], "delivered despite a TLSA mismatch"
    finally:
        g.stop()
        dns.stop()
        mx.stop()


def test_dane_mismatch_defers(tmp_path, pki):
    mx, dns, g = setup(tmp_path, pki, "impostor")
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "wrong key")
        wait_for(lambda: "DANE" in g.cli("queue", "list").stdout, what="deferral naming DANE")
        assert "4.7.5" in g.cli("queue", "list").stdout
        time.sleep(2)
        assert mx.sink.files() == [], "delivered despite a TLSA mismatch"
        assert "DANE: TLS or authentication failed" in g.log_text()
    finally:
        g.stop()
        dns.stop()
        mx.stop()


@pytest.mark.parametrize("published", ["root", "other-ca"])
def test_dane_ta_key_of_a_root_the_server_does_not_send(tmp_path, published):
    """RFC 7672 §3.1.2, RFC 7671 §5.2.2: TLSA 2 1 0 holds a CA's whole public key. The MX
    presents its certificate and the intermediate, not the root: the root's key is the
    trust anchor and the message goes out; another CA's key defers it."""
    root = Pki(tmp_path / "ca", "DANE Test Root")
    chain, key = root.intermediate("DANE Test Intermediate").issue("mx.secure.test", chain=True)
    assert chain.read_text().count("BEGIN CERTIFICATE") == 2
    mx = Mx(tmp_path, chain, key)
    key_of = root.ca if published == "root" else Pki(tmp_path / "other").ca
    text, anchor = signed_zone(tmp_path / "zone", mx.port, spki_der(key_of).hex(),
                               tlsa_params="2 1 0")
    dns = SignedDns(text)
    g = dane_sender(tmp_path, dns.port, mx.port, anchor).start()
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "trust anchor not sent")
        if published == "root":
            (msg,) = mx.sink.wait_count(1) and mx.sink.messages()
            assert msg["Subject"] == "trust anchor not sent"
            log = g.log_text()
            assert "DANE: 1 usable TLSA records" in log, log
            assert "DANE: certificate authenticated by TLSA" in log, log
        else:
            wait_for(lambda: "DANE" in g.cli("queue", "list").stdout, what="deferral naming DANE")
            assert "4.7.5" in g.cli("queue", "list").stdout
            time.sleep(2)
            assert mx.sink.files() == [], "delivered with another CA's key in the TLSA record"
            log = g.log_text()
            assert "DANE: TLS or authentication failed" in log, log
            assert "does not verify" in log, log
    finally:
        g.stop()
        dns.stop()
        mx.stop()


def test_signed_zone_without_tlsa_is_opportunistic(tmp_path, pki):
    # A validated denial of the TLSA name: DANE does not apply, the self-signed MX gets
    # the message with opportunistic TLS.
    mx, dns, g = setup(tmp_path, pki, None)
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "no TLSA")
        mx.sink.wait_count(1)
        log = g.log_text()
        assert "no DANE (no TLSA records at" in log, log
        assert 'policy="may"' in log or "policy=may" in log, log
    finally:
        g.stop()
        dns.stop()
        mx.stop()


def test_bogus_tlsa_defers(tmp_path, pki):
    mx, dns, g = setup(tmp_path, pki, "mx", tamper=True)
    try:
        send(g.smtp, "me@example.net", ["friend@secure.test"], "bogus TLSA")
        wait_for(lambda: "DANE" in g.cli("queue", "list").stdout, what="deferral naming DANE")
        time.sleep(2)
        assert mx.sink.files() == [], "delivered despite a bogus TLSA answer"
        assert "host skipped by TLS policy" in g.log_text()
    finally:
        g.stop()
        dns.stop()
        mx.stop()


def test_route_with_tls_dane(tmp_path, pki):
    # A configured route (not MX delivery) that requires DANE, to the same signed host.
    def route(g, mx):
        g.cli("domain", "add", "routed.test", "--route", f"mx.secure.test:{mx.port}",
              "--tls", "dane")
        mx.gw.cli("domain", "add", "routed.test", "--route", f"127.0.0.1:{mx.sink.port}")
        time.sleep(2.5)  # the running MX reloads its policy every 2 s
    mx, dns, g = setup(tmp_path, pki, "mx", prepare=route)
    try:
        send(g.smtp, "x@outside.test", ["bob@routed.test"], "routed with DANE")
        mx.sink.wait_count(1)
        assert "DANE required by the route" in g.log_text()
    finally:
        g.stop()
        dns.stop()
        mx.stop()


def test_route_requiring_dane_defers_without_tlsa(tmp_path, sink):
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 60\n")
    assert g.cli("domain", "add", "x.test", "--route", "127.0.0.1:25", "--tls", "sometimes",
                 check=False).returncode != 0
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}", "--tls", "dane")
    g.start()
    try:
        send(g.smtp, "x@outside.test", ["bob@example.com"], "needs DANE")
        wait_for(lambda: "DANE required" in g.cli("queue", "list").stdout,
                 what="deferral: DANE required")
        assert sink.files() == []
    finally:
        g.stop()
