"""Outbound DKIM signing checked by another implementation: keys made with `portcullis dkim
generate|rotate`, the DNS records the commands print served to dkimpy through its dnsfunc (no
DNS server), messages signed by the gateway's signer (`portcullis dkim sign`), verified by
dkimpy for RSA and Ed25519; changes to the message break the signatures, and rotation keeps
the retiring keys listed with their records."""

import json
import re
import subprocess

import dkim

from peers import BIN, Gateway, send

try:
    import nacl.signing  # noqa: F401  dkimpy verifies Ed25519 with PyNaCl
except ImportError as e:  # a missing peer is an error, never a skip
    raise RuntimeError("PyNaCl is not installed: run ./ci/test, which installs the test peers") from e

RECORD = re.compile(r"^\s*(\S+\._domainkey\.\S+\.) IN TXT (.+)$", re.M)

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: quarterly numbers\r\n"
    b"Date: Mon, 23 Nov 2026 10:41:02 +0000\r\n"
    b"Message-ID: <q3@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"\r\n"
    b"the numbers are attached.\r\n"
)


def records(output):
    """Owner name -> TXT value from the zone-file lines a command printed, the quoted
    character-strings joined as a resolver joins them."""
    found = {}
    for name, strings in RECORD.findall(output):
        parts = re.findall(r'"((?:[^"\\]|\\.)*)"', strings)
        assert parts and all(len(p) <= 255 for p in parts), strings
        found[name] = "".join(parts)
    return found


