"""Inbound mail authentication end to end: a DNS server run by the test serves SPF,
DKIM keys and DMARC policies; messages are signed by dkimpy. Portcullis must pass an
aligned signed message and stamp Authentication-Results, reject a spoofed p=reject
domain at SMTP time, hold a p=quarantine failure in the quarantine, and never reject for good when DNS
fails."""

import email
import json
import re
import smtplib

import dkim
import pytest

from peers import Gateway, dns_server, free_port, send


@pytest.fixture
def auth_dns(dkim_key):
    _, public = dkim_key
    zone = f"""
outside.test.                 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
sel._domainkey.outside.test.  60 IN TXT "v=DKIM1; k=rsa; p={public}"
_dmarc.outside.test.          60 IN TXT "v=DMARC1; p=reject"
spoofed.test.                 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.spoofed.test.          60 IN TXT "v=DMARC1; p=reject"
doubtful.test.                60 IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.doubtful.test.         60 IN TXT "v=DMARC1; p=quarantine"
sel._domainkey.lists.test.    60 IN TXT "v=DKIM1; k=rsa; p={public}"
"""
    with dns_server(zone) as port:
        yield port


def gateway(tmp_path, sink, dns_port, extra=""):
    g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\ntimeout_secs = 1\n"
                                 f"[auth]\nenabled = true\n{extra}")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    return g.start()


def message(sender, subject):
    return (f"From: {sender}\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\nhello\r\n").encode()


def sign(msg, key):
    sig = dkim.sign(msg, b"sel", b"outside.test", key, include_headers=[b"from", b"to", b"subject"])
    return sig + msg


def test_aligned_signed_message_passes_and_is_stamped(tmp_path, sink, auth_dns, dkim_key):
    g = gateway(tmp_path, sink, auth_dns)
    try:
        signed = sign(message("alice@outside.test", "signed"), dkim_key[0])
        send(g.smtp, "alice@outside.test", ["bob@example.com"], message=signed,
             helo="mail.outside.test")
        (msg,) = sink.wait_count(1) and sink.messages()
        ar = msg["Authentication-Results"]
        assert ar is not None and ar.startswith("gw.test;"), ar
        assert "dkim=pass" in ar and "header.i=@outside.test" in ar, ar
        assert "spf=pass" in ar and "dmarc=pass" in ar, ar
        # The signature still verifies downstream: the body was not touched.
        assert msg["DKIM-Signature"] is not None
    finally:
        g.stop()


def test_spoofed_reject_domain_is_refused_at_smtp_time(tmp_path, sink, auth_dns):
    g = gateway(tmp_path, sink, auth_dns)
    try:
        code, text = send(g.smtp, "ceo@spoofed.test", ["bob@example.com"],
                          message=message("ceo@spoofed.test", "pay this invoice"),
                          helo="attacker.test", check=False)
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        assert b"DMARC" in text
        assert g.queue_ids() == []
        assert sink.files() == []
    finally:
        g.stop()


def test_tampered_signature_fails(tmp_path, sink, auth_dns, dkim_key):
    g = gateway(tmp_path, sink, auth_dns)
    try:
        signed = sign(message("alice@outside.test", "tampered"), dkim_key[0])
        tampered = signed.replace(b"hello", b"HELLO")
        # SPF still passes for outside.test from 127.0.0.1, so DMARC passes by SPF.
        send(g.smtp, "alice@outside.test", ["bob@example.com"], message=tampered,
             helo="mail.outside.test")
        (msg,) = sink.wait_count(1) and sink.messages()
        ar = msg["Authentication-Results"]
        # mail-auth reports a body hash mismatch as neutral; either way, not a pass.
        assert "dkim=pass" not in ar and "body hash did not verify" in ar, ar
        assert "dmarc=pass" in ar, ar
    finally:
        g.stop()


