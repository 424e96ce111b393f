"""Outbound DANE (RFC 7672) end to end: the test signs a small zone for secure.test with
ldns-signzone (ECDSA P-256, NSEC), serves it with its signatures from a DNS server on
loopback, and gives the sending gateway the zone's key as its trust anchor
(`[delivery] dnssec_trust_anchor`). The MX is a second Portcullis with a self-signed
certificate: DANE-EE authenticates it by its key, whatever its name or issuer."""

import hashlib
import subprocess
import time

import pytest
from conftest import Gateway, free_port, require, wait_for
from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSServer
from test_mta_sts import Mx, Pki, openssl, send


class SignedZone(BaseResolver):
    """Answers from a signed zone with the RRSIGs of each answer; NODATA carries the
    name's NSEC and the SOA with their signatures, as a DNSSEC-aware server does."""

    def __init__(self, text, tamper_tlsa=False):
        self.rrs = RR.fromZone(text)
        if tamper_tlsa:
            # Flip a bit of the TLSA data after signing: the signature no longer fits.
            for rr in self.rrs:
                if rr.rtype == QTYPE.TLSA:
                    data = bytearray(rr.rdata.cert_data)
                    data[0] ^= 1
                    rr.rdata.cert_data = bytes(data)

    def sigs(self, name, rtype):
        return [rr for rr in self.rrs
                if rr.rname == name and rr.rtype == QTYPE.RRSIG and rr.rdata.covered == rtype]

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        qname = q.qname
        # An alias: its CNAME and signature, then the answer at the target, as an
        # authoritative server for both names puts them in one reply.
        for _ in range(8):
            cname = [rr for rr in self.rrs if rr.rname == qname and rr.rtype == QTYPE.CNAME]
            if not cname or q.qtype == QTYPE.CNAME:
                break
            for rr in cname + self.sigs(qname, QTYPE.CNAME):
                reply.add_answer(rr)
            qname = cname[0].rdata.label
        at_name = [rr for rr in self.rrs if rr.rname == qname]
        answers = [rr for rr in at_name if rr.rtype == q.qtype]
        for rr in answers + (self.sigs(qname, q.qtype) if answers else []):
            reply.add_answer(rr)
        if answers or reply.rr:
            return reply
        soa = [rr for rr in self.rrs if rr.rtype == QTYPE.SOA]
        for rr in soa + self.sigs(soa[0].rname, QTYPE.SOA):
            reply.add_auth(rr)
        if at_name:
            for rr in [rr for rr in at_name if rr.rtype == QTYPE.NSEC] + self.sigs(q.qname, QTYPE.NSEC):
                reply.add_auth(rr)
        else:
            # The zone is tiny: every NSEC with its signature covers the name and the
            # wildcard among them, which proves NXDOMAIN.
            reply.header.rcode = RCODE.NXDOMAIN
            for nsec in [rr for rr in self.rrs if rr.rtype == QTYPE.NSEC]:
                reply.add_auth(nsec)
                for sig in self.sigs(nsec.rname, QTYPE.NSEC):
                    reply.add_auth(sig)
        return reply


def spki_der(cert_pem):
    """The certificate's SubjectPublicKeyInfo, DER."""
    pem = subprocess.run([require("openssl"), "x509", "-in", str(cert_pem), "-noout", "-pubkey"],
                         check=True, capture_output=True, timeout=30).stdout
    return subprocess.run([require("openssl"), "pkey", "-pubin", "-outform", "DER"], input=pem,
                          check=True, capture_output=True, timeout=30).stdout


def spki_sha256(cert_pem):
    return hashlib.sha256(spki_der(cert_pem)).hexdigest()


class CaChain:
    """A root CA, an intermediate CA it signed, and a certificate for `name` that the
    intermediate signed. `chain` is the server's PEM: its certificate and the
    intermediate, without the root."""

    def __init__(self, d, name):
        d.mkdir(parents=True, exist_ok=True)
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        self.root, root_key = d / "root.pem", d / "root.key"
        openssl("req", "-x509", *ec, "-keyout", str(root_key), "-out", str(self.root),
                "-days", "2", "-subj", "/CN=DANE Test Root",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

        def issue(stem, subject, ca, ca_key, ext):
            key, csr, cert, extfile = (d / f"{stem}.{x}" for x in ("key", "csr", "pem", "ext"))
            extfile.write_text(ext)
            openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", subject)
            openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extfile))
            return cert, key

        mid, mid_key = issue("intermediate", "/CN=DANE Test Intermediate", self.root, root_key,
                             "basicConstraints=critical,CA:TRUE\n"
                             "keyUsage=critical,keyCertSign,cRLSign\n")
        leaf, self.key = issue("server", f"/CN={name}", mid, mid_key,
                               f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        self.chain = d / "chain.pem"
        self.chain.write_text(leaf.read_text() + mid.read_text())


def signed_zone(workdir, tlsa_port, tlsa_hex, alias=False, tlsa_params="3 1 1", extra=""):
    """Signs the zone; returns (signed zone text, trust anchor file). `alias`: the MX
    record names `alias.secure.test`, a CNAME of the host `mx.secure.test`. The TLSA
    record is `tlsa_params tlsa_hex`; `extra` are more records (zone file lines)."""
    workdir.mkdir(parents=True, exist_ok=True)
    base = subprocess.run([require("ldns-keygen"), "-a", "ECDSAP256SHA256", "-k", "secure.test"],
                          cwd=workdir, check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()
    zone = workdir / "secure.test.zone"
    zone.write_text(f"""$ORIGIN secure.test.
$TTL 60
@    IN SOA ns.secure.test. hostmaster.secure.test. 1 60 60 60 60
@    IN NS  ns.secure.test.
ns   IN A   127.0.0.1
@    IN MX  10 {"alias" if alias else "mx"}.secure.test.
mx   IN A   127.0.0.1
""" + ("alias IN CNAME mx.secure.test.\n" if alias else "")
      + (f"_{tlsa_port}._tcp.mx IN TLSA {tlsa_params} {tlsa_hex}\n" if tlsa_hex else "")
      + extra)
    subprocess.run([require("ldns-signzone"), str(zone), base], cwd=workdir, check=True,
                   capture_output=True, timeout=60)
    signed = (workdir / "secure.test.zone.signed").read_text()
    return signed, workdir / f"{base}.key"


class SignedDns:
    def __init__(self, text, tamper_tlsa=False):
        self.port = free_port()
        zone = SignedZone(text, tamper_tlsa)
        self.servers = [DNSServer(zone, port=self.port, address="127.0.0.1", tcp=tcp)
                        for tcp in (False, True)]
        for s in self.servers:
            s.start_thread()

    def stop(self):
        for s in self.servers:
            s.stop()


def dane_sender(tmp_path, dns_port, mx_port, anchor):
    g = Gateway(tmp_path / "gw",
                f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\ntimeout_secs = 2\n'
                f"[delivery]\nmx_port = {mx_port}\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n"
                f'dnssec_trust_anchor = "{anchor}"\n')
    g.cli("network", "add", "127.0.0.0/8", "--comment", "test clients")
    return g


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


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
    ca = CaChain(tmp_path / "ca", "mx.secure.test")
    assert ca.chain.read_text().count("BEGIN CERTIFICATE") == 2
    mx = Mx(tmp_path, ca.chain, ca.key)
    key_of = ca.root if published == "root" else Pki(tmp_path / "other").ca
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
