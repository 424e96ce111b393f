"""The real peers the integration tests run on loopback, and the one way to talk to them.

    common    BIN, require (a missing peer is an error, never a skip), free_port, wait_port, wait_for
    gateway   Gateway (one portcullis instance), Mx (a second one as a TLS MX host)
    sink      Sink (Postfix's smtp-sink)
    smtp      send (one SMTP transaction: the only sending helper)
    pki       Pki (test CAs and certificates by openssl), spki_der/spki_sha256, dkim_key
    dns       dns_server/DnsServer (a zone on loopback), SignedZone/SignedDns/signed_zone (DNSSEC)
    https     HttpsServer, PolicyServer (MTA-STS policy, any GET), ReportServer (POSTed reports)
    postfix   Postfix (a private instance)
    clamd     Clamd (with the EICAR test signature)
    opendkim  OpenDkim (the milter, signing)
    fake_smtp a scripted SMTP server (refuses recipients, counts connections): start()
    rsyslog   Rsyslog (a private rsyslogd: UDP, TCP and TLS inputs, what it got in a file)
    prometheus samples/value (reading the gateway's /metrics text)
    slapd     Slapd (OpenLDAP with a small tree: users, an alias, nested groups, a disabled account)

The fixtures stay in conftest.py."""

from peers.common import BIN, ROOT, free_port, require, wait_for, wait_port
from peers.dns import dns_server
from peers.gateway import Gateway
from peers.sink import Sink
from peers.smtp import send

__all__ = ["BIN", "ROOT", "Gateway", "Sink", "dns_server", "free_port", "require", "send",
           "wait_for", "wait_port"]