def test_quarantine_policy_failure_is_held(tmp_path, sink, auth_dns):
    g = gateway(tmp_path, sink, auth_dns)
    try:
        send(g.smtp, "news@doubtful.test", ["bob@example.com"],
             message=message("news@doubtful.test", "q"), helo="somewhere.test")
        held = json.loads(g.cli("quarantine", "list", "--json").stdout)
        assert [(h["recipient"], h["class"], h["rule"]) for h in held] == [
            ("bob@example.com", "policy", "default: dmarc quarantine")], held
        shown = g.cli("quarantine", "show", held[0]["id"]).stdout
        assert "dmarc.quarantine" in shown and "dmarc=fail" in shown
        assert sink.files() == [] and g.queue_ids() == []
    finally:
        g.stop()


def test_spf_fail_rejected_at_mail_when_configured(tmp_path, sink, auth_dns):
    g = gateway(tmp_path, sink, auth_dns, "spf_reject_fail = true\n")
    try:
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=20) as s:
            s.ehlo("attacker.test")
            code, text = s.mail("ceo@spoofed.test")
        assert code == 550 and text.startswith(b"5.7.23"), (code, text)
    finally:
        g.stop()


def test_dns_failure_is_a_temporary_error(tmp_path, sink):
    # A nameserver that never answers: nothing can be verified, nothing is refused for good.
    g = gateway(tmp_path, sink, free_port())
    try:
        code, text = send(g.smtp, "alice@outside.test", ["bob@example.com"],
                          message=message("alice@outside.test", "dns down"),
                          helo="mail.outside.test", timeout=60, check=False)
        assert code == 451 and text.startswith(b"4.4.3"), (code, text)
        assert g.queue_ids() == []
    finally:
        g.stop()


def test_internal_and_authenticated_mail_is_not_verified(tmp_path, sink, auth_dns):
    g = gateway(tmp_path, sink, auth_dns)
    g.cli("network", "add", "127.0.0.0/8")
    try:
        import time
        time.sleep(2.5)
        send(g.smtp, "ceo@spoofed.test", ["bob@example.com"],
             message=message("ceo@spoofed.test", "internal"), helo="internal.example.com")
        (msg,) = sink.wait_count(1) and sink.messages()
        assert msg["Authentication-Results"] is None
    finally:
        g.stop()


@pytest.mark.parametrize("from_header", [
    "From: ceo@spoofed.test, x@attacker.test\r\n",
    "From: ceo@spoofed.test\r\nFrom: x@attacker.test\r\n",
])
def test_several_author_domains_cannot_dodge_dmarc(tmp_path, sink, auth_dns, from_header):
    # mail-auth skips DMARC when From names several domains; the gateway refuses instead.
    g = gateway(tmp_path, sink, auth_dns)
    try:
        msg = (from_header + "To: bob@example.com\r\nSubject: pay\r\n\r\nnow\r\n").encode()
        code, text = send(g.smtp, "x@attacker.test", ["bob@example.com"], message=msg,
                          helo="attacker.test", check=False)
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        assert sink.files() == []
    finally:
        g.stop()


def arc_sealed(msg, key, sealer=b"lists.test"):
    """A mailing list's forward: it records what it saw, then seals (RFC 8617)."""
    with_ar = b"Authentication-Results: lists.test; spf=pass smtp.mailfrom=ceo@spoofed.test\r\n" + msg
    headers = dkim.arc_sign(with_ar, b"sel", sealer, key, b"lists.test",
                            include_headers=[b"from", b"to", b"subject"])
    return b"".join(headers) + with_ar


@pytest.mark.parametrize("trusted", [True, False])
def test_trusted_arc_sealer_overrides_dmarc_reject(tmp_path, sink, auth_dns, dkim_key, trusted):
    extra = 'trusted_arc_sealers = ["lists.test"]\n' if trusted else ""
    g = gateway(tmp_path, sink, auth_dns, extra)
    try:
        sealed = arc_sealed(message("ceo@spoofed.test", "via the list"), dkim_key[0])
        code, text = send(g.smtp, "ceo@spoofed.test", ["bob@example.com"], message=sealed,
                          helo="lists.test", check=False)
        if trusted:
            assert code == 250, (code, text)
            (msg,) = sink.wait_count(1) and sink.messages()
            ours = [h for h in msg.get_all("Authentication-Results") if h.startswith("gw.test")]
            assert len(ours) == 1 and "arc=pass" in ours[0] and "dmarc=fail" in ours[0], ours
        else:
            # An untrusted sealer could be the spoofer itself: the DMARC reject stands.
            assert code == 550 and text.startswith(b"5.7.1"), (code, text)
            assert sink.files() == []
    finally:
        g.stop()


