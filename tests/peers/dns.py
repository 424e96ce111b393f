"""DNS servers on loopback (UDP and TCP on one free port): a plain zone given as text, and
a zone signed with ldns-signzone served with its DNSSEC records."""

import contextlib
import subprocess

from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSServer

from peers.common import free_port, require


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


class DnsServer:
    """A resolver served on a free loopback port, UDP and TCP."""

    def __init__(self, resolver):
        self.port = free_port()
        self.servers = [DNSServer(resolver, port=self.port, address="127.0.0.1", tcp=tcp)
                        for tcp in (False, True)]
        for s in self.servers:
            s.start_thread()

    def stop(self):
        for s in self.servers:
            s.stop()


@contextlib.contextmanager
def dns_server(zone_text):
    """A DNS server on a loopback port (UDP and TCP) serving the zone; yields the port."""
    server = DnsServer(Zone(zone_text))
    try:
        yield server.port
    finally:
        server.stop()


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


class SignedDns(DnsServer):
    """A signed zone (text from signed_zone) on a loopback port; `tamper_tlsa` breaks the
    TLSA records' signatures."""

    def __init__(self, text, tamper_tlsa=False):
        super().__init__(SignedZone(text, tamper_tlsa))


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
