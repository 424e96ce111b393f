"""DKIM and ARC test vectors through the running gateway: messages signed by others (the
RFC 8463 example, Gmail, Exim, Facebook, GitHub, IETF lists, Google's ARC sealer; from
mail-auth's and dkimpy's test data, see tests/data/vectors/README.md) arrive over SMTP
with their keys served by a DNS server of the test. The Authentication-Results field on
the delivered copy must say what each signature is: pass, or the reason it is not. The same
messages with one body byte changed must not pass.
"""

import email
import re
from pathlib import Path

import pytest

from peers import Gateway, Sink, dns_server, send

VECTORS = Path(__file__).parent / "data" / "vectors"

# file -> {signing domain: expected dkim= result and a word of its reason}; "arc" the
# expected arc= result. Every signature of every message is listed.
EXPECTED = {
    "mail-auth-dkim-001.txt": {"football.example.com": ["pass", "pass"]},
    # d=example.com; i=joe@football.example.com
    "mail-auth-dkim-002.txt": {"football.example.com": ["pass"]},
    # The same signature twice.
    "mail-auth-dkim-003.txt": {"ietf.org": ["pass", "pass"]},
    "mail-auth-dkim-004.txt": {"facebookmail.com": ["pass"]},
    # Its x= (expiry) is 2022-11-08: expired now (RFC 6376 §3.5); mail-auth words an
    # expired signature "signature error".
    "mail-auth-dkim-005.txt": {"topicbox.com": ["neutral (signature error)"]},
    "mail-auth-dkim-006.txt": {"github.com": ["pass"]},
    "mail-auth-arc-001.txt": {"arc": "pass"},
    "mail-auth-arc-002.txt": {"arc": "pass"},
    "dkimpy-test2.txt": {"gmail.com": ["pass"]},  # degenerate header folding
    "dkimpy-ed25519test2.txt": {"test.ex": ["pass"]},  # Exim's ed25519-sha256
    "dkimpy-rfc6376-signed.txt": {"football.example.com": ["pass", "pass"]},
    "dkimpy-rfc6376-signed-rsa.txt": {"football.example.com": ["pass"]},
}


def load(path):
    """(records, message): `name value` lines, a blank line, the message (CRLF)."""
    text = path.read_bytes().replace(b"\r\n", b"\n")
    head, msg = text.split(b"\n\n", 1)
    records = [line.decode().split(" ", 1) for line in head.splitlines() if line.strip()]
    return records, msg.replace(b"\n", b"\r\n")


def zone_text():
    lines = set()
    for file in EXPECTED:
        for name, value in load(VECTORS / file)[0]:
            value = value.replace('"', '\\"')
            chunks = " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))
            lines.add(f"{name}. 60 IN TXT {chunks}")
    return "\n".join(sorted(lines)) + "\n"


def results(ar):
    """The dkim= results of an Authentication-Results value: [(result, domain)], in order."""
    out = []
    for part in ar.split(";")[1:]:
        part = " ".join(part.split())
        # The signer is header.d=, or header.i= (its domain part) when the signature
        # has an i= tag.
        m = re.match(r"dkim=(\w+(?: \([^)]*\))?).*header\.(?:d=|i=[^@\s]*@)([\w.-]+)", part)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """Every vector, and a copy with one body byte changed, through one gateway: the
    delivered copies by file name (the changed ones under `name + "~"`)."""
    tmp = tmp_path_factory.mktemp("vectors")
    sink = Sink(tmp / "sink").start()
    out = {}
    with dns_server(zone_text()) as port:
        g = Gateway(tmp / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{port}\"]\ntimeout_secs = 1\n"
                                "[auth]\nenabled = true\n")
        g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
        g.start()
        try:
            sent = 0
            for name in sorted(EXPECTED):
                msg = load(VECTORS / name)[1]
                head, body = msg.split(b"\r\n\r\n", 1)
                # One letter of the body changed (the first lower-case one).
                i = re.search(rb"[a-z]", body).start()
                changed = head + b"\r\n\r\n" + body[:i] + body[i:i + 1].upper() + body[i + 1:]
                for key, data in ((name, msg), (name + "~", changed)):
                    before = set(sink.files())
                    send(g.smtp, "check@vectors.test", ["bob@example.com"], message=data,
                         helo="vectors.test")
                    sent += 1
                    sink.wait_count(sent)
                    (new,) = set(sink.files()) - before
                    out[key] = email.message_from_bytes(new.read_bytes())
        finally:
            g.stop()
            sink.stop()
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_verifies(delivered, name):
    ar = delivered[name]["Authentication-Results"]
    assert ar and ar.startswith("gw.test;"), ar
    want = EXPECTED[name]
    if "arc" in want:
        assert f"arc={want['arc']}" in " ".join(ar.split()), ar
        return
    got = results(ar)
    expected = sorted((r, d) for d, rs in want.items() for r in rs)
    assert sorted(got) == expected, ar


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_changed_body_does_not_verify(delivered, name):
    ar = " ".join(delivered[name + "~"]["Authentication-Results"].split())
    if "arc" in EXPECTED[name]:
        assert "arc=pass" not in ar, ar
    else:
        assert "dkim=pass" not in ar, ar