class Zone:
    """The records published so far, as dkimpy's dnsfunc."""

    def __init__(self):
        self.txt = {}
        self.asked = []

    def publish(self, output):
        new = records(output)
        assert new, f"no DNS record in:\n{output}"
        self.txt.update(new)
        return new

    def __call__(self, name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        self.asked.append(name)
        value = self.txt.get(name.lower())
        return value.encode() if value is not None else None


def sign(g, message, *args, check=True):
    """`portcullis dkim sign` on raw bytes (Gateway.cli is text mode, which would turn the
    CRLF line ends that the signatures cover into LF)."""
    r = subprocess.run([str(BIN), "--config", str(g.config), "dkim", "sign", *args],
                       input=message, capture_output=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def signatures(message):
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    return re.findall(r"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)


def tag(signature, name):
    unfolded = re.sub(r"\s+", "", signature)
    m = re.search(rf"(?:^|;){name}=([^;]*)", unfolded)
    return m.group(1) if m else None


def verdicts(message, zone):
    """dkimpy's verdict on each DKIM-Signature of the message, in order. (`DKIM.verify`
    raises on some failures, a body hash mismatch for one, where `dkim.verify` says False.)"""
    d = dkim.DKIM(message)
    results = []
    for i in range(len(signatures(message))):
        try:
            results.append(d.verify(idx=i, dnsfunc=zone))
        except dkim.DKIMException:
            results.append(False)
    return results


def test_rsa_and_ed25519_signatures_verify_with_dkimpy(tmp_path):
    g = Gateway(tmp_path / "gw")
    zone = Zone()
    out = g.cli("dkim", "generate", "example.com").stdout
    rsa = zone.publish(out)
    [(rsa_name, rsa_txt)] = rsa.items()
    assert re.fullmatch(r"rsa-\d{6}\._domainkey\.example\.com\.", rsa_name), rsa_name
    assert rsa_txt.startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A")
    # A 2048-bit key does not fit one 255-character string.
    assert len(re.findall(r'"[^"]*"', out.splitlines()[-1])) == 2
    out = g.cli("dkim", "generate", "example.com", "--algorithm", "ed25519",
                "--selector", "ed1").stdout
    assert zone.publish(out) == {
        "ed1._domainkey.example.com.": zone.txt["ed1._domainkey.example.com."]}
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=",
                        zone.txt["ed1._domainkey.example.com."])

    signed = sign(g, MESSAGE).stdout
    assert signed.endswith(MESSAGE)
    sigs = signatures(signed)
    assert sorted(tag(s, "a") for s in sigs) == ["ed25519-sha256", "rsa-sha256"]
    for s in sigs:
        assert tag(s, "d") == "example.com"
        assert tag(s, "c") == "relaxed/relaxed"
        assert int(tag(s, "t")) > 1_700_000_000
        # From is signed once more than it occurs: a second From breaks the signature.
        assert tag(s, "h").lower().split(":").count("from") == 2
    assert verdicts(signed, zone) == [True, True]
    assert {n.split(".")[0] for n in zone.asked} == {rsa_name.split(".")[0], "ed1"}

    # An explicit domain, and a message with bare LF line ends (sent as CRLF).
    lf = sign(g, MESSAGE.replace(b"\r\n", b"\n"), "example.com").stdout
    assert b"\n" not in lf.replace(b"\r\n", b"")
    assert verdicts(lf, zone) == [True, True]

    head, body = signed.split(b"\r\n\r\n", 1)
    tampered = {
        "body": head + b"\r\n\r\n" + body.replace(b"attached", b"attacked"),
        "subject": signed.replace(b"Subject: quarterly", b"Subject: yearly"),
        "added From": head + b"\r\nFrom: mallory@example.org\r\n\r\n" + body,
    }
    for what, message in tampered.items():
        assert verdicts(message, zone) == [False, False], what
    # Without the published key nothing verifies.
    assert verdicts(signed, Zone()) == [False, False]


def test_mail_from_other_domains_is_not_signed(tmp_path):
    g = Gateway(tmp_path / "gw")
    g.cli("dkim", "generate", "example.com", "--algorithm", "ed25519")
    other = MESSAGE.replace(b"alice@example.com", b"alice@example.org")
    r = sign(g, other, check=False)
    assert r.returncode != 0 and b"example.org" in r.stderr
    r = sign(g, MESSAGE, "example.org", check=False)
    assert r.returncode != 0 and b"no active DKIM key" in r.stderr
    # A subdomain's mail is signed with the parent domain's key (DMARC relaxed alignment).
    sub = MESSAGE.replace(b"alice@example.com", b"alice@news.example.com")
    assert [tag(s, "d") for s in signatures(sign(g, sub).stdout)] == ["example.com"]


def test_rotation_keeps_retiring_keys_published(tmp_path):
    g = Gateway(tmp_path / "gw")
    zone = Zone()
    zone.publish(g.cli("dkim", "generate", "example.com", "--selector", "rsa-old").stdout)
    zone.publish(g.cli("dkim", "generate", "example.com", "--algorithm", "ed25519",
                       "--selector", "ed-old").stdout)
    before = sign(g, MESSAGE).stdout

    out = g.cli("dkim", "rotate", "example.com").stdout
    new = records(out)
    # One new key per algorithm, and the old ones listed as retiring with their records.
    assert "rsa-old._domainkey.example.com." in new and "ed-old._domainkey.example.com." in new
    assert "retiring" in out.lower() and "keep" in out.lower()
    fresh = {n: t for n, t in new.items() if not n.startswith(("rsa-old.", "ed-old."))}
    assert len(fresh) == 2
    zone.txt.update(fresh)

    keys = {k["selector"]: k for k in json.loads(g.cli("dkim", "list", "--json").stdout)}
    assert keys["rsa-old"]["state"] == keys["ed-old"]["state"] == "retiring"
    assert keys["rsa-old"]["retired_at"] is not None
    assert keys["rsa-old"]["txt"] == zone.txt["rsa-old._domainkey.example.com."]
    active = sorted(s for s, k in keys.items() if k["state"] == "active")
    assert [f"{s}._domainkey.example.com." for s in active] == sorted(fresh)
    assert "private" not in json.dumps(list(keys.values())).lower()

    after = sign(g, MESSAGE).stdout
    assert sorted(tag(s, "s") for s in signatures(after)) == active
    assert verdicts(after, zone) == [True, True]
    # Mail signed before the rotation still verifies while the old records stay published.
    assert verdicts(before, zone) == [True, True]

    # The text listing shows states and the records to keep.
    text = g.cli("dkim", "list", "example.com").stdout
    assert re.search(r"rsa-old\s+rsa-sha256\s+retiring", text), text
    assert records(text)["rsa-old._domainkey.example.com."] == zone.txt["rsa-old._domainkey.example.com."]

    out = g.cli("dkim", "retire", "example.com", "rsa-old").stdout
    assert "rsa-old._domainkey.example.com." in out
    keys = {k["selector"]: k["state"] for k in json.loads(g.cli("dkim", "list", "--json").stdout)}
    assert keys["rsa-old"] == "retired"
    assert g.cli("dkim", "retire", "example.com", "nope", check=False).returncode == 1
    # A key that signs cannot be deleted; a retired one can.
    assert g.cli("dkim", "delete", "example.com", active[0], check=False).returncode != 0
    g.cli("dkim", "delete", "example.com", "rsa-old")
    assert "rsa-old" not in g.cli("dkim", "list").stdout


def test_staged_rotation_signs_only_after_activate(tmp_path):
    g = Gateway(tmp_path / "gw")
    zone = Zone()
    zone.publish(g.cli("dkim", "generate", "example.com", "--algorithm", "ed25519",
                       "--selector", "ed-a").stdout)
    out = g.cli("dkim", "rotate", "example.com", "--stage").stdout
    [staged] = zone.publish(out)
    assert "activate" in out
    # Still signed with the old key only.
    assert [tag(s, "s") for s in signatures(sign(g, MESSAGE).stdout)] == ["ed-a"]
    assert g.cli("dkim", "rotate", "example.com", check=False).returncode != 0

    out = g.cli("dkim", "activate", "example.com").stdout
    assert "ed-a._domainkey.example.com." in records(out)
    signed = sign(g, MESSAGE).stdout
    assert [f"{tag(s, 's')}._domainkey.example.com." for s in signatures(signed)] == [staged]
    assert verdicts(signed, zone) == [True]
    assert g.cli("dkim", "activate", "example.com", check=False).returncode == 1


def test_gateway_signs_outbound_mail_after_its_own_changes(tmp_path, sink):
    """Mail relayed out by an internal server leaves signed with the From domain's keys,
    over the message as delivered (our Received header included); dkimpy verifies the copy
    that reached the next hop. Inbound mail is not signed."""
    g = Gateway(tmp_path / "gw", "[greylist]\nmode = \"never\"\n")
    zone = Zone()
    zone.publish(g.cli("dkim", "generate", "example.com", "--algorithm", "rsa").stdout)
    zone.publish(g.cli("dkim", "generate", "example.com", "--algorithm", "ed25519").stdout)
    g.cli("network", "add", "127.0.0.0/8")
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        send(g.smtp, "alice@example.com", ["bob@example.net"], message=MESSAGE, helo=None)
        sink.wait_count(1)
        raw = open(sink.files()[0], "rb").read()
        # smtp-sink writes what it received; keep from the first of our fields on.
        start = raw.find(b"DKIM-Signature:")
        assert start >= 0, raw[:500]
        delivered = raw[start:].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        sigs = signatures(delivered)
        assert len(sigs) == 2 and any("a=ed25519-sha256" in s for s in sigs), sigs
        assert b"by gw.test (Portcullis)" in delivered
        d = dkim.DKIM(delivered)
        for i in range(2):
            assert d.verify(idx=i, dnsfunc=zone), f"signature {i} did not verify"
    finally:
        g.stop()
