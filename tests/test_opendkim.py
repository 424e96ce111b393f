"""DKIM interoperability with OpenDKIM: a Postfix instance signs its outbound mail with the
OpenDKIM milter (as a sending organisation would) and relays it to Portcullis from outside;
Portcullis must verify the signatures, with each canonicalization and both key types, as
pass — here DMARC can only pass through DKIM, since the sender's SPF allows no host. A
signed message whose body was changed on the way must fail and be refused under the
sender's p=reject."""

import pytest

from peers import Gateway, dns_server, send, wait_for
from peers.opendkim import OpenDkim
from peers.pki import dkim_key
from peers.postfix import Postfix


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("odk-keys")
    rsa, ed = d / "rsa.private", d / "ed.private"
    return {
        "rsa": (rsa, dkim_key(rsa, "rsa", 2048)),
        "ed25519": (ed, dkim_key(ed, "ed25519")),
    }


def txt(text):
    """A TXT value as DNS strings of at most 255 bytes (a 2048-bit key needs two)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


@pytest.fixture
def odk_dns(keys):
    zone = f"""
odk.test.                   60 IN TXT "v=spf1 -all"
rsa._domainkey.odk.test.    60 IN TXT {txt("v=DKIM1; k=rsa; p=" + keys['rsa'][1])}
ed._domainkey.odk.test.     60 IN TXT {txt("v=DKIM1; k=ed25519; p=" + keys['ed25519'][1])}
_dmarc.odk.test.            60 IN TXT "v=DMARC1; p=reject; adkim=s"
"""
    with dns_server(zone) as port:
        yield port


def gateway(tmp_path, sink, dns_port):
    g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\ntimeout_secs = 1\n"
                                 "[auth]\nenabled = true\n[greylist]\nmode = \"never\"\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    return g.start()


@pytest.mark.parametrize("key_type,algorithm,canonicalization", [
    ("rsa", "rsa-sha256", "simple/simple"),
    ("rsa", "rsa-sha256", "relaxed/relaxed"),
    ("ed25519", "ed25519-sha256", "relaxed/simple"),
])
def test_opendkim_signed_mail_passes(tmp_path, sink, keys, odk_dns, key_type, algorithm,
                                     canonicalization):
    selector = "rsa" if key_type == "rsa" else "ed"
    milter = OpenDkim(tmp_path / "odk", keys[key_type][0], selector, algorithm,
                      canonicalization).start()
    g = gateway(tmp_path, sink, odk_dns)
    pf = Postfix(tmp_path / "pf", relayhost=f"[127.0.0.1]:{g.smtp}",
                 extra_main=f"non_smtpd_milters = inet:127.0.0.1:{milter.port}\n"
                            "milter_default_action = tempfail\n"
                            "smtp_tls_security_level = none\n").start()
    try:
        # Folded and oddly spaced header fields, trailing blanks and empty lines at the
        # end of the body: what the canonicalizations disagree on.
        body = ("Subject:   interop  \r\n\tcontinued\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
                "Message-ID: <odk-1@odk.test>\r\nFrom: Alice <alice@odk.test>\r\n"
                "To: bob@example.com\r\n\r\nfirst line  \r\n\tsecond\r\n\r\n\r\n")
        pf.sendmail("alice@odk.test", "bob@example.com", body.encode())
        try:
            (msg,) = sink.wait_count(1, timeout=60) and sink.messages()
        except AssertionError as e:
            raise AssertionError(f"{e}; Postfix log ends:\n{pf.maillog()[-3000:]}") from None
        signature = msg["DKIM-Signature"]
        assert signature is not None, pf.maillog()[-2000:]
        assert f"a={algorithm}" in signature.replace(" ", "") and f"c={canonicalization}" in signature
        ar = msg["Authentication-Results"]
        assert "dkim=pass" in ar and "header.d=odk.test" in ar and "header.s=" + selector in ar, ar
        assert "spf=fail" in ar and "dmarc=pass" in ar, ar
    finally:
        pf.stop()
        g.stop()
        milter.stop()


def test_opendkim_signature_over_changed_body_fails(tmp_path, sink, keys, odk_dns):
    milter = OpenDkim(tmp_path / "odk", keys["rsa"][0], "rsa", "rsa-sha256",
                      "relaxed/relaxed").start()
    # First the signed message as OpenDKIM makes it, caught at the sink directly.
    pf = Postfix(tmp_path / "pf", relayhost=f"[127.0.0.1]:{sink.port}",
                 extra_main=f"non_smtpd_milters = inet:127.0.0.1:{milter.port}\n"
                            "milter_default_action = tempfail\n"
                            "smtp_tls_security_level = none\n").start()
    try:
        pf.sendmail("alice@odk.test", "bob@example.com",
                    b"From: alice@odk.test\r\nTo: bob@example.com\r\nSubject: pay\r\n"
                    b"Message-ID: <odk-2@odk.test>\r\n\r\nPay 100 EUR to account 1.\r\n")
        (path,) = sink.wait_count(1, timeout=60)
    finally:
        pf.stop()
        milter.stop()
    raw = path.read_bytes()
    # smtp-sink stores lines with bare LF; SMTP wants CRLF.
    signed = raw[raw.index(b"DKIM-Signature:"):].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"Pay 100 EUR" in signed
    g = gateway(tmp_path, sink, odk_dns)
    try:
        for message, expect in ((signed, 250), (signed.replace(b"100 EUR", b"900 EUR"), 550)):
            code, text = send(g.smtp, "alice@odk.test", ["bob@example.com"], message=message,
                              helo="mail.odk.test", check=False)
            assert code == expect, (code, text)
        assert b"DMARC" in text
        wait_for(lambda: len(sink.files()) == 2, what="the untouched message delivered")
    finally:
        g.stop()