def test_forwarded_mail_is_arc_sealed(tmp_path, sink, auth_dns, dkim_key):
    """`arc_seal_domain`: inbound mail leaves with our ARC set over the message as it is
    forwarded (our Received and Authentication-Results included), chained to a set it
    arrived with; dkimpy verifies the chain as pass."""
    g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{auth_dns}\"]\ntimeout_secs = 1\n"
                                 "[auth]\nenabled = true\narc_seal_domain = \"gw.test\"\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    published = g.cli("dkim", "generate", "gw.test", "--selector", "arc").stdout
    # The record as printed: quoted strings of at most 255 characters, to be joined.
    seal_key = "".join(re.findall(r'"([^"]*)"', published[published.index("IN TXT"):]))
    keys = {b"arc._domainkey.gw.test.": seal_key.encode(),
            b"sel._domainkey.outside.test.": f"v=DKIM1; k=rsa; p={dkim_key[1]}".encode(),
            b"sel._domainkey.lists.test.": f"v=DKIM1; k=rsa; p={dkim_key[1]}".encode()}

    def dns(name, timeout=5):
        return keys.get(name if name.endswith(b".") else name + b".")

    g.start()
    try:
        direct = sign(message("alice@outside.test", "direct"), dkim_key[0])
        listed = arc_sealed(sign(message("alice@outside.test", "listed"), dkim_key[0]), dkim_key[0])
        for msg in (direct, listed):
            send(g.smtp, "alice@outside.test", ["bob@example.com"], message=msg,
                 helo="mail.outside.test")
        sink.wait_count(2)
        by_subject = {}
        for path in sink.files():
            raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            by_subject[email.message_from_bytes(raw)["Subject"]] = raw
        for subject, instance in (("direct", 1), ("listed", 2)):
            raw = by_subject[subject]
            parsed = email.message_from_bytes(raw)
            seals = parsed.get_all("ARC-Seal")
            assert len(seals) == instance, seals
            ours = [s for s in seals if f"i={instance}" in s.replace(" ", "")][0]
            assert "d=gw.test" in ours and "s=arc" in ours, ours
            assert ("cv=none" if instance == 1 else "cv=pass") in ours.replace(" ", ""), ours
            aar = [a for a in parsed.get_all("ARC-Authentication-Results") if a.startswith(f"i={instance}")]
            assert len(aar) == 1 and "gw.test" in aar[0] and "dkim=pass" in aar[0], aar
            cv, _, comment = dkim.arc_verify(raw, dnsfunc=dns)
            assert cv == b"pass", (subject, cv, comment)
    finally:
        g.stop()


def test_allow_list_overrides_a_dmarc_reject(tmp_path, sink, auth_dns):
    """The local override: a client on the allow list (a partner whose mail a forwarder
    breaks) gets its p=reject failure delivered, with the failure and the override said
    in Authentication-Results, the findings and the log; others are still refused."""
    g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{auth_dns}\"]\ntimeout_secs = 1\n"
                                 "[auth]\nenabled = true\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.cli("list", "add", "allow", "ip", "127.0.0.2", "--comment", "partner relay")
    g.start()
    try:
        for source, expect in (("127.0.0.2", 250), ("127.0.0.1", 550)):
            code, text = send(g.smtp, "ceo@spoofed.test", ["bob@example.com"],
                              message=message("ceo@spoofed.test", f"from {source}"),
                              helo="relay.partner.test", source=source, check=False)
            assert code == expect, (source, code, text)
        (msg,) = sink.wait_count(1) and sink.messages()
        assert msg["Subject"] == "from 127.0.0.2"
        ar = msg["Authentication-Results"]
        assert "dmarc=fail" in ar, ar
        out = g.cli("log", "search", "--sender", "ceo@spoofed.test", "--json").stdout
        assert "dmarc.override" in out, out
        assert "DMARC reject overridden by the allow list" in g.log_text()
    finally:
        g.stop()
